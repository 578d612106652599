//! Host side of a container's network: the bridge (created if missing) and a veth pair
//! whose container end becomes `eth0` with the container's address. Uses iproute2's `ip`
//! and util-linux's `nsenter` (joining only the container's network namespace). The
//! pair disappears by itself when the container's network namespace does.

use super::error::NativeError;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::network::NetworkConfig;

/// Runs `ip -batch -` (optionally inside the network namespace of `pid`), tolerating
/// "File exists" when `idempotent`.
fn ip_batch(netns_of: Option<i32>, commands: &str, idempotent: bool) -> Result<(), NativeError> {
    let mut cmd = match netns_of {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.args(["-t", &pid.to_string(), "-n", "ip"]);
            c
        }
        None => Command::new("ip"),
    };
    if idempotent {
        cmd.arg("-force");
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ip ({e}); install iproute2 and util-linux"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(commands.as_bytes())
            .map_err(NativeError::step("ip"))?;
    }
    let out = child.wait_with_output().map_err(NativeError::step("ip"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    let real_errors: Vec<&str> = err
        .lines()
        .filter(|l| {
            let benign = l.contains("File exists")
                || l.contains("already assigned")
                || l.contains("Command failed");
            !(idempotent && benign)
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    if out.status.success() || (idempotent && real_errors.is_empty()) {
        Ok(())
    } else {
        Err(format!("network set-up failed: {}", real_errors.join("; ")).into())
    }
}

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
    let bridge = &net.bridge;
    ip_batch(
        None,
        &format!(
            "link add {bridge} type bridge\naddr add {}/{prefix} dev {bridge}\nlink set {bridge} up\n",
            net.gateway()
        ),
        true,
    )?;
    let peer = format!("{veth}c");
    ip_batch(
        None,
        &format!(
            "link add {veth} type veth peer name {peer}\nlink set {peer} netns {pid}\nlink set {veth} master {bridge} up\n"
        ),
        false,
    )?;
    // Filters first: the container's end is up only once they hold.
    super::firewall::apply(&super::firewall::host_rules(
        bridge,
        net.gateway(),
        &net.host_services,
    ))?;
    super::firewall::apply(&super::firewall::veth_rules(veth, address))?;
    ip_batch(
        Some(pid),
        &format!(
            "link set {peer} name eth0\naddr add {address}/{prefix} dev eth0\nlink set eth0 up\n"
        ),
        false,
    )
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
