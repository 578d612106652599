//! Access policies end to end: policy files with LDAP groups, reasons, deny rules,
//! explanations, validation, hot reload and revocation, sudo and time limits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse_e2e::ldap::{person, Slapd};
use gatehouse_e2e::{gatehouse_bin, stderr, stdout, Gateway};

const PROD_POLICY: &str = r#"
[[deny]]
name = "no-contractors-on-prod"
groups = ["contractors"]
labels = { env = "prod" }
message = "contractors have no access to production"

[[allow]]
name = "ops-prod-root"
groups = ["ops"]
labels = { env = "prod" }
logins = ["root", "$user"]
require_reason = true
"#;

/// A directory of policy files that outlives the gateway using it.
struct Policies {
    dir: tempfile::TempDir,
}

impl Policies {
    fn new(files: &[(&str, &str)]) -> Policies {
        let dir = tempfile::tempdir().unwrap();
        let p = Policies { dir };
        for (name, text) in files {
            p.write(name, text);
        }
        p
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    /// Writes a file atomically (as an editor saving it would, seen whole or not at all).
    fn write(&self, name: &str, text: &str) {
        std::fs::create_dir_all(self.path()).unwrap();
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path().join(name)).unwrap();
    }

    fn config(&self) -> String {
        format!("[policy]\npaths = [\"{}\"]\n", self.path().display())
    }
}

/// A gateway on a real slapd: alice is in `ops` and `gatehouse-admins`; bob is in `ops`
/// and `contractors`.
fn ldap_gateway(slapd: &Slapd, policies: &Policies) -> Gateway {
    let directory =
        slapd.directory_config(&slapd.url(), "group_base = \"ou=groups,dc=example,dc=org\"");
    let gw = Gateway::start_custom(Some(&directory), "", &policies.config());
    let mut ldif = person("alice", 20001, None, Some(&gw.public_key("alice")), "");
    ldif += &person("bob", 20002, None, Some(&gw.public_key("bob")), "");
    ldif += "dn: cn=ops,ou=groups,dc=example,dc=org\nobjectClass: groupOfNames\ncn: ops\nmember: uid=alice,ou=people,dc=example,dc=org\nmember: uid=bob,ou=people,dc=example,dc=org\n\n";
    ldif += "dn: cn=contractors,ou=groups,dc=example,dc=org\nobjectClass: posixGroup\ncn: contractors\ngidNumber: 3001\nmemberUid: bob\n\n";
    ldif += "dn: cn=gatehouse-admins,ou=groups,dc=example,dc=org\nobjectClass: groupOfNames\ncn: gatehouse-admins\nmember: uid=alice,ou=people,dc=example,dc=org\n\n";
    slapd.add(&ldif);
    gw.cli_ok(&[
        "container",
        "create",
        "prod1",
        "--owner",
        "carol",
        "--label",
        "env=prod",
    ]);
    gw
}

/// `ssh` with a reason sent as GATEHOUSE_REASON.
fn ssh_with_reason(
    gw: &Gateway,
    key_of: &str,
    user: &str,
    reason: &str,
    command: &str,
) -> std::process::Output {
    gw.ssh_command(key_of, user)
        .args(["-o", &format!("SetEnv=GATEHOUSE_REASON={reason}")])
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ops_need_a_reason_on_prod_and_contractors_are_denied_whatever_else_matches() {
    let slapd = Slapd::start();
    let policies = Policies::new(&[("prod.toml", PROD_POLICY)]);
    let gw = ldap_gateway(&slapd, &policies);

    // No reason: refused, saying what is missing.
    let out = gw.ssh("alice", "alice@root@prod1", "id -u");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("requires a reason") && stderr(&out).contains("GATEHOUSE_REASON"),
        "{}",
        stderr(&out)
    );
    // With one: root on prod; the reason is in the session list and the audit log.
    let out = ssh_with_reason(&gw, "alice", "alice@root@prod1", "CHG-1234", "id -u");
    assert_eq!(stdout(&out), "0\n", "{}\n{}", stderr(&out), gw.log());
    let list = gw.cli_ok(&["sessions", "list"]);
    assert!(list.contains("CHG-1234"), "{list}");
    let json = gw.cli_ok(&["sessions", "list", "--json"]);
    assert!(json.contains("\"reason\": \"CHG-1234\""), "{json}");
    assert!(
        gw.audit()
            .lines()
            .any(|l| l.contains("\"type\":\"session.start\"")
                && l.contains("\"reason\":\"CHG-1234\""))
    );

    // bob is in ops too, but a contractor: the deny rule wins.
    let out = ssh_with_reason(&gw, "bob", "bob@root@prod1", "CHG-9", "id -u");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("access denied: contractors have no access to production"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("ops-prod-root"),
        "the policy leaked: {}",
        stderr(&out)
    );
    // policy check names the deny rule, and says why the allow rule did not decide.
    let check = gw.cli(&[
        "policy",
        "check",
        "--user",
        "bob",
        "--container",
        "prod1",
        "--login",
        "root",
    ]);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    let text = stdout(&check);
    assert!(
        text.starts_with("DENY bob → prod1 as root (shell)"),
        "{text}"
    );
    assert!(
        text.contains("decided by: deny 'no-contractors-on-prod' ("),
        "{text}"
    );
    assert!(
        text.contains("allow 'ops-prod-root' (")
            && text.contains("matches, but deny rule 'no-contractors-on-prod' wins"),
        "{text}"
    );
    let check = gw.cli(&[
        "policy",
        "check",
        "--user",
        "alice",
        "--container",
        "prod1",
        "--login",
        "root",
    ]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(stdout(&check).contains("ALLOW") && stdout(&check).contains("a reason is required"));
    // The real decision carries the same explanation in the audit log.
    assert!(gw
        .audit()
        .lines()
        .any(|l| l.contains("\"type\":\"policy.decision\"")
            && l.contains("\"user\":\"bob\"")
            && l.contains("matches, but deny rule 'no-contractors-on-prod' wins")));
}

#[test]
fn leaving_the_ldap_group_ends_running_sessions() {
    let slapd = Slapd::start();
    let policies = Policies::new(&[("prod.toml", PROD_POLICY)]);
    let gw = ldap_gateway(&slapd, &policies);
    let long = gw
        .ssh_command("alice", "alice@root@prod1")
        .args(["-o", "SetEnv=GATEHOUSE_REASON=CHG-7"])
        .arg("sleep 60")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the session", 20, || {
        gw.audit().contains("\"type\":\"session.start\"")
    });
    slapd.modify(
        "dn: cn=ops,ou=groups,dc=example,dc=org\nchangetype: modify\ndelete: member\nmember: uid=alice,ou=people,dc=example,dc=org\n\n",
    );
    let t0 = Instant::now();
    let out = long.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(20), "not ended in time");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("access revoked: no policy gives alice"),
        "{err}"
    );
    assert!(gw.audit().contains("\"type\":\"session.revoked\""));
}

#[test]
fn invalid_edits_are_rejected_valid_ones_apply_live_and_revocation_ends_sessions() {
    let slapd = Slapd::start();
    let policies = Policies::new(&[("prod.toml", PROD_POLICY)]);
    let gw = ldap_gateway(&slapd, &policies);

    // A long session under the current policy.
    let long = gw
        .ssh_command("alice", "alice@root@prod1")
        .args(["-o", "SetEnv=GATEHOUSE_REASON=CHG-1"])
        .arg("echo started; sleep 60")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the long session", 20, || {
        gw.audit().contains("\"type\":\"session.start\"")
    });

    // An invalid edit: validate names file, line and column; the gateway keeps the old set.
    let broken = PROD_POLICY.replace("require_reason = true", "require_reasons = true");
    policies.write("prod.toml", &broken);
    let v = gw.cli(&["policy", "validate"]);
    assert_eq!(v.status.code(), Some(1));
    let file = policies.path().join("prod.toml");
    assert!(
        stderr(&v).contains(&format!(
            "{}:13:1: unknown field `require_reasons`",
            file.display()
        )),
        "{}",
        stderr(&v)
    );
    wait_until("the failed reload", 15, || {
        gw.audit().contains("\"type\":\"policy.reload_failed\"")
    });
    assert!(gw.log().contains("policy NOT reloaded"));
    let out = gw.ssh("alice", "alice@root@prod1", "true");
    assert!(
        stderr(&out).contains("requires a reason"),
        "old set not in force: {}",
        stderr(&out)
    );

    // A valid edit applies without a restart: ops lose prod; alice's session is ended.
    let revoked = PROD_POLICY.replace("groups = [\"ops\"]", "groups = [\"sre\"]");
    policies.write("prod.toml", &revoked);
    let t0 = Instant::now();
    let out = long.wait_with_output().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "the session was not ended in time"
    );
    assert_eq!(out.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("access revoked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = gw.audit();
    assert!(
        a.contains("\"type\":\"policy.reloaded\"") && a.contains("\"type\":\"session.revoked\""),
        "{a}"
    );
    let out = ssh_with_reason(&gw, "alice", "alice@root@prod1", "CHG-2", "true");
    assert!(stderr(&out).contains("access denied"), "{}", stderr(&out));
    let list = gw.cli_ok(&["sessions", "list", "--json"]);
    assert!(list.contains("ended: access revoked"), "{list}");
}

/// A config whose policy is `policy_dir`, and the gateway's result when started on it.
fn serve_once(dir: &Path, policy_dir: &Path) -> std::process::Output {
    let users = dir.join("users.toml");
    std::fs::write(&users, "").unwrap();
    let config = dir.join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\nstate_dir = \"{}\"\n[directory]\nkind = \"file\"\nfile = \"{}\"\n[policy]\npaths = [\"{}\"]\n",
            gatehouse_e2e::free_port(),
            dir.join("state").display(),
            users.display(),
            policy_dir.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(gatehouse_bin())
        .args(["--config", config.to_str().unwrap(), "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_gateway_refuses_to_start_on_an_invalid_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policies = Policies::new(&[(
        "a.toml",
        "[[allow]]\ngroups = [\"ops\"]\nactions = [\"shel\"]\n",
    )]);
    let out = serve_once(dir.path(), &policies.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("a.toml:3:12: unknown action 'shel'"), "{err}");
}

#[test]
fn sudo_and_time_limits_come_from_the_rule() {
    let policies = Policies::new(&[(
        "dev.toml",
        r#"
[[allow]]
name = "own-with-sudo"
users = ["alice"]
owned = true
sudo = true
max_session = "3s"

[[allow]]
name = "bob-idle"
users = ["bob"]
owned = true
idle_timeout = "2s"
"#,
    )]);
    let gw = Gateway::start_with(&policies.config());
    gw.create_container("sud1", "alice");
    gw.create_container("bobs1", "bob");
    let out = gw.ssh("alice", "alice@sud1", "sudo -n id -u");
    assert_eq!(stdout(&out), "0\n", "{}", stderr(&out));
    // The rule's max_session ends a longer session with a message.
    let t0 = Instant::now();
    let out = gw.ssh("alice", "alice@sud1", "sleep 30");
    assert!(t0.elapsed() < Duration::from_secs(15));
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr(&out).contains("maximum session time (3s)"),
        "{}",
        stderr(&out)
    );
    // bob's rule ends a session without input after 2s.
    let out = gw.ssh("bob", "bob@bobs1", "sleep 30");
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr(&out).contains("no input for 2s"), "{}", stderr(&out));
    // SIGHUP reloads too.
    let config = gw.config.display().to_string();
    let hup = std::process::Command::new("pkill")
        .args(["-HUP", "-f", &format!("{config} serve")])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_until("the SIGHUP reload", 10, || {
        std::fs::read_to_string(gw.dir.path().join("state/audit/audit.jsonl"))
            .unwrap_or_default()
            .contains("\"why\":\"SIGHUP\"")
    });
    // Without sudo in the rule, the grant is taken back.
    let reloads = || gw.log().matches("policy reloaded").count();
    let before = reloads();
    policies.write(
        "dev.toml",
        "[[allow]]\nname = \"own\"\nusers = [\"alice\", \"bob\"]\nowned = true\n",
    );
    wait_until("the reload", 15, || reloads() > before);
    let out = gw.ssh("alice", "alice@sud1", "sudo -n id -u");
    assert_ne!(
        out.status.code(),
        Some(0),
        "sudo still works: {}",
        stdout(&out)
    );
    // alice may not use bob's container: the default deny says so, briefly.
    let out = gw.ssh("alice", "alice@bobs1", "true");
    assert!(
        stderr(&out)
            .contains("access denied: no policy gives alice exec access to 'bobs1' as alice"),
        "{}",
        stderr(&out)
    );
}
