//! The containers' DNS server: Debian's `dnsmasq` on the bridge's address, started by
//! the gateway and ended with it. It answers every container's name (`web01` and
//! `web01.DOMAIN`) from a directory with one file per container, which it watches, so a
//! container is answered as soon as `container create` writes its file; other names go
//! to the host's resolver. No DHCP: addresses are the inventory's.
//!
//! The directory (`/run/gatehouse/dns/BRIDGE`) is root's and readable by the group
//! `nogroup` only, the group dnsmasq runs as after it dropped root; each entry is
//! written by name after the name was validated.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::error::NativeError;
use crate::names::validate_container_name;
use crate::network::{dns_entry, NetworkConfig};

/// Where the gateways' DNS servers keep their entries and pid files.
const RUN_DIR: &str = "/run/gatehouse/dns";

/// Where the entries of the DNS server on `bridge` are.
pub fn entries_dir(bridge: &str) -> PathBuf {
    Path::new(RUN_DIR).join(bridge)
}

/// Writes (or replaces) the DNS entry of container `name` at `address`; an entry that
/// says so already (the usual case at a container's start) is left as it is.
pub fn write_entry(
    bridge: &str,
    name: &str,
    address: std::net::Ipv4Addr,
) -> Result<(), NativeError> {
    validate_container_name(name).map_err(|e| NativeError::Failed(e.to_string()))?;
    let dir = entries_dir(bridge);
    let entry = dns_entry(name, address);
    if std::fs::read_to_string(dir.join(name)).is_ok_and(|e| e == entry) {
        return Ok(());
    }
    make_dir(&dir)?;
    write_in(&dir, name, &entry)
}

/// Writes the entry `name` into the entries directory `dir` (made already).
fn write_in(dir: &Path, name: &str, entry: &str) -> Result<(), NativeError> {
    crate::atomic::write_atomic(&dir.join(name), entry.as_bytes())
        .map_err(|e| NativeError::Failed(format!("DNS entry of {name}: {e}")))
}

/// Removes the DNS entry of container `name` (a missing one is fine) and tells the
/// server, which forgets removed entries only when told (SIGHUP).
pub fn remove_entry(bridge: &str, name: &str) {
    if validate_container_name(name).is_err() {
        return;
    }
    if std::fs::remove_file(entries_dir(bridge).join(name)).is_ok() {
        reload(bridge);
    }
}

/// The file the gateway keeps its DNS server's pid in.
fn pid_file(bridge: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{bridge}.pid"))
}

/// The DNS server on `bridge` a gateway started, if it still runs: its pid file names
/// a process whose command line is ours for that bridge (not another dnsmasq, such as
/// LXD's, that took the number over).
pub fn running(bridge: &str) -> Option<nix::unistd::Pid> {
    let text = std::fs::read_to_string(pid_file(bridge)).ok()?;
    let pid = text.trim().parse::<i32>().ok().filter(|p| *p > 1)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ours = format!("--hostsdir={}", entries_dir(bridge).display());
    cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == ours.as_bytes())
        .then(|| nix::unistd::Pid::from_raw(pid))
}

/// Sends SIGHUP to the DNS server on `bridge`, if one runs.
fn reload(bridge: &str) {
    if let Some(pid) = running(bridge) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP);
    }
}

/// Ends the DNS server a gateway that was killed left on `bridge`.
pub fn stop_stale(bridge: &str) {
    let Some(pid) = running(bridge) else {
        return;
    };
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    for _ in 0..50 {
        if running(bridge).is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(pid_file(bridge));
}

/// The entries directory, root's and readable by `nogroup`.
fn make_dir(dir: &Path) -> Result<(), NativeError> {
    let fail = |e: std::io::Error| NativeError::step(format!("cannot make {}", dir.display()))(e);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir.parent().unwrap_or(dir))
        .map_err(fail)?;
    match std::fs::DirBuilder::new().mode(0o750).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(e)),
    }
    let meta =
        std::fs::symlink_metadata(dir).map_err(NativeError::step(format!("{}", dir.display())))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()).into());
    }
    let nogroup = nix::unistd::Group::from_name("nogroup")
        .ok()
        .flatten()
        .map(|g| g.gid);
    nix::unistd::chown(dir, Some(nix::unistd::Uid::from_raw(0)), nogroup)
        .map_err(NativeError::sys(format!("cannot chown {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
        .map_err(NativeError::step(format!("cannot chmod {}", dir.display())))
}

/// A running DNS server; it ends when this is dropped.
pub struct DnsServer {
    child: Child,
    pid_file: PathBuf,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// The command line of the DNS server for `net` (which has a domain).
fn command(net: &NetworkConfig, domain: &str, dir: &Path) -> Command {
    let mut c = Command::new("dnsmasq");
    c.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--pid-file=",
        "--bind-interfaces",
        "--no-hosts",
        "--expand-hosts",
        "--domain-needed",
        "--bogus-priv",
        "--user=nobody",
        "--group=nogroup",
        "--log-facility=-",
    ]);
    c.arg(format!("--listen-address={}", net.gateway()));
    c.arg(format!("--domain={domain}"));
    c.arg(format!("--local=/{domain}/"));
    c.arg(format!("--hostsdir={}", dir.display()));
    c
}

impl DnsServer {
    /// Brings the bridge up and starts the DNS server on its address, with an entry for
    /// each of `containers` (name and address).
    pub fn start(
        net: &NetworkConfig,
        containers: &[(String, std::net::Ipv4Addr)],
    ) -> Result<Option<Self>, NativeError> {
        let Some(domain) = &net.domain else {
            return Ok(None);
        };
        super::netsetup::bridge(net)?;
        stop_stale(&net.bridge);
        let dir = entries_dir(&net.bridge);
        make_dir(&dir)?;
        for (name, address) in containers {
            validate_container_name(name).map_err(|e| NativeError::Failed(e.to_string()))?;
            write_in(&dir, name, &dns_entry(name, *address))?;
        }
        let child = command(net, domain, &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run dnsmasq ({e}); install dnsmasq-base"))?;
        let pid_file = pid_file(&net.bridge);
        let mut server = DnsServer { child, pid_file };
        // dnsmasq exits at once when it cannot bind (another server on the address).
        std::thread::sleep(std::time::Duration::from_millis(50));
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "the DNS server for {} ended at once ({status}); is another one listening on {}:53?",
                net.bridge,
                net.gateway()
            )
            .into());
        }
        crate::atomic::write_atomic(&server.pid_file, server.child.id().to_string().as_bytes())
            .map_err(|e| NativeError::Failed(e.to_string()))?;
        Ok(Some(server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_listens_on_the_bridge_only_and_answers_the_domain_itself() {
        let net = NetworkConfig::parse("gh0", "10.88.0.0/24")
            .unwrap()
            .with_dns("corp.internal")
            .unwrap();
        let c = command(&net, "corp.internal", Path::new("/run/gatehouse/dns/gh0"));
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for want in [
            "--listen-address=10.88.0.1",
            "--bind-interfaces",
            "--local=/corp.internal/",
            "--hostsdir=/run/gatehouse/dns/gh0",
            "--conf-file=/dev/null",
            "--no-hosts",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
    }
}
