//! Host side of a container's network: the bridge (created if missing) and a veth pair
//! whose container end is created as `eth0` in the container's network namespace and
//! given the container's address there (from a child that joined only that namespace).
//! Over rtnetlink ([`super::rtnl`]), no `ip` or `nsenter`. The pair disappears by itself
//! when the container's network namespace does.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use nix::sched::CloneFlags;

use super::error::NativeError;
use super::rtnl::{existing_is_fine, Rtnl};
use crate::network::NetworkConfig;

/// The host-side name of a container's veth (at most 15 bytes).
pub fn host_veth(cgroup_name: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(cgroup_name.as_bytes());
    let hex: String = d.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("gh{hex}")
}

/// Creates the bridge (if missing) and the container's veth pair; configures `eth0`
/// inside the network namespace of `pid` with `address`.
pub fn connect(
    net: &NetworkConfig,
    pid: i32,
    veth: &str,
    address: Ipv4Addr,
) -> Result<(), NativeError> {
    let prefix = net.subnet.prefix_len();
    let (bridge, gateway, nat) = (&net.bridge, net.gateway(), net.nat);
    let mut nl = Rtnl::open().map_err(NativeError::sys("netlink socket"))?;
    let br = bridge_up(&mut nl, net)?;
    let netns = File::open(format!("/proc/{pid}/ns/net")).map_err(NativeError::step(
        "cannot open the container's network namespace",
    ))?;
    nl.add_veth(veth, "eth0", netns.as_fd())
        .map_err(NativeError::sys(format!(
            "cannot create the veth pair {veth}"
        )))?;
    let host_end = nl
        .index(veth)
        .map_err(NativeError::sys(format!("link {veth}")))?;
    nl.set_up(host_end, Some(br))
        .map_err(NativeError::sys(format!(
            "cannot attach {veth} to {bridge}"
        )))?;
    // Filters first: the container's end is up only once they hold.
    super::firewall::apply(&super::firewall::host_rules(net))?;
    if nat {
        forwarding_on()?;
    }
    super::firewall::apply(&super::firewall::veth_rules(veth, address))?;
    super::forked::job_in_child(|| {
        nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET).map_err(NativeError::step(
            "cannot join the container's network namespace",
        ))?;
        let mut nl = Rtnl::open().map_err(NativeError::sys("netlink socket"))?;
        let eth0 = nl.index("eth0").map_err(NativeError::sys("link eth0"))?;
        nl.add_address(eth0, address, prefix)
            .map_err(NativeError::sys(format!(
                "cannot give eth0 {address}/{prefix}"
            )))?;
        nl.set_up(eth0, None)
            .map_err(NativeError::sys("cannot set eth0 up"))?;
        if nat {
            nl.add_default_route(eth0, gateway)
                .map_err(NativeError::sys(format!("cannot route through {gateway}")))?;
        }
        Ok(())
    })
}

/// Turns the host's IPv4 forwarding on (containers behind NAT need it; what is
/// forwarded for them is what [`super::firewall::host_rules`] lets through).
fn forwarding_on() -> Result<(), NativeError> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read(path).is_ok_and(|v| v.starts_with(b"1")) {
        return Ok(());
    }
    std::fs::write(path, "1").map_err(NativeError::step(format!("cannot write {path}")))
}

/// Makes the bridge of `net` with its address and sets it up, where missing.
pub fn bridge(net: &NetworkConfig) -> Result<(), NativeError> {
    let mut nl = Rtnl::open().map_err(NativeError::sys("netlink socket"))?;
    bridge_up(&mut nl, net).map(drop)
}

/// The bridge of `net` with the gateway's address, up (each made if missing); its index.
fn bridge_up(nl: &mut Rtnl, net: &NetworkConfig) -> Result<u32, NativeError> {
    let (bridge, gateway, prefix) = (&net.bridge, net.gateway(), net.subnet.prefix_len());
    existing_is_fine(nl.add_bridge(bridge)).map_err(NativeError::sys(format!(
        "cannot create the bridge {bridge}"
    )))?;
    let br = nl
        .index(bridge)
        .map_err(NativeError::sys(format!("link {bridge}")))?;
    existing_is_fine(nl.add_address(br, gateway, prefix)).map_err(NativeError::sys(format!(
        "cannot give {bridge} {gateway}/{prefix}"
    )))?;
    nl.set_up(br, None)
        .map_err(NativeError::sys(format!("cannot set {bridge} up")))?;
    Ok(br)
}

#[cfg(test)]
mod tests {
    #[test]
    fn veth_names_fit_the_kernel_limit() {
        let a = super::host_veth("0123abcd.web01");
        assert!(a.len() <= 14 && a.starts_with("gh"));
        assert_ne!(a, super::host_veth("0123abcd.web02"));
    }
}
