//! Pending updates and `gatehouse patch`: a local apt repository (a security suite the
//! harness writes in Debian's layout and serves with a real HTTP server, python's
//! `http.server`) offers a newer `gh-probe` than one container has; the host computes
//! the pending update from the container's own apt sources, the tracker names the fix,
//! and `patch` upgrades it through the container's own apt as a recorded session under
//! the change reference. The image's own source (Debian's mirror, signed) is read too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gatehouse_e2e::{free_port, on_every_runtime, stderr, stdout, Backend, Gateway, Kill};

/// The harness's repository: a directory served over HTTP on a port of its own.
struct Repo {
    dir: PathBuf,
    port: u16,
    log: PathBuf,
    _server: Kill,
}

impl Repo {
    /// Serves an empty repository on `port` of 127.0.0.1.
    fn start_at(gw: &Gateway, port: u16) -> Repo {
        let dir = gw.dir.path().join("repo");
        std::fs::create_dir_all(dir.join("pool")).unwrap();
        let log = gw.dir.path().join("repo.log");
        let server = gatehouse_e2e::serve_http(&dir, port, &log);
        Repo {
            dir,
            port,
            log,
            _server: server,
        }
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Offers exactly `debs` in suite `bookworm-security`, component `main`.
    fn publish(&self, debs: &[&Path]) {
        let arch = arch();
        let mut packages = String::new();
        for deb in debs {
            let name = deb.file_name().unwrap().to_str().unwrap();
            std::fs::copy(deb, self.dir.join("pool").join(name)).unwrap();
            let control = format!(
                "Package: {}\nVersion: {}\n",
                field(deb, "Package"),
                field(deb, "Version")
            );
            packages.push_str(&format!(
                "{control}Architecture: all\nMaintainer: e2e <e2e@example.org>\nFilename: pool/{name}\nSize: {}\nSHA256: {}\nDescription: gatehouse e2e probe\n\n",
                std::fs::metadata(deb).unwrap().len(),
                sha256(deb),
            ));
        }
        let suite = self.dir.join("dists/bookworm-security");
        let index = suite.join(format!("main/binary-{arch}"));
        std::fs::create_dir_all(&index).unwrap();
        std::fs::write(index.join("Packages"), &packages).unwrap();
        let release = format!(
            "Origin: e2e\nLabel: E2E-Security\nSuite: bookworm-security\nCodename: bookworm-security\nComponents: main\nArchitectures: {arch}\nSHA256:\n {} {} main/binary-{arch}/Packages\n",
            sha256(&index.join("Packages")),
            packages.len()
        );
        std::fs::write(suite.join("Release"), release).unwrap();
    }

    fn requests(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn arch() -> String {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn field(deb: &Path, name: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .arg(name)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Builds `gh-probe` at `version` (its postinst fails when `broken`).
fn probe(gw: &Gateway, version: &str, broken: bool) -> PathBuf {
    let root = gw.dir.path().join(format!("probe-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/gh-probe")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!("Package: gh-probe\nVersion: {version}\nArchitecture: all\nMaintainer: e2e <e2e@example.org>\nDescription: gatehouse e2e probe\n"),
    )
    .unwrap();
    std::fs::write(root.join("usr/share/gh-probe/version"), version).unwrap();
    if broken {
        use std::os::unix::fs::PermissionsExt;
        let postinst = root.join("DEBIAN/postinst");
        std::fs::write(
            &postinst,
            "#!/bin/sh\necho 'gh-probe: this upgrade breaks' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&postinst, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let deb = gw.dir.path().join(format!("gh-probe_{version}_all.deb"));
    let ok = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&root)
        .arg(&deb)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "dpkg-deb --build");
    deb
}

/// Installs `deb` in `container` as its root would (dpkg -i).
fn install(gw: &Gateway, container: &str, deb: &Path) {
    let data = std::fs::read(deb).unwrap();
    let out = gw.ssh_with_input(
        "alice",
        &format!("alice@root@{container}"),
        "cat > /tmp/p.deb && dpkg -i /tmp/p.deb >/dev/null && rm /tmp/p.deb && echo ok",
        &data,
    );
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
}

fn installed(gw: &Gateway, container: &str) -> String {
    let out = gw.ssh(
        "alice",
        &format!("alice@root@{container}"),
        "dpkg-query -W -f='${Version} ${Status}' gh-probe",
    );
    stdout(&out)
}

/// The pending updates of each container (`fleet updates --json`): container →
/// [(package, installed, candidate, security)].
/// (package, installed, candidate, security).
type Update = (String, String, String, bool);

fn pending(gw: &Gateway) -> Vec<(String, Vec<Update>)> {
    let json = gw.cli_ok(&["fleet", "updates", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ups = c["updates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| {
                    let s = |k: &str| u[k].as_str().unwrap_or_default().to_string();
                    let candidate = u["candidate"]["version"].as_str().unwrap().to_string();
                    (
                        s("name"),
                        s("installed"),
                        candidate,
                        !u["security"].is_null(),
                    )
                })
                .collect();
            (c["container"].as_str().unwrap().to_string(), ups)
        })
        .collect()
}

fn probe_update(all: &[(String, Vec<Update>)], c: &str) -> Option<(String, String, bool)> {
    all.iter()
        .find(|(n, _)| n == c)
        .and_then(|(_, ups)| ups.iter().find(|u| u.0 == "gh-probe"))
        .map(|u| (u.1.clone(), u.2.clone(), u.3))
}

fn a_downgraded_package_is_pending_there_only_and_patch_upgrades_it_on_the_record(
    backend: Backend,
) {
    let port = free_port();
    let repo_uri = format!("http://127.0.0.1:{port}");
    let fleet = format!("[fleet]\nunsigned_repositories = [\"{repo_uri}\"]\n");
    let gw = Gateway::start_on_with(backend, &fleet);
    let repo = Repo::start_at(&gw, port);
    assert_eq!(repo.uri(), repo_uri);
    let (v1, v2) = (probe(&gw, "1.0-1", false), probe(&gw, "1.0-2", false));
    repo.publish(&[&v2]);
    for c in ["web01", "web02"] {
        gw.create_container(c, "alice");
        install(&gw, c, &v2);
        let source = format!(
            "echo 'deb {repo_uri} bookworm-security main' > /etc/apt/sources.list.d/e2e.list && echo ok"
        );
        let out = gw.ssh("alice", &format!("alice@root@{c}"), &source);
        assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    }
    gw.cli_ok(&["container", "set", "web01", "--label", "env=dev"]);
    // web01's root downgrades it.
    install(&gw, "web01", &v1);

    let all = pending(&gw);
    assert_eq!(
        probe_update(&all, "web01"),
        Some(("1.0-1".into(), "1.0-2".into(), true)),
        "{all:?}"
    );
    assert_eq!(probe_update(&all, "web02"), None, "{all:?}");

    // The tracker names the fix: web01 alone is open.
    let data = gw.dir.path().join("tracker.json");
    std::fs::write(
        &data,
        r#"{"gh-probe": {"CVE-2099-1000": {"description": "probe flaw", "releases": {"bookworm": {"status": "resolved", "repositories": {}, "fixed_version": "1.0-2", "urgency": "high"}}}}}"#,
    )
    .unwrap();
    let data = data.to_str().unwrap();
    let vulns = gw.cli_ok(&["fleet", "vulns", "--data", data]);
    assert!(
        vulns.contains("web01") && vulns.contains("CVE-2099-1000"),
        "{vulns}"
    );
    assert!(!vulns.contains("web02"), "{vulns}");

    // The patch, by label, under a change reference.
    let out = gw.cli(&["patch", "--label", "env=dev", "--reason", "CHG-1"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("web01") && report.contains("patched"),
        "{report}"
    );
    assert!(report.contains("gh-probe 1.0-1 -> 1.0-2"), "{report}");
    assert!(!report.contains("web02"), "{report}");
    assert!(installed(&gw, "web01").starts_with("1.0-2 install ok installed"));
    let session = report
        .lines()
        .find(|l| l.starts_with("web01"))
        .and_then(|l| l.split("session ").nth(1))
        .unwrap()
        .trim()
        .to_string();
    let sessions = gw.cli_ok(&["sessions", "list"]);
    assert!(
        sessions
            .lines()
            .any(|l| l.contains(&session) && l.contains("CHG-1")),
        "{sessions}"
    );
    let replay = gw.cli_ok(&["replay", "--text", &session]);
    assert!(
        replay.contains("Unpacking gh-probe (1.0-2) over (1.0-1)"),
        "{replay}"
    );
    for kind in ["patch.started", "patch.container", "patch.finished"] {
        assert_eq!(gw.audit_events(kind).len(), 1, "{kind}: {}", gw.audit());
    }
    let event = &gw.audit_events("patch.container")[0];
    assert_eq!(event["reason"], "CHG-1");
    assert_eq!(event["session"], session.as_str());
    let out = gw.cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Afterwards: nothing pending or open for web01.
    assert_eq!(probe_update(&pending(&gw), "web01"), None);
    let vulns = gw.cli_ok(&["fleet", "vulns", "--data", data]);
    assert!(!vulns.contains("web01"), "{vulns}");
    let report = gw.cli_ok(&["fleet", "report", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    let web01 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["container"] == "web01")
        .unwrap();
    assert_eq!(web01["last_patched"]["reason"], "CHG-1", "{report}");
    let md = gw.cli_ok(&["fleet", "report"]);
    assert!(
        md.contains("| web01 | alice |") && md.contains("(CHG-1)"),
        "{md}"
    );

    // A broken upgrade with --rollback-on-failure: web01 is as it was.
    let v3 = probe(&gw, "1.0-3", true);
    repo.publish(&[&v3]);
    let out = gw.cli(&[
        "patch",
        "web01",
        "--reason",
        "CHG-2",
        "--rollback-on-failure",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let report = stdout(&out);
    assert!(report.contains("rolled-back"), "{report}");
    assert!(report.contains("this upgrade breaks"), "{report}");
    assert!(
        installed(&gw, "web01").starts_with("1.0-2 install ok installed"),
        "{}",
        installed(&gw, "web01")
    );
    assert_eq!(
        probe_update(&pending(&gw), "web01"),
        Some(("1.0-2".into(), "1.0-3".into(), true))
    );
    let _ = repo.requests();
}

fn container_root_cannot_make_the_host_fetch_what_it_likes(backend: Backend) {
    let port = free_port();
    let repo_uri = format!("http://127.0.0.1:{port}");
    let fleet = format!("[fleet]\nunsigned_repositories = [\"{repo_uri}\"]\n");
    let gw = Gateway::start_on_with(backend, &fleet);
    let repo = Repo::start_at(&gw, port);
    let v2 = probe(&gw, "1.0-2", false);
    repo.publish(&[&v2]);
    gw.create_container("web01", "alice");
    // Root points apt at a path of the same server that is not the listed repository,
    // at a cloud metadata address, and at a listed signed repository's look-alike.
    let sources = format!(
        "printf '%s\\n' 'deb {repo_uri}/private ./' 'deb http://169.254.169.254/latest ./' 'deb [trusted=yes] {repo_uri}/../private ./' > /etc/apt/sources.list.d/evil.list && echo ok"
    );
    let out = gw.ssh("alice", "alice@root@web01", &sources);
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    let out = gw.cli(&["fleet", "updates"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("not among the repositories"), "{err}");
    assert!(!repo.requests().contains("/private"), "{}", repo.requests());

    // A repository listed as signed whose Release is not signed by Debian's keys is
    // refused, not trusted.
    let signed = format!("[fleet]\nrepositories = [\"{repo_uri}\"]\n");
    std::fs::write(
        &gw.config,
        std::fs::read_to_string(&gw.config)
            .unwrap()
            .replace(&fleet, &signed),
    )
    .unwrap();
    let out = gw.ssh(
        "alice",
        "alice@root@web01",
        &format!("rm /etc/apt/sources.list.d/evil.list; echo 'deb {repo_uri} bookworm-security main' > /etc/apt/sources.list.d/e2e.list"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(repo.dir.join("dists/bookworm-security/InRelease"), "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: x\n-----BEGIN PGP SIGNATURE-----\nAAAA\n-----END PGP SIGNATURE-----\n").unwrap();
    let out = gw.cli(&["fleet", "updates"]);
    let err = stderr(&out);
    assert!(err.contains("signature does not check out"), "{err}");
}

/// Over `+admin`: a rule granting `fleet.*` and `fleet.patch` on `env=dev` covers those
/// containers and no others; a wildcard rule does not grant `fleet.patch`; host paths and
/// URLs are refused; the patch is recorded as the person who asked.
#[test]
fn patch_over_admin_covers_only_what_the_rule_names() {
    let port = free_port();
    let repo_uri = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(
        &policy,
        r#"
[[allow]]
name = "own"
groups = ["devs"]
owned = true
logins = ["root", "$user"]

[[admin]]
name = "dev-patchers"
users = ["bob"]
commands = ["fleet.*", "fleet.patch"]
labels = { env = "dev" }

[[admin]]
name = "web02-all"
users = ["bob"]
commands = ["*"]
containers = ["web02"]
"#,
    )
    .unwrap();
    let gw = Gateway::start_with(&format!(
        "[policy]\npaths = [\"{}\"]\n[fleet]\nunsigned_repositories = [\"{repo_uri}\"]\n",
        policy.display()
    ));
    let repo = Repo::start_at(&gw, port);
    let (v1, v2) = (probe(&gw, "1.0-1", false), probe(&gw, "1.0-2", false));
    repo.publish(&[&v2]);
    for c in ["web01", "web02"] {
        gw.create_container(c, "alice");
        install(&gw, c, &v1);
        let source = format!(
            "echo 'deb {repo_uri} bookworm-security main' > /etc/apt/sources.list.d/e2e.list"
        );
        assert!(gw
            .ssh("alice", &format!("alice@root@{c}"), &source)
            .status
            .success());
    }
    gw.cli_ok(&["container", "set", "web01", "--label", "env=dev"]);
    let admin = |user: &str, cmd: &str| gw.ssh(user, &format!("{user}@+admin"), cmd);

    // Reading: web01 by the label rule, web02 by the wildcard one.
    let out = admin("bob", "fleet updates --label env=dev");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("web01") && !stdout(&out).contains("web02"),
        "{}",
        stdout(&out)
    );
    let out = admin("bob", "fleet updates");
    assert!(
        stdout(&out).contains("web01") && stdout(&out).contains("web02"),
        "{}",
        stdout(&out)
    );
    // Patching: the wildcard does not grant it on web02.
    let out = admin("bob", "patch web02 --reason CHG-9");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not one your rights cover"),
        "{}",
        stderr(&out)
    );
    let out = admin("alice", "fleet packages");
    assert!(
        stderr(&out).contains("may not run fleet.packages"),
        "{}",
        stderr(&out)
    );
    let out = admin("bob", "fleet vulns --data /etc/shadow");
    assert!(stderr(&out).contains("host path"), "{}", stderr(&out));
    let out = admin(
        "bob",
        "fleet vuln-data update --from http://169.254.169.254/",
    );
    assert!(
        stderr(&out).contains("run it on the gateway host"),
        "{}",
        stderr(&out)
    );

    let out = admin("bob", "patch --reason CHG-9");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("gh-probe 1.0-1 -> 1.0-2"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("web02"), "{}", stdout(&out));
    assert!(installed(&gw, "web01").starts_with("1.0-2"));
    assert!(installed(&gw, "web02").starts_with("1.0-1"));
    let sessions = gw.cli_ok(&["sessions", "list", "--user", "bob"]);
    assert!(
        sessions
            .lines()
            .any(|l| l.contains("web01") && l.contains("CHG-9")),
        "{sessions}"
    );
}

/// Gives the gateway an image directory of its own over the cached test image's files
/// (so that generations made here stay here).
fn own_image(gw: &Gateway) -> PathBuf {
    let cached = gatehouse_e2e::debian_image();
    let dir = gw.dir.path().join("state/images/debian-12");
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(cached.join("rootfs"), dir.join("rootfs")).unwrap();
    std::fs::copy(cached.join("image.json"), dir.join("image.json")).unwrap();
    cached.join("rootfs")
}

/// The next generation of the test image as a tarball: its files (owned by root) and
/// `/etc/gatehouse-generation`.
fn generation_tarball(gw: &Gateway, rootfs: &Path) -> PathBuf {
    let extra = gw.dir.path().join("extra");
    std::fs::create_dir_all(extra.join("etc")).unwrap();
    std::fs::write(extra.join("etc/gatehouse-generation"), "2\n").unwrap();
    let tar = gw.dir.path().join("gen2.tar");
    let ok = Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(rootfs)
        .arg(".")
        .arg("-C")
        .arg(&extra)
        .arg("./etc/gatehouse-generation")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    tar
}

/// Native only: LXD keeps its own images, and its containers are patched instead.
#[test]
fn rebase_moves_unchanged_containers_onto_a_new_generation_and_refuses_diverged_ones() {
    let gw = Gateway::start();
    let rootfs = own_image(&gw);
    for c in ["web01", "web02", "web03"] {
        gw.create_container(c, "alice");
    }
    let out = gw.ssh(
        "alice",
        "alice@root@web01",
        "echo mine > /root/own-file && echo ok",
    );
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    let out = gw.ssh(
        "alice",
        "alice@root@web02",
        "dpkg --purge rsync >/dev/null && echo ok",
    );
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));

    let tar = generation_tarball(&gw, &rootfs);
    let out = gw.cli(&[
        "image",
        "import",
        "debian-12",
        tar.to_str().unwrap(),
        "--refresh",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("generation 2 imported"),
        "{}",
        stderr(&out)
    );

    // web02 installed or removed packages itself: refused, with the way out.
    let out = gw.cli(&["container", "rebase", "web02"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("changed its packages") && err.contains("gatehouse patch"),
        "{err}"
    );
    // web01 (running) moves: its own file kept, the new generation's visible.
    let out = gw.cli(&["container", "rebase", "web01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rebased from debian-12@1 to debian-12@2"),
        "{}",
        stderr(&out)
    );
    assert_eq!(gw.state_of("web01"), "running");
    let out = gw.ssh(
        "alice",
        "alice@root@web01",
        "cat /root/own-file /etc/gatehouse-generation",
    );
    assert_eq!(stdout(&out), "mine\n2\n", "{}", stderr(&out));
    let out = gw.cli(&["container", "rebase", "web01"]);
    assert!(
        stderr(&out).contains("newest generation"),
        "{}",
        stderr(&out)
    );
    // web03 never ran: moved without starting; a new container starts on generation 2.
    gw.cli_ok(&["container", "rebase", "web03"]);
    assert_eq!(gw.state_of("web03"), "stopped");
    gw.create_container("web04", "alice");
    assert!(gw
        .cli_ok(&["container", "show", "web04"])
        .contains("(generation 2)"));
    let out = gw.ssh("alice", "alice@root@web04", "cat /etc/gatehouse-generation");
    assert_eq!(stdout(&out), "2\n", "{}", stderr(&out));
    // web02 is untouched, on generation 1.
    let out = gw.ssh(
        "alice",
        "alice@root@web02",
        "cat /etc/gatehouse-generation 2>&1 || echo absent",
    );
    assert!(stdout(&out).contains("absent"), "{}", stdout(&out));
    let rebased = gw.audit_events("container.rebased");
    assert_eq!(rebased.len(), 2, "{}", gw.audit());
    assert_eq!(rebased[0]["to"], "debian-12@2");
    let report = gw.cli_ok(&["fleet", "report"]);
    assert!(
        report.contains("| web01 | alice | e2e test | debian-12@2 |"),
        "{report}"
    );
}

on_every_runtime!(
    a_downgraded_package_is_pending_there_only_and_patch_upgrades_it_on_the_record,
    container_root_cannot_make_the_host_fetch_what_it_likes,
);
