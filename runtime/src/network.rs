//! Container networking settings and the pure parts of it: address allocation, the
//! `/etc/hosts` and `/etc/resolv.conf` a container starts with, and the host entry the
//! DNS server answers for each container.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::{Result, RuntimeError};

/// `[runtime.network]`: a bridge on the host and the subnet containers get addresses in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The bridge's name (created if missing).
    pub bridge: String,
    /// The subnet; its first address belongs to the bridge.
    pub subnet: Ipv4Net,
    /// The host's services containers may reach on the bridge's address (none unless
    /// configured: a proxy, a package cache…).
    pub host_services: Vec<HostService>,
    /// The DNS domain of the containers' names, when the bridge's address answers DNS
    /// (every container by name and `NAME.DOMAIN`, everything else through the host's
    /// resolver); `None`: no DNS server.
    pub domain: Option<String>,
    /// Whether containers reach the outside through the host (a default route, and
    /// masquerading of their addresses on the way out).
    pub nat: bool,
}

/// The DNS domain containers are in unless the configuration names another.
pub const DEFAULT_DOMAIN: &str = "gatehouse";

/// A transport protocol of a [`HostService`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// One host service containers may reach: `tcp/3142`, `udp/53`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostService {
    /// Its protocol.
    pub protocol: Protocol,
    /// Its port.
    pub port: u16,
}

impl HostService {
    /// Parses `tcp/PORT` or `udp/PORT`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            RuntimeError::Invalid(format!(
                "invalid host service '{}': use tcp/PORT or udp/PORT, like udp/53",
                crate::names::shorten(s)
            ))
        };
        let (protocol, port) = s.split_once('/').ok_or_else(bad)?;
        let protocol = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return Err(bad()),
        };
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(HostService { protocol, port }),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for HostService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        write!(f, "{protocol}/{}", self.port)
    }
}

impl NetworkConfig {
    /// Checks a bridge name and a subnet such as `10.88.0.0/24`.
    pub fn parse(bridge: &str, subnet: &str) -> Result<Self> {
        let ok_name = !bridge.is_empty()
            && bridge.len() <= 15
            && bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok_name {
            return Err(RuntimeError::Invalid(format!(
                "invalid bridge name '{bridge}': 1-15 letters, digits, '-' or '_'"
            )));
        }
        let net: Ipv4Net = subnet.parse().map_err(|_| {
            RuntimeError::Invalid(format!(
                "invalid subnet '{subnet}': use an IPv4 network like 10.88.0.0/24"
            ))
        })?;
        if !(8..=29).contains(&net.prefix_len()) || net.trunc() != net {
            return Err(RuntimeError::Invalid(format!(
                "invalid subnet '{subnet}': use a network address with a prefix from /8 to /29"
            )));
        }
        Ok(NetworkConfig {
            bridge: bridge.to_string(),
            subnet: net,
            host_services: Vec::new(),
            domain: None,
            nat: false,
        })
    }

    /// The same network with DNS for containers in `domain` (a DNS name: labels of
    /// letters, digits and '-', dot-separated, at most 200 characters).
    pub fn with_dns(mut self, domain: &str) -> Result<Self> {
        if !valid_domain(domain) {
            return Err(RuntimeError::Invalid(format!(
                "invalid DNS domain '{}': labels of letters, digits and '-' joined by dots, like gatehouse.internal",
                crate::names::shorten(domain)
            )));
        }
        self.domain = Some(domain.to_ascii_lowercase());
        Ok(self)
    }

    /// The same network with NAT to the outside on or off.
    pub fn with_nat(mut self, nat: bool) -> Self {
        self.nat = nat;
        self
    }

    /// The same network, with the host's `services` (`tcp/PORT`, `udp/PORT`) open to
    /// containers.
    pub fn with_host_services<S: AsRef<str>>(mut self, services: &[S]) -> Result<Self> {
        self.host_services = services
            .iter()
            .map(|s| HostService::parse(s.as_ref()))
            .collect::<Result<_>>()?;
        Ok(self)
    }

    /// The bridge's own address (the subnet's first host).
    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet.hosts().next().unwrap_or(self.subnet.network())
    }
}

/// The lowest free container address: not the bridge's, not one in `taken`.
pub fn allocate(net: &NetworkConfig, taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let gateway = net.gateway();
    net.subnet
        .hosts()
        .find(|a| *a != gateway && !taken.contains(a))
}

/// The `/etc/hosts` of container `own`: loopback names, then every container with an
/// address (its own included), so they reach each other by name.
pub fn hosts_file(own: &str, peers: &[(String, Ipv4Addr)]) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if !peers.iter().any(|(n, _)| n == own) {
        s.push_str(&format!("127.0.1.1\t{own}\n"));
    }
    s.push_str("# containers (written by gatehouse)\n");
    for (name, addr) in peers {
        s.push_str(&format!("{addr}\t{name}\n"));
    }
    s
}

/// Whether `d` is a DNS domain dnsmasq and resolvers take as it is.
fn valid_domain(d: &str) -> bool {
    d.len() <= 200
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The `/etc/resolv.conf` of a container on a network with DNS: the bridge's address,
/// and the containers' domain to search.
pub fn resolv_conf(net: &NetworkConfig) -> Option<String> {
    let domain = net.domain.as_ref()?;
    Some(format!(
        "# written by gatehouse at each start\nnameserver {}\nsearch {domain}\n",
        net.gateway()
    ))
}

/// The DNS server's host entry for one container (a file of its own in the server's
/// hosts directory; the server adds the domain).
pub fn dns_entry(name: &str, address: Ipv4Addr) -> String {
    format!("{address} {name}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_allocate() {
        let net = NetworkConfig::parse("gh0", "10.88.0.0/29").unwrap();
        assert_eq!(net.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        let mut taken = Vec::new();
        while let Some(a) = allocate(&net, &taken) {
            assert!(!taken.contains(&a));
            taken.push(a);
        }
        // .2 to .6: five addresses in a /29 besides the bridge.
        assert_eq!(taken.len(), 5);
        assert_eq!(taken[0], Ipv4Addr::new(10, 88, 0, 2));
        for (b, s) in [
            ("", "10.0.0.0/24"),
            ("a-very-long-bridge", "10.0.0.0/24"),
            ("gh0", "10.0.0.1/24"),
            ("gh0", "10.0.0.0/30"),
            ("gh0", "nope"),
            ("g h", "10.0.0.0/24"),
        ] {
            assert!(NetworkConfig::parse(b, s).is_err(), "{b} {s}");
        }
    }

    #[test]
    fn host_services_are_protocol_and_port() {
        let net = NetworkConfig::parse("gh0", "10.88.0.0/24")
            .unwrap()
            .with_host_services(&["udp/53", "tcp/3142"])
            .unwrap();
        let shown: Vec<String> = net.host_services.iter().map(|h| h.to_string()).collect();
        assert_eq!(shown, ["udp/53", "tcp/3142"]);
        for bad in [
            "53",
            "icmp/1",
            "tcp/0",
            "tcp/65536",
            "tcp/+53",
            "tcp/",
            "udp/53/1",
            "tcp/ 53",
        ] {
            let e = HostService::parse(bad).unwrap_err().to_string();
            assert!(e.contains("tcp/PORT or udp/PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn dns_domains_and_resolv_conf() {
        let net = NetworkConfig::parse("gh0", "10.88.0.0/24").unwrap();
        assert_eq!(resolv_conf(&net), None);
        let net = net.with_dns("Corp.Internal").unwrap();
        assert_eq!(
            resolv_conf(&net).unwrap(),
            "# written by gatehouse at each start\nnameserver 10.88.0.1\nsearch corp.internal\n"
        );
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a b",
            "a/b",
            "a;b",
            &"x".repeat(64),
        ] {
            assert!(
                NetworkConfig::parse("gh0", "10.88.0.0/24")
                    .unwrap()
                    .with_dns(bad)
                    .is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            dns_entry("web01", Ipv4Addr::new(10, 88, 0, 2)),
            "10.88.0.2 web01\n"
        );
    }

    #[test]
    fn hosts() {
        let peers = vec![
            ("web01".to_string(), Ipv4Addr::new(10, 88, 0, 2)),
            ("db01".to_string(), Ipv4Addr::new(10, 88, 0, 3)),
        ];
        let h = hosts_file("web01", &peers);
        assert!(h.contains("10.88.0.3\tdb01\n") && h.contains("10.88.0.2\tweb01\n"));
        assert!(!h.contains("127.0.1.1"));
        assert!(hosts_file("solo", &[]).contains("127.0.1.1\tsolo\n"));
    }
}
