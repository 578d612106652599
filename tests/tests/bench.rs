//! The benchmark itself must not rot: its quick mode runs with the tests.

use std::process::Command;

#[test]
fn bench_quick_mode_prints_the_table() {
    gatehouse_e2e::require_root();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("bench/run"))
        .arg("--quick")
        .arg("--binary")
        .arg(gatehouse_e2e::gatehouse_bin())
        .output()
        .expect("run bench/run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench/run --quick failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "time to shell, median",
        "keystroke echo p99",
        "download",
        "sftp get",
        "sftp put",
        "logins/s",
        "memory per idle session",
        "memory per idle container",
    ] {
        assert!(text.contains(row), "no row {row:?} in:\n{text}");
    }
    assert!(
        text.contains("| scenario | OpenSSH sshd | gatehouse | ratio |"),
        "{text}"
    );
}
