//! A real OpenLDAP `slapd` for the tests: its own config and database in a temporary
//! directory, plain and TLS listeners on free loopback ports, a test CA, posixAccount
//! users with openssh-lpk keys, groupOfNames groups with the memberOf overlay, and a
//! posixGroup with memberUid.

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The directory's suffix.
pub const SUFFIX: &str = "dc=example,dc=org";
/// The service account the gateway binds as, and its password.
pub const SERVICE_DN: &str = "cn=gatehouse,ou=services,dc=example,dc=org";
/// The service account's password.
pub const SERVICE_PW: &str = "service-secret";
/// Where people are.
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
const ADMIN_PW: &str = "admin-secret";

/// A running slapd.
pub struct Slapd {
    dir: tempfile::TempDir,
    /// Port of `ldap://127.0.0.1` (StartTLS available).
    pub port: u16,
    /// Port of `ldaps://127.0.0.1`.
    pub tls_port: u16,
    child: Option<Child>,
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_ca(dir: &Path, name: &str) {
    run(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            ])
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(dir.join(format!("{name}.key")))
            .arg("-out")
            .arg(dir.join(format!("{name}.pem"))),
        "openssl CA",
    );
}

impl Slapd {
    /// Configures and starts slapd, then loads the test entries.
    pub fn start() -> Slapd {
        crate::require_root();
        let dir = tempfile::Builder::new()
            .prefix("gh-slapd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("slapd.d")).unwrap();
        fs::create_dir_all(d.join("data")).unwrap();
        make_ca(d, "test-ca");
        make_ca(d, "other-ca");
        run(
            Command::new("openssl")
                .args([
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                ])
                .arg(d.join("server.key"))
                .arg("-out")
                .arg(d.join("server.csr")),
            "openssl server key",
        );
        fs::write(
            d.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        run(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-in"])
                .arg(d.join("server.csr"))
                .arg("-CA")
                .arg(d.join("test-ca.pem"))
                .arg("-CAkey")
                .arg(d.join("test-ca.key"))
                .args(["-CAcreateserial", "-extfile"])
                .arg(d.join("san.ext"))
                .arg("-out")
                .arg(d.join("server.pem")),
            "openssl server cert",
        );
        let config = CONFIG
            .replace("@DIR@", &d.display().to_string())
            .replace("@SUFFIX@", SUFFIX)
            .replace("@ADMIN_DN@", ADMIN_DN)
            .replace("@ADMIN_PW@", ADMIN_PW)
            .replace("@SERVICE_DN@", SERVICE_DN);
        fs::write(d.join("config.ldif"), config).unwrap();
        run(
            Command::new("slapadd")
                .args(["-n0", "-F"])
                .arg(d.join("slapd.d"))
                .arg("-l")
                .arg(d.join("config.ldif")),
            "slapadd config",
        );
        let mut s = Slapd {
            dir,
            port: free_port(),
            tls_port: free_port(),
            child: None,
        };
        s.spawn();
        s.add(
            &ENTRIES
                .replace("@SUFFIX@", SUFFIX)
                .replace("@SERVICE_DN@", SERVICE_DN)
                .replace("@SERVICE_PW@", SERVICE_PW),
        );
        s
    }

    /// Starts (or restarts) the slapd process on the same ports and data.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none());
        let urls = format!(
            "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
            self.port, self.tls_port
        );
        let log = fs::File::create(self.dir.path().join("slapd.log")).unwrap();
        let child = Command::new("slapd")
            .args(["-d", "0", "-F"])
            .arg(self.dir.path().join("slapd.d"))
            .args(["-h", &urls])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "slapd did not start: {}",
                fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops slapd (SIGKILL: the directory is simply gone).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("test-ca.pem")
    }

    /// A CA that did not sign it.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    /// The `[directory]` section of a gateway on this slapd reached at `url`, with
    /// `extra` lines in `[directory.ldap]`.
    pub fn directory_config(&self, url: &str, extra: &str) -> String {
        format!(
            "[directory]\nkind = \"ldap\"\n[directory.ldap]\nurl = \"{url}\"\nbind_dn = \"{SERVICE_DN}\"\nbind_password_file = \"{}\"\nuser_base = \"{PEOPLE}\"\ntimeout = \"2s\"\ncache_ttl = \"off\"\n{extra}\n",
            self.service_password_file().display()
        )
    }

    /// Writes the service password to a file and returns its path.
    pub fn service_password_file(&self) -> PathBuf {
        let p = self.dir.path().join("service.secret");
        fs::write(&p, format!("{SERVICE_PW}\n")).unwrap();
        p
    }

    fn ldap_tool(&self, tool: &str, ldif: &str) {
        let mut child = Command::new(tool)
            .args(["-x", "-H", &self.url(), "-D", ADMIN_DN, "-w", ADMIN_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds entries (LDIF).
    pub fn add(&self, ldif: &str) {
        self.ldap_tool("ldapadd", ldif);
    }

    /// Applies changes (LDIF with changetype).
    pub fn modify(&self, ldif: &str) {
        self.ldap_tool("ldapmodify", ldif);
    }
}

/// The LDIF of a person under [`PEOPLE`] (uid and gid `number`), with a password and an
/// SSH key if given, and `extra` attribute lines.
pub fn person(
    uid: &str,
    number: u32,
    password: Option<&str>,
    key: Option<&str>,
    extra: &str,
) -> String {
    let password = password
        .map(|p| format!("userPassword: {p}\n"))
        .unwrap_or_default();
    let key = key
        .map(|k| format!("sshPublicKey: {k}\n"))
        .unwrap_or_default();
    format!(
        "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nobjectClass: shadowAccount\nobjectClass: ldapPublicKey\n\
         uid: {uid}\ncn: {uid}\nsn: {uid}\nuidNumber: {number}\ngidNumber: {number}\nhomeDirectory: /home/{uid}\nloginShell: /bin/bash\n\
         {password}{key}{extra}\n"
    )
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

const CONFIG: &str = "\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: @DIR@/slapd.pid
olcTLSCACertificateFile: @DIR@/test-ca.pem
olcTLSCertificateFile: @DIR@/server.pem
olcTLSCertificateKeyFile: @DIR@/server.key

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: memberof

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file:///etc/ldap/schema/nis.ldif

include: file:///etc/ldap/schema/inetorgperson.ldif

dn: cn=openssh-lpk,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: openssh-lpk
olcAttributeTypes: ( 1.3.6.1.4.1.24552.500.1.1.1.13 NAME 'sshPublicKey' DESC 'OpenSSH public key' EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
olcObjectClasses: ( 1.3.6.1.4.1.24552.500.1.1.2.0 NAME 'ldapPublicKey' SUP top AUXILIARY DESC 'OpenSSH LPK objectclass' MAY ( sshPublicKey $ uid ) )

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: @SUFFIX@
olcDbDirectory: @DIR@/data
olcRootDN: @ADMIN_DN@
olcRootPW: @ADMIN_PW@
olcAccess: {0}to attrs=userPassword by anonymous auth by * none
olcAccess: {1}to * by dn.exact=\"@SERVICE_DN@\" read by self read by * none

dn: olcOverlay={0}memberof,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {0}memberof
olcMemberOfRefInt: TRUE
";

const ENTRIES: &str = "\
dn: @SUFFIX@
objectClass: dcObject
objectClass: organization
dc: example
o: example

dn: ou=people,@SUFFIX@
objectClass: organizationalUnit
ou: people

dn: ou=groups,@SUFFIX@
objectClass: organizationalUnit
ou: groups

dn: ou=services,@SUFFIX@
objectClass: organizationalUnit
ou: services

dn: @SERVICE_DN@
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: gatehouse
userPassword: @SERVICE_PW@
";
