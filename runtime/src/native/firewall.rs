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

use crate::network::{HostService, Protocol};

/// The nft script that keeps containers on `bridge` away from the host's services, but
/// for `open` ones on the bridge's own address `gateway`.
pub fn host_rules(bridge: &str, gateway: Ipv4Addr, open: &[HostService]) -> String {
    let mut accept = String::new();
    for s in open {
        let protocol = match s.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        accept.push_str(&format!(
            "\t\tiifname \"{bridge}\" ip daddr {gateway} {protocol} dport {} accept\n",
            s.port
        ));
    }
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
         }}\n"
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
        let gateway = Ipv4Addr::new(10, 231, 7, 1);
        let h = host_rules("ghtest0", gateway, &[]);
        assert!(h.contains("iifname \"ghtest0\" ct state established,related accept"));
        assert!(h.contains("iifname \"ghtest0\" drop"));
        assert!(!h.contains("dport"));
        let dns = crate::network::HostService::parse("udp/53").unwrap();
        let h = host_rules("ghtest0", gateway, &[dns]);
        let open = "iifname \"ghtest0\" ip daddr 10.231.7.1 udp dport 53 accept";
        assert!(h.find(open).unwrap() < h.find("iifname \"ghtest0\" drop").unwrap());
    }
}
