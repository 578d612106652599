//! The arguments of the hidden `gatehouse __supervise` command: made by the native
//! runtime when it starts a supervisor and read back in the supervisor process, both
//! here, so the two sides cannot drift apart.
//!
//! `--state DIR --idle-stop never|SECONDSs [--bridge B --subnet S [--host-service P]… [--domain D] [--nat]] NAME`

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Result, RuntimeError};
use crate::network::NetworkConfig;

/// What a supervisor is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperviseArgs {
    /// The gateway's state directory.
    pub state: PathBuf,
    /// The container.
    pub name: String,
    /// The gateway's default idle stop (the container's record may say otherwise).
    pub idle_stop: Option<Duration>,
    /// The container network, if configured.
    pub network: Option<NetworkConfig>,
}

impl SuperviseArgs {
    /// The command line's words after `__supervise`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["--state".into(), self.state.clone().into()];
        let idle = self
            .idle_stop
            .map_or("never".to_string(), |d| format!("{}s", d.as_secs()));
        a.extend(["--idle-stop".into(), idle.into()]);
        if let Some(n) = &self.network {
            a.extend(["--bridge".into(), n.bridge.clone().into()]);
            a.extend(["--subnet".into(), n.subnet.to_string().into()]);
            for s in &n.host_services {
                a.extend(["--host-service".into(), s.to_string().into()]);
            }
            if let Some(d) = &n.domain {
                a.extend(["--domain".into(), d.into()]);
            }
            if n.nat {
                a.push("--nat".into());
            }
        }
        a.push(self.name.clone().into());
        a
    }

    /// Reads the words [`SuperviseArgs::to_args`] made.
    pub fn parse(args: &[OsString]) -> Result<Self> {
        let bad = |why: String| RuntimeError::Invalid(format!("__supervise: {why}"));
        let text = |v: &OsStr| {
            v.to_str()
                .map(str::to_string)
                .ok_or_else(|| bad(format!("{v:?} is not UTF-8")))
        };
        let (mut state, mut idle, mut bridge, mut subnet) = (None, None, None, None);
        let (mut services, mut name) = (Vec::new(), None);
        let (mut domain, mut nat) = (None, false);
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let mut value = || {
                words
                    .next()
                    .ok_or_else(|| bad(format!("{word:?} needs a value")))
            };
            match word.to_str() {
                Some("--state") => state = Some(PathBuf::from(value()?)),
                Some("--idle-stop") => idle = Some(text(value()?)?),
                Some("--bridge") => bridge = Some(text(value()?)?),
                Some("--subnet") => subnet = Some(text(value()?)?),
                Some("--host-service") => services.push(text(value()?)?),
                Some("--domain") => domain = Some(text(value()?)?),
                Some("--nat") => nat = true,
                Some(w) if !w.starts_with('-') && name.is_none() => name = Some(w.to_string()),
                _ => return Err(bad(format!("unexpected {word:?}"))),
            }
        }
        let network = match (bridge, subnet) {
            (Some(b), Some(s)) => {
                let net = NetworkConfig::parse(&b, &s)?
                    .with_host_services(&services)?
                    .with_nat(nat);
                Some(match domain {
                    Some(d) => net.with_dns(&d)?,
                    None => net,
                })
            }
            (None, None) if services.is_empty() && domain.is_none() && !nat => None,
            _ => {
                return Err(bad(
                    "--bridge, --subnet, --host-service, --domain and --nat go together".into(),
                ))
            }
        };
        Ok(SuperviseArgs {
            state: state.ok_or_else(|| bad("no --state".into()))?,
            name: name.ok_or_else(|| bad("no container name".into()))?,
            idle_stop: crate::limits::parse_duration(idle.as_deref().unwrap_or("never"))?,
            network,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_made_is_read_back() {
        let plain = SuperviseArgs {
            state: "/var/lib/gatehouse".into(),
            name: "web01".into(),
            idle_stop: None,
            network: None,
        };
        assert_eq!(SuperviseArgs::parse(&plain.to_args()).unwrap(), plain);
        let net = NetworkConfig::parse("gh0", "10.88.0.0/24")
            .unwrap()
            .with_host_services(&["udp/53", "tcp/3142"])
            .unwrap()
            .with_dns("corp.internal")
            .unwrap()
            .with_nat(true);
        let full = SuperviseArgs {
            idle_stop: Some(Duration::from_secs(1800)),
            network: Some(net),
            ..plain
        };
        assert_eq!(SuperviseArgs::parse(&full.to_args()).unwrap(), full);
    }

    #[test]
    fn anything_else_is_a_clear_error() {
        let words = |s: &str| -> Vec<OsString> { s.split(' ').map(OsString::from).collect() };
        for (args, why) in [
            ("--state /s", "no container name"),
            ("web01", "no --state"),
            ("--state /s --bridge gh0 web01", "go together"),
            ("--state /s --host-service udp/53 web01", "go together"),
            ("--state /s --nat web01", "go together"),
            (
                "--state /s --bridge gh0 --subnet 10.1.0.0/24 --domain a..b web01",
                "DNS domain",
            ),
            ("--state /s web01 web02", "unexpected"),
            ("--state /s --frobnicate web01", "unexpected"),
            ("--state", "needs a value"),
            ("--state /s --idle-stop soon web01", "soon"),
        ] {
            let e = SuperviseArgs::parse(&words(args)).unwrap_err().to_string();
            assert!(e.contains(why), "{args}: {e}");
        }
    }
}
