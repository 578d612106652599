//! `gatehouse fleet`: packages and known vulnerabilities read from outside the
//! containers (nothing runs in them), with tracker data in the real format naming
//! packages and versions that are really in the test image.

use gatehouse_e2e::{on_every_runtime, stderr, stdout, Backend, Gateway};

/// The installed packages of `name` as `fleet packages --json` reports them:
/// (package, version, source, source version).
fn packages(gw: &Gateway, name: &str) -> Vec<(String, String, String, String)> {
    let json = gw.cli_ok(&["fleet", "packages", name, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v[0]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (s("name"), s("version"), s("source"), s("source_version"))
        })
        .collect()
}

/// Tracker data: `source` has a high-urgency issue fixed only after `installed`, an
/// open medium one, and one fixed before it.
fn tracker(source: &str, installed: &str) -> String {
    format!(
        r#"{{"{source}": {{
  "CVE-2099-0001": {{"description": "test flaw", "releases": {{"bookworm": {{"status": "resolved",
     "repositories": {{"bookworm": "{installed}"}}, "fixed_version": "{installed}+fix1", "urgency": "high"}}}}}},
  "CVE-2099-0002": {{"releases": {{"bookworm": {{"status": "open", "repositories": {{}}, "urgency": "medium"}}}}}},
  "CVE-2099-0003": {{"releases": {{"bookworm": {{"status": "resolved", "repositories": {{}}, "fixed_version": "0.1-1", "urgency": "high"}}}}}}
}}}}"#
    )
}

fn packages_and_vulnerabilities_are_read_from_outside_each_container(backend: Backend) {
    let gw = Gateway::start_on(backend);
    gw.create_container("web01", "alice");
    gw.create_container("web02", "alice");
    gw.cli_ok(&["container", "set", "web01", "--label", "env=dev"]);
    // Never started: read from the image through its empty layer.
    let before = packages(&gw, "web02");
    let rsync = before
        .iter()
        .find(|p| p.0 == "rsync")
        .expect("rsync in the test image");
    assert!(
        before.iter().any(|p| p.0 == "zlib1g" && p.2 == "zlib"),
        "{before:?}"
    );

    // Root in web01 removes rsync: its own database now says so; web02 still has it.
    let out = gw.ssh(
        "alice",
        "alice@root@web01",
        "dpkg --purge rsync >/dev/null && echo purged",
    );
    assert_eq!(stdout(&out), "purged\n", "{}", stderr(&out));
    assert!(!packages(&gw, "web01").iter().any(|p| p.0 == "rsync"));
    assert!(packages(&gw, "web02").iter().any(|p| p.0 == "rsync"));

    let data = gw.dir.path().join("tracker.json");
    std::fs::write(&data, tracker(&rsync.2, &rsync.3)).unwrap();
    let data = data.to_str().unwrap();
    let out = gw.cli(&["fleet", "vulns", "--data", data]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("web02") && text.contains("CVE-2099-0001") && text.contains("CVE-2099-0002"),
        "{text}"
    );
    assert!(
        !text.contains("web01"),
        "web01 has no rsync any more:\n{text}"
    );
    assert!(
        !text.contains("CVE-2099-0003"),
        "fixed before the installed version:\n{text}"
    );
    assert!(
        text.contains(&format!("fixed in {}+fix1", rsync.3)),
        "{text}"
    );
    // A gate: exit 1 at or above high, naming the count.
    let out = gw.cli(&["fleet", "vulns", "--data", data, "--min-urgency", "high"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    assert!(
        stderr(&out).contains("1 finding(s) at or above high"),
        "{}",
        stderr(&out)
    );
    // The label selects web01 alone: nothing there.
    let out = gw.cli(&[
        "fleet",
        "vulns",
        "--data",
        data,
        "--min-urgency",
        "low",
        "--label",
        "env=dev",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Bad data and a bad threshold: clear errors.
    std::fs::write(gw.dir.path().join("bad.json"), "{\"rsync\": [1, 2").unwrap();
    let out = gw.cli(&[
        "fleet",
        "vulns",
        "--data",
        gw.dir.path().join("bad.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("vulnerability data"),
        "{}",
        stderr(&out)
    );
    let out = gw.cli(&["fleet", "vulns", "--data", data, "--min-urgency", "severe"]);
    assert!(stderr(&out).contains("unknown urgency"), "{}", stderr(&out));
}

fn container_root_cannot_make_the_inventory_read_host_files_or_hang(backend: Backend) {
    let gw = Gateway::start_on(backend);
    gw.create_container("web01", "alice");
    gw.create_container("web02", "alice");
    let host_file = gw.dir.path().join("host-only-status");
    std::fs::write(
        &host_file,
        "Package: hostsecret\nStatus: install ok installed\nVersion: 1\n",
    )
    .unwrap();
    // Its status database becomes a link to a host path, then a climb out of its root.
    let link = format!(
        "ln -sf {} /var/lib/dpkg/status && readlink /var/lib/dpkg/status",
        host_file.display()
    );
    let out = gw.ssh("alice", "alice@root@web01", &link);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = gw.cli_ok(&["fleet", "packages", "web01"]);
    assert!(!listed.contains("hostsecret"), "{listed}");
    let climb = format!(
        "ln -sf ../../../../../../../..{} /var/lib/dpkg/status",
        host_file.display()
    );
    let out = gw.ssh("alice", "alice@root@web01", &climb);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!gw
        .cli_ok(&["fleet", "packages", "web01"])
        .contains("hostsecret"));
    // A FIFO in its place: an error for web01 at once, web02 still listed. Natively
    // only: LXD 5.0's file API opens the FIFO and its helper spins without answering
    // (the runtime gives up after 10 s).
    if backend == Backend::Lxd {
        return;
    }
    // A FIFO in its place: an error for web01 at once, web02 still listed.
    let out = gw.ssh(
        "alice",
        "alice@root@web01",
        "rm /var/lib/dpkg/status && mkfifo /var/lib/dpkg/status && echo ok",
    );
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
    let t0 = std::time::Instant::now();
    let out = gw.cli(&["fleet", "packages"]);
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("web01") && stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("web02"), "{}", stdout(&out));
}

/// `fleet vuln-data update` fetches the configured URL (a real HTTP server here), keeps
/// it for `fleet vulns`, and refuses what is not the tracker's data, keeping the copy it
/// has.
#[test]
fn vulnerability_data_is_fetched_checked_and_kept() {
    let port = gatehouse_e2e::free_port();
    let gw = Gateway::start_with(&format!(
        "[fleet]\nvulnerability_data = \"http://127.0.0.1:{port}/tracker/data/json\"\n"
    ));
    let served = gw.dir.path().join("served");
    std::fs::create_dir_all(served.join("tracker/data")).unwrap();
    let _server = gatehouse_e2e::serve_http(&served, port, &gw.dir.path().join("http.log"));
    gw.create_container("web01", "alice");
    let rsync = packages(&gw, "web01")
        .into_iter()
        .find(|p| p.0 == "rsync")
        .expect("rsync in the test image");
    let out = gw.cli(&["fleet", "vulns"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("fleet vuln-data update"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        served.join("tracker/data/json"),
        tracker(&rsync.2, &rsync.3),
    )
    .unwrap();
    let out = gw.cli(&["fleet", "vuln-data", "update"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("vulnerability data updated"),
        "{}",
        stderr(&out)
    );
    assert!(gw.cli_ok(&["fleet", "vulns"]).contains("CVE-2099-0001"));

    std::fs::write(served.join("tracker/data/json"), "<html>maintenance</html>").unwrap();
    let out = gw.cli(&["fleet", "vuln-data", "update"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not the tracker's data"),
        "{}",
        stderr(&out)
    );
    assert!(gw.cli_ok(&["fleet", "vulns"]).contains("CVE-2099-0001"));
}

on_every_runtime!(
    packages_and_vulnerabilities_are_read_from_outside_each_container,
    container_root_cannot_make_the_inventory_read_host_files_or_hang,
);
