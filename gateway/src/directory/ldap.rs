//! The LDAP directory (`[directory] kind = "ldap"`): people, their keys and groups come
//! straight from the organisation's directory. Passwords are checked by binding as the
//! person's own DN, never by reading hashes. One service connection is reused for
//! look-ups and one for password binds; every operation has a timeout; look-ups (never
//! password results) are cached briefly; every user-supplied value is filter-escaped.
//! Anything unexpected is an error, and errors refuse the login (fail closed).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ldap3::{ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use russh::keys::PublicKey;
use tokio::sync::Mutex;

use super::{Directory, DirectoryError, User};
use crate::config::LdapSection;

/// LDAP result code for wrong credentials.
const INVALID_CREDENTIALS: u32 = 49;

/// Checked settings.
struct Settings {
    url: String,
    bind: Option<(String, String)>,
    user_base: String,
    user_filter: String,
    group_base: Option<String>,
    group_filter: String,
    key_attr: String,
    member_of_attr: String,
    group_name_attr: String,
    starttls: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    cache_ttl: Option<Duration>,
}

/// A person as found in the directory.
#[derive(Clone)]
struct Found {
    dn: String,
    user: User,
}

/// The LDAP directory.
pub struct LdapDirectory {
    s: Settings,
    /// Bound as the service account; for searches.
    service: Mutex<Option<Ldap>>,
    /// For password binds (bound as whoever logged in last).
    binder: Mutex<Option<Ldap>>,
    cache: std::sync::Mutex<HashMap<String, (Instant, Option<Found>)>>,
}

fn unavailable(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
}

/// TLS client settings trusting only the CAs in `ca_file`.
fn tls_config(ca_file: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| anyhow::anyhow!("cannot read ca_file {}: {e}", ca_file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| anyhow::anyhow!("ca_file {}: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("ca_file {}: {e}", ca_file.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("ca_file {} holds no certificate", ca_file.display());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => hostport.rsplit_once(':').map_or(hostport, |(h, _)| h),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl LdapDirectory {
    /// Checks the settings (reading the password and CA files); connects lazily.
    pub fn new(c: &LdapSection) -> anyhow::Result<Self> {
        if !(c.url.starts_with("ldap://") || c.url.starts_with("ldaps://")) {
            anyhow::bail!(
                "[directory.ldap] url = \"{}\": use ldap:// or ldaps://",
                c.url
            );
        }
        if c.url.starts_with("ldap://") && !c.starttls && !is_loopback(host_of(&c.url)) {
            tracing::warn!("[directory.ldap] {} is plain LDAP to another host: passwords cross the network unencrypted; use ldaps:// or starttls = true", c.url);
        }
        let bind = match (&c.bind_dn, &c.bind_password_file) {
            (Some(dn), Some(file)) => {
                let pw = std::fs::read_to_string(file).map_err(|e| {
                    anyhow::anyhow!("cannot read bind_password_file {}: {e}", file.display())
                })?;
                Some((dn.clone(), pw.trim_end_matches(['\n', '\r']).to_string()))
            }
            (Some(_), None) => anyhow::bail!("[directory.ldap] bind_dn needs bind_password_file"),
            (None, _) => None,
        };
        for (key, filter, needle) in [
            ("user_filter", &c.user_filter, "{user}"),
            ("group_filter", &c.group_filter, ""),
        ] {
            if !filter.starts_with('(') || !filter.ends_with(')') || !filter.contains(needle) {
                anyhow::bail!(
                    "[directory.ldap] {key} = \"{filter}\" is not an LDAP filter with {needle}"
                );
            }
        }
        let timeout = gatehouse_runtime::limits::parse_duration(&c.timeout)?
            .ok_or_else(|| anyhow::anyhow!("[directory.ldap] timeout cannot be never"))?;
        let cache_ttl = match c.cache_ttl.as_str() {
            "off" | "0" | "0s" => None,
            other => gatehouse_runtime::limits::parse_duration(other)?,
        };
        let tls = c.ca_file.as_deref().map(tls_config).transpose()?;
        if c.group_base.is_none() {
            tracing::warn!("[directory.ldap] has no group_base: a group named in memberOf counts wherever it is in the tree (set group_base so that a same-named group elsewhere grants nothing)");
        }
        Ok(LdapDirectory {
            s: Settings {
                url: c.url.clone(),
                bind,
                user_base: c.user_base.clone(),
                user_filter: c.user_filter.clone(),
                group_base: c.group_base.clone(),
                group_filter: c.group_filter.clone(),
                key_attr: c.ssh_key_attribute.clone(),
                member_of_attr: c.member_of_attribute.clone(),
                group_name_attr: c.group_name_attribute.clone(),
                starttls: c.starttls,
                tls,
                timeout,
                cache_ttl,
            },
            service: Mutex::new(None),
            binder: Mutex::new(None),
            cache: std::sync::Mutex::new(HashMap::new()),
        })
    }

    async fn connect(&self) -> Result<Ldap, DirectoryError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.s.timeout)
            .set_starttls(self.s.starttls);
        if let Some(tls) = &self.s.tls {
            settings = settings.set_config(tls.clone());
        }
        let connect = LdapConnAsync::with_settings(settings, &self.s.url);
        let (conn, ldap) = tokio::time::timeout(self.s.timeout, connect)
            .await
            .map_err(|_| unavailable(format!("{}: connection timed out", self.s.url)))?
            .map_err(|e| unavailable(format!("{}: {e}", self.s.url)))?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    async fn connect_service(&self) -> Result<Ldap, DirectoryError> {
        let mut ldap = self.connect().await?;
        if let Some((dn, pw)) = &self.s.bind {
            let bind = tokio::time::timeout(self.s.timeout, ldap.simple_bind(dn, pw))
                .await
                .map_err(|_| unavailable("service bind timed out"))?
                .map_err(unavailable)?;
            if bind.rc != 0 {
                return Err(unavailable(format!(
                    "service bind as {dn} refused: {}",
                    bind
                )));
            }
        }
        Ok(ldap)
    }

    /// Searches with the service connection, reconnecting once if it has gone stale.
    async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, DirectoryError> {
        self.search_scoped(base, Scope::Subtree, filter, attrs)
            .await
    }

    async fn search_scoped(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, DirectoryError> {
        let mut last = None;
        for _ in 0..2 {
            let mut guard = self.service.lock().await;
            if guard.as_mut().is_none_or(|l| l.is_closed()) {
                *guard = Some(self.connect_service().await?);
            }
            let Some(ldap) = guard.as_mut() else { continue };
            match tokio::time::timeout(
                self.s.timeout,
                ldap.search(base, scope, filter, attrs.to_vec()),
            )
            .await
            {
                Ok(Ok(result)) => {
                    return match result.success() {
                        Ok((entries, _)) => {
                            Ok(entries.into_iter().map(SearchEntry::construct).collect())
                        }
                        Err(e) => Err(unavailable(format!("search in {base} failed: {e}"))),
                    }
                }
                Ok(Err(e)) => last = Some(e.to_string()),
                Err(_) => last = Some("search timed out".into()),
            }
            *guard = None;
        }
        Err(unavailable(last.unwrap_or_else(|| "search failed".into())))
    }

    fn cached(&self, name: &str) -> Option<Option<Found>> {
        let ttl = self.s.cache_ttl?;
        let cache = self.cache.lock().ok()?;
        cache
            .get(name)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, f)| f.clone())
    }

    async fn find(&self, name: &str) -> Result<Option<Found>, DirectoryError> {
        if let Some(hit) = self.cached(name) {
            return Ok(hit);
        }
        let found = self.find_uncached(name).await?;
        if self.s.cache_ttl.is_some() {
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(name.to_string(), (Instant::now(), found.clone()));
            }
        }
        Ok(found)
    }

    async fn find_uncached(&self, name: &str) -> Result<Option<Found>, DirectoryError> {
        let filter = self.s.user_filter.replace("{user}", &ldap_escape(name));
        let attrs = [
            "uidNumber",
            "gidNumber",
            "loginShell",
            "homeDirectory",
            self.s.key_attr.as_str(),
            self.s.member_of_attr.as_str(),
            "pwdAccountLockedTime",
            "shadowExpire",
        ];
        let mut entries = self.search(&self.s.user_base, &filter, &attrs).await?;
        let entry = match entries.len() {
            0 => return Ok(None),
            1 => entries.remove(0),
            n => {
                return Err(unavailable(format!(
                    "{n} entries match user '{name}'; the user_filter must match one"
                )))
            }
        };
        if is_locked(&entry) {
            tracing::warn!(user = name, dn = %entry.dn, "directory entry is locked");
            return Ok(None);
        }
        let number = |attr: &str| first(&entry, attr).and_then(|v| v.trim().parse::<u32>().ok());
        let Some(uid) = number("uidNumber") else {
            tracing::warn!(user = name, dn = %entry.dn, "directory entry has no uidNumber; refused");
            return Ok(None);
        };
        let keys = all(&entry, &self.s.key_attr)
            .iter()
            .filter_map(|k| match PublicKey::from_openssh(k.trim()) {
                Ok(key) => Some(key),
                Err(e) => {
                    tracing::warn!(
                        user = name,
                        "ignoring an unreadable {}: {e}",
                        self.s.key_attr
                    );
                    None
                }
            })
            .collect();
        // A group named in memberOf counts only under group_base (when set): a same-named
        // group elsewhere in the tree (a department's `admins`) grants nothing.
        let mut groups: Vec<String> = all(&entry, &self.s.member_of_attr)
            .iter()
            .filter(|dn| self.s.group_base.as_ref().is_none_or(|b| dn_under(dn, b)))
            .filter_map(|dn| group_name_from_dn(dn, &self.s.group_name_attr))
            .collect();
        if let Some(base) = &self.s.group_base {
            let filter = self
                .s
                .group_filter
                .replace("{dn}", &ldap_escape(entry.dn.as_str()))
                .replace("{user}", &ldap_escape(name));
            for g in self
                .search(base, &filter, &[self.s.group_name_attr.as_str()])
                .await?
            {
                groups.extend(first(&g, &self.s.group_name_attr).map(str::to_owned));
            }
        }
        groups.sort();
        groups.dedup();
        let user = User {
            name: name.to_string(),
            uid,
            gid: number("gidNumber").unwrap_or(uid),
            groups,
            keys,
            shell: first(&entry, "loginShell").map(str::to_owned),
            home: first(&entry, "homeDirectory").map(str::to_owned),
        };
        Ok(Some(Found { dn: entry.dn, user }))
    }

    /// Binds as `dn` on the password connection; Ok(false) for wrong credentials.
    async fn bind_as(&self, dn: &str, password: &str) -> Result<bool, DirectoryError> {
        let mut last = None;
        for _ in 0..2 {
            let mut guard = self.binder.lock().await;
            if guard.as_mut().is_none_or(|l| l.is_closed()) {
                *guard = Some(self.connect().await?);
            }
            let Some(ldap) = guard.as_mut() else { continue };
            match tokio::time::timeout(self.s.timeout, ldap.simple_bind(dn, password)).await {
                Ok(Ok(r)) if r.rc == 0 => return Ok(true),
                Ok(Ok(r)) if r.rc == INVALID_CREDENTIALS => return Ok(false),
                Ok(Ok(r)) => return Err(unavailable(format!("bind as {dn}: {r}"))),
                Ok(Err(e)) => last = Some(e.to_string()),
                Err(_) => last = Some("bind timed out".into()),
            }
            *guard = None;
        }
        Err(unavailable(last.unwrap_or_else(|| "bind failed".into())))
    }
}

fn first<'a>(e: &'a SearchEntry, attr: &str) -> Option<&'a str> {
    all(e, attr).first().map(String::as_str)
}

fn all<'a>(e: &'a SearchEntry, attr: &str) -> &'a [String] {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map_or(&[], |(_, v)| v.as_slice())
}

/// Locked: a password-policy lock, or a shadow account expired by today.
fn is_locked(e: &SearchEntry) -> bool {
    if !all(e, "pwdAccountLockedTime").is_empty() {
        return true;
    }
    let today = chrono::Utc::now().timestamp() / 86_400;
    first(e, "shadowExpire")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .is_some_and(|days| days >= 0 && days <= today)
}

/// A DN in a canonical form for comparison: lower case, no spaces around `,` and `=`.
fn canonical_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// Whether `dn` lies under `base` (strictly: an entry below it).
fn dn_under(dn: &str, base: &str) -> bool {
    let (dn, base) = (canonical_dn(dn), canonical_dn(base));
    dn.len() > base.len() + 1
        && dn.ends_with(&base)
        && dn.as_bytes()[dn.len() - base.len() - 1] == b','
}

/// `cn=ops,ou=groups,dc=example,dc=org` → `ops` (when the first RDN is `attr=`).
fn group_name_from_dn(dn: &str, attr: &str) -> Option<String> {
    let (rdn_attr, rest) = dn.split_once('=')?;
    if !rdn_attr.trim().eq_ignore_ascii_case(attr) {
        return None;
    }
    let mut value = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.extend(chars.next()),
            ',' | '+' => break,
            c => value.push(c),
        }
    }
    let value = value.trim().to_string();
    (!value.is_empty()).then_some(value)
}

#[async_trait]
impl Directory for LdapDirectory {
    async fn lookup(&self, name: &str) -> Result<Option<User>, DirectoryError> {
        Ok(self.find(name).await?.map(|f| f.user))
    }

    async fn verify_password(&self, name: &str, password: &str) -> Result<bool, DirectoryError> {
        // An empty password would be an unauthenticated bind, which "succeeds".
        if password.is_empty() {
            return Ok(false);
        }
        let Some(found) = self.find(name).await? else {
            return Ok(false);
        };
        self.bind_as(&found.dn, password).await
    }

    async fn health(&self) -> Result<(), DirectoryError> {
        self.search_scoped(&self.s.user_base, Scope::Base, "(objectClass=*)", &["1.1"])
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_groups_under_the_group_base_count() {
        let base = "ou=groups,dc=example,dc=org";
        assert!(dn_under("cn=ops,ou=groups,dc=example,dc=org", base));
        assert!(dn_under("CN=ops, OU=Groups, DC=Example, DC=org", base));
        assert!(dn_under("cn=ops,ou=team,ou=groups,dc=example,dc=org", base));
        assert!(!dn_under(
            "cn=gatehouse-admins,ou=sales,dc=example,dc=org",
            base
        ));
        assert!(!dn_under("cn=x,ou=evilgroups,dc=example,dc=org", base));
        assert!(!dn_under(base, base));
    }

    #[test]
    fn group_names_from_dns() {
        assert_eq!(
            group_name_from_dn("cn=ops,ou=groups,dc=x", "cn").as_deref(),
            Some("ops")
        );
        assert_eq!(
            group_name_from_dn("CN=Domain Admins,CN=Users,DC=x", "cn").as_deref(),
            Some("Domain Admins")
        );
        assert_eq!(
            group_name_from_dn("cn=a\\,b,ou=g", "cn").as_deref(),
            Some("a,b")
        );
        assert_eq!(group_name_from_dn("ou=ops,dc=x", "cn"), None);
        assert_eq!(group_name_from_dn("garbage", "cn"), None);
    }

    #[test]
    fn hosts_and_filters() {
        assert_eq!(host_of("ldap://ldap.example.org:389/"), "ldap.example.org");
        assert_eq!(host_of("ldaps://[::1]:636"), "::1");
        assert!(is_loopback(host_of("ldap://127.0.0.1:389")));
        assert!(!is_loopback(host_of("ldap://10.0.0.1")));
        // What a hostile name becomes inside the filter.
        let f = "(&(objectClass=posixAccount)(uid={user}))"
            .replace("{user}", &ldap_escape("alice)(uid=*"));
        assert_eq!(
            f,
            "(&(objectClass=posixAccount)(uid=alice\\29\\28uid=\\2a))"
        );
        assert_eq!(ldap_escape("a\0b"), "a\\00b");
    }
}
