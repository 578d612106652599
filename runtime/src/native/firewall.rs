//! Host-side packet filters for the container network (nftables, through `nft -f -`):
//! each container's veth may send only from the container's own address (no spoofing
//! another container's IPv4 or ARP, no IPv6 at all), and nothing from the bridge reaches
//! the host's own services (only replies to connections the host made, and the services
//! `[runtime.network] host_services` names). One table per
//! bridge for the host (`inet gatehouse-<bridge>`), one per veth for its frames
//! (`bridge gatehouse-<veth>`); both are made anew, so a restart finds them as they must be.

use super::error::NativeError;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::network::{HostService, NetworkConfig, Protocol};

/// The nft script for a bridge's network: containers reach the host only for replies,
/// DNS on the bridge's address when the network has it, and the services
/// `host_services` opens there; with NAT, what they send out through another interface
/// is masqueraded and only replies come back in.
pub fn host_rules(net: &NetworkConfig) -> String {
    let bridge = &net.bridge;
    let gateway = net.gateway();
    let mut open: Vec<HostService> = net.host_services.clone();
    if net.domain.is_some() {
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            open.push(HostService { protocol, port: 53 });
        }
    }
    let mut accept = String::new();
    for s in &open {
        let protocol = match s.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        accept.push_str(&format!(
            "\t\tiifname \"{bridge}\" ip daddr {gateway} {protocol} dport {} accept\n",
            s.port
        ));
    }
    let nat = if net.nat {
        nat_chains(net)
    } else {
        String::new()
    };
    format!(
        "add table inet gatehouse-{bridge}\n\
         flush table inet gatehouse-{bridge}\n\
         table inet gatehouse-{bridge} {{\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t\tiifname \"{bridge}\" ct state established,related accept\n\
         {accept}\
         \t\tiifname \"{bridge}\" drop\n\
         \t}}\n\
         {nat}\
         }}\n"
    )
}

/// The forward and masquerade chains of a network with NAT: out from the subnet through
/// any interface but the bridge, and back only as replies; between containers on the
/// bridge as without NAT (seen here only where `br_netfilter` is loaded). Never to
/// link-local addresses: a cloud's metadata service (169.254.169.254) hands out the
/// host's credentials to whoever asks from the host.
fn nat_chains(net: &NetworkConfig) -> String {
    let bridge = &net.bridge;
    let subnet = net.subnet;
    format!(
        "\tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tiifname \"{bridge}\" oifname \"{bridge}\" accept\n\
         \t\tiifname \"{bridge}\" ip daddr 169.254.0.0/16 drop\n\
         \t\tiifname \"{bridge}\" oifname != \"{bridge}\" ip saddr {subnet} accept\n\
         \t\toifname \"{bridge}\" ct state established,related accept\n\
         \t\tiifname \"{bridge}\" drop\n\
         \t\toifname \"{bridge}\" drop\n\
         \t}}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
         \t}}\n"
    )
}

/// The nft script that lets frames in from `veth` only with `address` as their source.
pub fn veth_rules(veth: &str, address: Ipv4Addr) -> String {
    format!(
        "add table bridge gatehouse-{veth}\n\
         flush table bridge gatehouse-{veth}\n\
         table bridge gatehouse-{veth} {{\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority -300; policy accept;\n\
         \t\tiifname \"{veth}\" ether type ip ip saddr != {address} drop\n\
         \t\tiifname \"{veth}\" ether type arp arp saddr ip != {address} drop\n\
         \t\tiifname \"{veth}\" ether type ip6 drop\n\
         \t}}\n\
         }}\n"
    )
}

/// Loads an nft script.
pub fn apply(script: &str) -> Result<(), NativeError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft ({e}); install nftables"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NativeError::step("nft"))?;
    }
    let out = child.wait_with_output().map_err(NativeError::step("nft"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "container network filter: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into())
    }
}

/// Removes a veth's table (the container stopped); a missing one is fine.
pub fn forget_veth(veth: &str) {
    let _ = apply(&format!(
        "add table bridge gatehouse-{veth}\ndelete table bridge gatehouse-{veth}\n"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_veth_sends_only_from_its_address_and_the_host_answers_only_replies() {
        let v = veth_rules("gh0123456789ab", Ipv4Addr::new(10, 231, 7, 5));
        assert!(v.contains("iifname \"gh0123456789ab\" ether type ip ip saddr != 10.231.7.5 drop"));
        assert!(v.contains("arp saddr ip != 10.231.7.5 drop"));
        assert!(v.contains("ether type ip6 drop"));
        assert!(v.starts_with("add table bridge gatehouse-gh0123456789ab\nflush"));
        let net = NetworkConfig::parse("ghtest0", "10.231.7.0/24").unwrap();
        let h = host_rules(&net);
        assert!(h.contains("iifname \"ghtest0\" ct state established,related accept"));
        assert!(h.contains("iifname \"ghtest0\" drop"));
        assert!(!h.contains("dport"));
        assert!(!h.contains("masquerade"));
        let h = host_rules(&net.clone().with_host_services(&["tcp/3142"]).unwrap());
        let open = "iifname \"ghtest0\" ip daddr 10.231.7.1 tcp dport 3142 accept";
        assert!(h.find(open).unwrap() < h.find("iifname \"ghtest0\" drop").unwrap());
        let h = host_rules(&net.with_dns("gatehouse.internal").unwrap().with_nat(true));
        let dns = "iifname \"ghtest0\" ip daddr 10.231.7.1 udp dport 53 accept";
        assert!(h.find(dns).unwrap() < h.find("iifname \"ghtest0\" drop").unwrap());
        assert!(h.contains("ip saddr 10.231.7.0/24 oifname != \"ghtest0\" masquerade"));
        assert!(h.contains("oifname \"ghtest0\" ct state established,related accept"));
        let metadata = "iifname \"ghtest0\" ip daddr 169.254.0.0/16 drop";
        let out = "iifname \"ghtest0\" oifname != \"ghtest0\" ip saddr 10.231.7.0/24 accept";
        assert!(h.find(metadata).unwrap() < h.find(out).unwrap());
    }
}
