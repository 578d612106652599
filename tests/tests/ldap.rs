//! LDAP identity end to end, against a real slapd.

use std::process::Command;

use gatehouse_e2e::ldap::{Slapd, SERVICE_DN, SERVICE_PW};

#[test]
fn slapd_harness_serves_the_service_account() {
    let slapd = Slapd::start();
    let out = Command::new("ldapsearch")
        .args(["-x", "-H", &slapd.url(), "-D", SERVICE_DN, "-w", SERVICE_PW, "-b", "dc=example,dc=org", "(ou=people)", "dn"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("dn: ou=people,dc=example,dc=org"), "{}", String::from_utf8_lossy(&out.stderr));
}
