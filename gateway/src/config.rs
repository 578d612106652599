//! The configuration file (TOML, see PRODUCT.md). Unknown keys are errors, so typos are
//! caught at start rather than silently ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default configuration file.
pub const DEFAULT_PATH: &str = "/etc/gatehouse/gatehouse.toml";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[directory]`.
    pub directory: DirectoryConfig,
    /// `[runtime]`.
    pub runtime: RuntimeConfig,
    /// `[recording]`.
    pub recording: RecordingConfig,
    /// `[policy]`.
    pub policy: PolicyConfig,
    /// `[fleet]`.
    pub fleet: FleetConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Host keys, images, containers, recordings, audit.
    pub state_dir: PathBuf,
    /// Members may run admin commands over SSH.
    pub admin_group: String,
    /// Unauthenticated connections at once (like OpenSSH's MaxStartups).
    pub max_startups: usize,
    /// Time to authenticate (like OpenSSH's LoginGraceTime).
    pub login_grace_time: String,
    /// Failed logins from one address, within `failure_window`, before it is refused.
    pub max_failures_per_address: u32,
    /// Failed logins for one user, within `failure_window`, before it is refused.
    pub max_failures_per_user: u32,
    /// The window failures are counted in.
    pub failure_window: String,
    /// Connections from one source (an IPv4 address, an IPv6 /64) that may end without
    /// logging in within a minute before that source is refused (a scanner, a flood).
    pub max_unauthenticated_per_source: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:2222".into(),
            state_dir: "/var/lib/gatehouse".into(),
            admin_group: "gatehouse-admins".into(),
            max_startups: 64,
            login_grace_time: "60s".into(),
            max_failures_per_address: 10,
            max_failures_per_user: 30,
            failure_window: "10m".into(),
            max_unauthenticated_per_source: 20,
        }
    }
}

/// `[directory]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// `file` or `ldap`.
    pub kind: DirectoryKind,
    /// The users file for `kind = "file"`.
    pub file: PathBuf,
    /// `[directory.ldap]`, for `kind = "ldap"`.
    pub ldap: Option<LdapSection>,
}

/// `[directory.ldap]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSection {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// The service account to search with (anonymous when absent).
    pub bind_dn: Option<String>,
    /// A file holding the service account's password.
    pub bind_password_file: Option<PathBuf>,
    /// Where people are.
    pub user_base: String,
    /// How to find one person; `{user}` is replaced by the escaped name.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Where groups are (for the group search; `memberOf` needs none).
    pub group_base: Option<String>,
    /// How to find a person's groups; `{dn}` and `{user}` are replaced, escaped.
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// The attribute with OpenSSH public keys.
    #[serde(default = "default_key_attribute")]
    pub ssh_key_attribute: String,
    /// The attribute listing a person's groups on their own entry.
    #[serde(default = "default_member_of")]
    pub member_of_attribute: String,
    /// The attribute naming a group.
    #[serde(default = "default_group_name")]
    pub group_name_attribute: String,
    /// Upgrade `ldap://` with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// CA certificates (PEM) to verify the server with, instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Limit for connecting and for each operation.
    #[serde(default = "default_ldap_timeout")]
    pub timeout: String,
    /// How long user and group look-ups are cached (`off` to disable); never passwords.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: String,
}

fn default_user_filter() -> String {
    "(&(objectClass=posixAccount)(uid={user}))".into()
}
fn default_group_filter() -> String {
    "(|(member={dn})(uniqueMember={dn})(memberUid={user}))".into()
}
fn default_key_attribute() -> String {
    "sshPublicKey".into()
}
fn default_member_of() -> String {
    "memberOf".into()
}
fn default_group_name() -> String {
    "cn".into()
}
fn default_ldap_timeout() -> String {
    "5s".into()
}
fn default_cache_ttl() -> String {
    "30s".into()
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            kind: DirectoryKind::File,
            file: "/etc/gatehouse/users.toml".into(),
            ldap: None,
        }
    }
}

/// Where people and their keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryKind {
    /// The users file.
    File,
    /// An LDAP directory (`[directory.ldap]`).
    Ldap,
}

/// Which runtime containers live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// The gateway's own (namespaces, overlayfs, cgroups).
    Native,
    /// An LXD daemon (`[runtime.lxd]`).
    Lxd,
}

/// `[runtime]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// `native` or `lxd`.
    pub kind: RuntimeKind,
    /// The image new containers use.
    pub default_image: String,
    /// Stop a container this long after its last session (`30m`, or `never`).
    pub idle_stop: String,
    /// `[runtime.network]`: give containers addresses on a host bridge.
    pub network: Option<NetworkSection>,
    /// `[runtime.lxd]`: where LXD is and how to use it (with `kind = "lxd"`).
    pub lxd: Option<LxdSection>,
    /// Which SFTP server serves `sftp` and `scp`: `auto` (the image's own `sftp-server`
    /// if it has one, else the gateway's) or `builtin` (always the gateway's).
    pub sftp_server: gatehouse_runtime::SftpServer,
}

/// `[runtime.lxd]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LxdSection {
    /// The daemon's unix socket (default: LXD's, else Incus's usual path).
    pub socket: Option<PathBuf>,
    /// A remote daemon instead: `https://host[:port]` (port 8443 by default).
    pub url: Option<String>,
    /// With `url`: the gateway's client certificate (PEM), trusted by the daemon.
    pub client_cert: Option<PathBuf>,
    /// With `url`: its private key (PEM).
    pub client_key: Option<PathBuf>,
    /// With `url`: the daemon's certificate (PEM; its `server.crt`, or `cluster.crt` on a
    /// cluster), the only one accepted.
    pub server_cert: Option<PathBuf>,
    /// The LXD project (default `default`).
    #[serde(default = "default_project")]
    pub project: String,
    /// Profiles for new instances (default `["default"]`).
    #[serde(default = "default_profiles")]
    pub profiles: Vec<String>,
    /// A storage pool for new instances (default: the profiles' root disk).
    pub pool: Option<String>,
}

fn default_project() -> String {
    "default".into()
}

fn default_profiles() -> Vec<String> {
    vec!["default".into()]
}

impl RuntimeConfig {
    /// The LXD settings (`[runtime.lxd]`, or the defaults).
    pub fn lxd_settings(&self) -> anyhow::Result<gatehouse_runtime::lxd::LxdSettings> {
        let section = self.lxd.clone().unwrap_or(LxdSection {
            socket: None,
            url: None,
            client_cert: None,
            client_key: None,
            server_cert: None,
            project: default_project(),
            profiles: default_profiles(),
            pool: None,
        });
        if section.project.is_empty()
            || !section
                .project
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            anyhow::bail!(
                "[runtime.lxd] project '{}' is not a valid LXD project name",
                section.project
            );
        }
        let remote = match (&section.url, &section.socket) {
            (None, _) => {
                if section.client_cert.is_some()
                    || section.client_key.is_some()
                    || section.server_cert.is_some()
                {
                    anyhow::bail!(
                        "[runtime.lxd] client_cert, client_key and server_cert go with url"
                    );
                }
                None
            }
            (Some(_), Some(_)) => {
                anyhow::bail!("[runtime.lxd] has both socket and url; set one of them")
            }
            (Some(url), None) => {
                let need = |v: &Option<PathBuf>, key: &str| {
                    v.clone().ok_or_else(|| {
                        anyhow::anyhow!("[runtime.lxd] url needs {key} (a PEM file)")
                    })
                };
                Some(gatehouse_runtime::lxd::transport::Remote {
                    url: url.clone(),
                    client_cert: need(&section.client_cert, "client_cert")?,
                    client_key: need(&section.client_key, "client_key")?,
                    server_cert: need(&section.server_cert, "server_cert")?,
                })
            }
        };
        Ok(gatehouse_runtime::lxd::LxdSettings {
            remote,
            socket: section
                .socket
                .unwrap_or_else(gatehouse_runtime::lxd::LxdSettings::default_socket),
            project: section.project,
            profiles: section.profiles,
            pool: section.pool,
            idle_stop: gatehouse_runtime::limits::parse_duration(&self.idle_stop)?,
        })
    }
}

/// `[runtime.network]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Bridge name on the host (created if missing).
    pub bridge: String,
    /// IPv4 subnet; the bridge takes its first address.
    pub subnet: String,
    /// The host's services containers may reach on the bridge's address (`tcp/PORT`,
    /// `udp/PORT`); none by default.
    #[serde(default)]
    pub host_services: Vec<String>,
    /// Whether the bridge's address answers DNS for containers (their names, and the
    /// host's resolver for everything else); on by default.
    #[serde(default = "yes")]
    pub dns: bool,
    /// The containers' DNS domain (`web01.DOMAIN`).
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Whether containers reach the outside through the host (default route and NAT);
    /// on by default.
    #[serde(default = "yes")]
    pub nat: bool,
}

fn yes() -> bool {
    true
}

impl NetworkSection {
    /// The network `gatehouse demo` and the example configuration use: bridge `gh0`,
    /// 10.88.0.0/24, DNS and NAT on.
    pub fn standard() -> Self {
        NetworkSection {
            bridge: "gh0".into(),
            subnet: "10.88.0.0/24".into(),
            host_services: Vec::new(),
            dns: true,
            domain: default_domain(),
            nat: true,
        }
    }
}

fn default_domain() -> String {
    gatehouse_runtime::network::DEFAULT_DOMAIN.to_string()
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            kind: RuntimeKind::Native,
            default_image: "debian-12".into(),
            idle_stop: "30m".into(),
            network: None,
            lxd: None,
            sftp_server: gatehouse_runtime::SftpServer::Auto,
        }
    }
}

/// `[recording]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Record keystrokes too.
    pub input: bool,
    /// No recording, no session.
    pub fail_closed: bool,
    /// Delete recordings older than this (`400d`); absent: keep them all.
    pub keep: Option<String>,
    /// Record sessions at all (beyond PRODUCT.md; `false` only for gateways that must
    /// not record, and for measuring the cost of recording).
    pub enabled: bool,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            input: true,
            fail_closed: true,
            keep: None,
            enabled: true,
        }
    }
}

/// `[policy]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Directories or files with `*.toml` policies.
    pub paths: Vec<PathBuf>,
}

/// `[fleet]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// The Debian Security Tracker's JSON: a file, or an http(s) URL that
    /// `fleet vuln-data update` fetches into `state_dir/fleet/debian-security.json`.
    #[serde(alias = "vuln_data")]
    pub vulnerability_data: Option<String>,
    /// The repositories the host fetches indexes and packages from for the fleet (a
    /// container's source elsewhere is reported, not fetched); their Release files must
    /// be signed by a key of `keyring`.
    pub repositories: Vec<String>,
    /// Repositories trusted without a signature (a local one the admin runs).
    pub unsigned_repositories: Vec<String>,
    /// The keys Release signatures are checked against (with `gpgv`).
    pub keyring: PathBuf,
    /// How many containers `patch` upgrades at once unless told.
    pub max_parallel: usize,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            vulnerability_data: None,
            repositories: vec![
                "http://deb.debian.org/debian".into(),
                "http://deb.debian.org/debian-security".into(),
                "https://deb.debian.org/debian".into(),
                "https://deb.debian.org/debian-security".into(),
                "http://security.debian.org/debian-security".into(),
            ],
            unsigned_repositories: vec![],
            keyring: PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg"),
            max_parallel: 4,
        }
    }
}

/// Where the tracker's data is fetched from unless the configuration says otherwise.
pub const TRACKER_URL: &str = "https://security-tracker.debian.org/tracker/data/json";

impl Config {
    /// Where the vulnerability data is read from: the configured file, or the copy
    /// `fleet vuln-data update` keeps of the configured (or Debian's) URL.
    pub fn vuln_data(&self) -> PathBuf {
        match &self.fleet.vulnerability_data {
            Some(v) if !is_url(v) => PathBuf::from(v),
            _ => self.server.state_dir.join("fleet/debian-security.json"),
        }
    }

    /// Where `fleet vuln-data update` fetches from: `None` when the data is a file.
    pub fn vuln_data_url(&self) -> Option<String> {
        match &self.fleet.vulnerability_data {
            Some(v) if !is_url(v) => None,
            Some(v) => Some(v.clone()),
            None => Some(TRACKER_URL.to_string()),
        }
    }

    /// The fleet's cache (package indexes and packages, by digest).
    pub fn fleet_cache(&self) -> PathBuf {
        self.server.state_dir.join("fleet/cache")
    }
}

/// Whether a configured location is an http(s) URL.
fn is_url(v: &str) -> bool {
    v.starts_with("http://") || v.starts_with("https://")
}

impl ServerConfig {
    /// The brute-force and connection limits.
    pub fn limits(&self) -> anyhow::Result<crate::guard::Limits> {
        let d = |key: &str, v: &str| -> anyhow::Result<std::time::Duration> {
            gatehouse_runtime::limits::parse_duration(v)?
                .ok_or_else(|| anyhow::anyhow!("[server] {key} cannot be never"))
        };
        if self.max_startups == 0
            || self.max_failures_per_address == 0
            || self.max_failures_per_user == 0
            || self.max_unauthenticated_per_source == 0
        {
            anyhow::bail!("[server] max_startups, max_failures_* and max_unauthenticated_per_source must be at least 1");
        }
        Ok(crate::guard::Limits {
            window: d("failure_window", &self.failure_window)?,
            per_address: self.max_failures_per_address,
            per_user: self.max_failures_per_user,
            max_unauthenticated: self.max_startups,
            grace: d("login_grace_time", &self.login_grace_time)?,
            per_source_unauthenticated: self.max_unauthenticated_per_source,
            ..crate::guard::Limits::default()
        })
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        config.check()?;
        Ok(config)
    }

    /// Loads `path` if given, else the default file if it exists, else the defaults.
    pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<Config> {
        match path {
            Some(p) => Self::load(p),
            None if Path::new(DEFAULT_PATH).exists() => Self::load(Path::new(DEFAULT_PATH)),
            None => Ok(Config::default()),
        }
    }

    /// The container network, if configured.
    pub fn network(&self) -> anyhow::Result<Option<gatehouse_runtime::network::NetworkConfig>> {
        self.runtime
            .network
            .as_ref()
            .map(|n| {
                let net = gatehouse_runtime::network::NetworkConfig::parse(&n.bridge, &n.subnet)?
                    .with_host_services(&n.host_services)?
                    .with_nat(n.nat);
                if n.dns {
                    net.with_dns(&n.domain)
                } else {
                    Ok(net)
                }
            })
            .transpose()
            .map_err(|e| anyhow::anyhow!("[runtime.network] {e}"))
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.directory.kind == DirectoryKind::Ldap && self.directory.ldap.is_none() {
            anyhow::bail!("[directory] kind = \"ldap\" needs a [directory.ldap] section")
        }
        if self.runtime.kind == RuntimeKind::Lxd
            && self.runtime.sftp_server == gatehouse_runtime::SftpServer::Builtin
        {
            anyhow::bail!(
                "[runtime] sftp_server = \"builtin\" runs inside native containers only; \
                 on LXD the image's own sftp-server serves SFTP (use \"auto\")"
            )
        }
        self.server
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| {
                anyhow::anyhow!(
                    "[server] listen = \"{}\" is not an address like 0.0.0.0:2222",
                    self.server.listen
                )
            })?;
        gatehouse_runtime::limits::parse_duration(&self.runtime.idle_stop)
            .map_err(|e| anyhow::anyhow!("[runtime] idle_stop: {e}"))?;
        self.network()?;
        self.server.limits()?;
        if let Some(k) = &self.recording.keep {
            gatehouse_runtime::limits::parse_duration(k)
                .map_err(|e| anyhow::anyhow!("[recording] keep: {e}"))?;
        }
        gatehouse_runtime::names::validate_image_name(&self.runtime.default_image)
            .map_err(|e| anyhow::anyhow!("[runtime] default_image: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_example_configurations_parse() {
        for (name, text) in [
            (
                "gatehouse.toml",
                include_str!("../../deploy/gatehouse.toml"),
            ),
            ("lxd.toml", include_str!("../../deploy/lxd.toml")),
            (
                "ldap-openldap.toml",
                include_str!("../../deploy/ldap-openldap.toml"),
            ),
            (
                "ldap-active-directory.toml",
                include_str!("../../deploy/ldap-active-directory.toml"),
            ),
        ] {
            let c = Config::parse(text).unwrap_or_else(|e| panic!("deploy/{name}: {e:#}"));
            if name == "lxd.toml" {
                let lxd = c.runtime.lxd_settings().unwrap();
                assert_eq!(c.runtime.kind, RuntimeKind::Lxd);
                assert_eq!(lxd.project, "default");
                assert_eq!(lxd.idle_stop, Some(std::time::Duration::from_secs(1800)));
            }
        }
    }
    use super::*;

    fn lxd_section(lines: &str) -> anyhow::Result<gatehouse_runtime::lxd::LxdSettings> {
        let text = format!("[runtime]\nkind = \"lxd\"\n[runtime.lxd]\n{lines}\n");
        Config::parse(&text)?.runtime.lxd_settings()
    }

    #[test]
    fn a_remote_lxd_needs_its_url_and_all_three_certificates() {
        let full = "url = \"https://lxd1:8443\"\nclient_cert = \"/c.crt\"\nclient_key = \"/c.key\"\nserver_cert = \"/s.crt\"";
        let remote = lxd_section(full).unwrap().remote.expect("remote");
        assert_eq!(remote.url, "https://lxd1:8443");
        assert_eq!(remote.server_cert, PathBuf::from("/s.crt"));
        assert!(lxd_section("socket = \"/x.sock\"")
            .unwrap()
            .remote
            .is_none());
        let err = |lines: &str| format!("{:#}", lxd_section(lines).unwrap_err());
        assert!(
            err(&full.replace("client_key = \"/c.key\"\n", "")).contains("url needs client_key")
        );
        assert!(err(&format!("{full}\nsocket = \"/x\"")).contains("both socket and url"));
        assert!(err("server_cert = \"/s.crt\"").contains("go with url"));
        assert!(err("project = \"a&b\"").contains("not a valid LXD project name"));
        let builtin = "[runtime]\nkind = \"lxd\"\nsftp_server = \"builtin\"\n";
        let e = format!("{:#}", Config::parse(builtin).unwrap_err());
        assert!(e.contains("native containers only"), "{e}");
    }

    #[test]
    fn defaults_and_product_example() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:2222");
        let c = Config::parse(
            "[server]\nlisten = \"127.0.0.1:2200\"\nstate_dir = \"/tmp/x\"\n[directory]\nkind = \"file\"\nfile = \"/tmp/u.toml\"\n[runtime]\nkind = \"native\"\ndefault_image = \"debian-12\"\nidle_stop = \"never\"\n[recording]\ninput = false\n[policy]\npaths = [\"/etc/p\"]\n",
        )
        .unwrap();
        assert_eq!(c.server.state_dir, Path::new("/tmp/x"));
        assert!(!c.recording.input);
    }

    #[test]
    fn errors_are_precise() {
        let e = Config::parse("[server]\nlisten_addr = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_addr"), "{e}");
        let e = Config::parse("[server]\nlisten = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        assert!(Config::parse("[directory]\nkind = \"nis\"\n").is_err());
        assert!(Config::parse("[runtime]\ndefault_image = \"../x\"\n").is_err());
        assert!(Config::parse("[runtime]\nidle_stop = \"soon\"\n").is_err());
        assert!(
            Config::parse("[runtime.network]\nbridge = \"gh0\"\nsubnet = \"10.0.0.1/24\"\n")
                .is_err()
        );
        let c = Config::parse("[runtime.network]\nbridge = \"gh0\"\nsubnet = \"10.88.0.0/24\"\n")
            .unwrap();
        assert!(c.network().unwrap().is_some());
    }
}
