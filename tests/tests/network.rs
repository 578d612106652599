//! Network identity: containers on a bridge, with stable addresses, reaching each other
//! by name (through /etc/hosts, or the gateway's DNS server), and the outside through
//! NAT: `apt-get` from Debian's mirror inside a container.

use std::process::Command;

use gatehouse_e2e::{stderr, stdout, Gateway};

struct Bridge(&'static str);

impl Drop for Bridge {
    fn drop(&mut self) {
        // A gateway killed by the harness leaves its DNS server; end it with the bridge.
        if let Ok(pid) = std::fs::read_to_string(format!("/run/gatehouse/dns/{}.pid", self.0)) {
            let _ = Command::new("kill").arg(pid.trim()).output();
        }
        let _ = Command::new("ip").args(["link", "del", self.0]).output();
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &format!("gatehouse-{}", self.0)])
            .output();
    }
}

fn address_of(gw: &Gateway, name: &str) -> String {
    let show = gw.cli_ok(&["container", "show", name]);
    show.lines()
        .find_map(|l| l.strip_prefix("address:"))
        .map(|a| a.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn containers_reach_each_other_by_name_with_stable_unique_addresses() {
    let bridge = Bridge("ghtest0");
    // Without the DNS server: names come from the /etc/hosts each session refreshes.
    let gw = Gateway::start_with(&format!(
        "[runtime.network]\nbridge = \"{}\"\nsubnet = \"10.231.7.0/24\"\ndns = false\nnat = false\n",
        bridge.0
    ));
    // Concurrent creation never hands out an address twice.
    std::thread::scope(|s| {
        for name in ["net1", "net2", "net3", "net4", "net5"] {
            let gw = &gw;
            s.spawn(move || gw.create_container(name, "alice"));
        }
    });
    let mut addrs: Vec<String> = ["net1", "net2", "net3", "net4", "net5"]
        .iter()
        .map(|n| address_of(&gw, n))
        .collect();
    assert!(
        addrs.iter().all(|a| a.starts_with("10.231.7.")),
        "{addrs:?}"
    );
    let net1 = addrs[0].clone();
    let net2 = addrs[1].clone();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 5, "duplicate addresses");

    assert_eq!(stdout(&gw.ssh("alice", "alice@net2", "echo up")), "up\n");
    let out = gw.ssh("alice", "alice@net1", "ip -4 -o addr show eth0 | awk '{print $4}'; getent hosts net2; ping -c1 -W3 net2 >/dev/null && echo ping-ok");
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("{net1}/24\n")),
        "{text}{}",
        stderr(&out)
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(net2.as_str()) && l.ends_with(" net2")),
        "{text}"
    );
    assert!(text.contains("ping-ok"), "{text}{}", stderr(&out));

    // Addresses survive a restart; the other container still reaches it.
    gw.cli_ok(&["container", "restart", "net2"]);
    assert_eq!(address_of(&gw, "net2"), net2);
    let out = gw.ssh(
        "alice",
        "alice@net2",
        "ip -4 -o addr show eth0 | awk '{print $4}'; ping -c1 -W3 net1 >/dev/null && echo ping-ok",
    );
    assert_eq!(
        stdout(&out),
        format!("{net2}/24\nping-ok\n"),
        "{}",
        stderr(&out)
    );
    // Stopping a container leaves no veth behind.
    gw.cli_ok(&["container", "stop", "net1"]);
    gw.cli_ok(&["container", "stop", "net2"]);
    // (The kernel removes a dead namespace's veths asynchronously.)
    let links = || {
        String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-o", "link", "show", "master", bridge.0])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !links().trim().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        links().trim().is_empty(),
        "veths left on the bridge: {}",
        links()
    );
}

#[test]
fn a_container_can_neither_spoof_another_address_nor_reach_the_hosts_services() {
    let bridge = Bridge("ghtest1");
    // One host service the admin opens to containers (say a package cache).
    let open_port = gatehouse_e2e::free_port();
    let gw = Gateway::start_with(&format!(
        "[runtime.network]\nbridge = \"{}\"\nsubnet = \"10.231.8.0/24\"\nhost_services = [\"tcp/{open_port}\"]\n",
        bridge.0
    ));
    for name in ["spf1", "spf2"] {
        gw.create_container(name, "alice");
        assert!(gw
            .ssh("alice", &format!("alice@{name}"), "true")
            .status
            .success());
    }
    let target = address_of(&gw, "spf2");
    // A service of the host's on the bridge's own address (where containers' traffic to
    // the host arrives).
    let host = std::net::TcpListener::bind("10.231.8.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let opened = std::net::TcpListener::bind(("10.231.8.1", open_port)).unwrap();
    let script = format!(
        "ping -c1 -W2 {target} >/dev/null && echo ping=ok || echo ping=lost; \
         timeout 3 bash -c 'exec 3<>/dev/tcp/10.231.8.1/{port}' 2>/dev/null && echo host=reached || echo host=blocked; \
         timeout 3 bash -c 'exec 3<>/dev/tcp/10.231.8.1/{open_port}' 2>/dev/null && echo opened=reached || echo opened=blocked; \
         ip addr add 10.231.8.250/24 dev eth0; \
         ping -c1 -W2 -I 10.231.8.250 {target} >/dev/null 2>&1 && echo spoof=through || echo spoof=dropped"
    );
    let out = gw.ssh("alice", "alice@root@spf1", &script);
    let text = stdout(&out);
    for expected in ["ping=ok", "host=blocked", "opened=reached", "spoof=dropped"] {
        assert!(
            text.lines().any(|l| l == expected),
            "{expected} missing:\n{text}{}",
            stderr(&out)
        );
    }
    drop(host);
    drop(opened);
}

#[test]
fn a_container_resolves_a_just_created_one_by_name_and_installs_packages_through_nat() {
    let bridge = Bridge("ghtest2");
    let gw = Gateway::start_with(&format!(
        "[runtime.network]\nbridge = \"{}\"\nsubnet = \"10.231.9.0/24\"\ndomain = \"corp.internal\"\n",
        bridge.0
    ));
    gw.create_container("vm1", "alice");
    assert!(gw.ssh("alice", "alice@vm1", "true").status.success());
    // Created, never started: answered at once.
    gw.create_container("vm2", "alice");
    let vm2 = address_of(&gw, "vm2");
    let out = gw.ssh(
        "alice",
        "alice@vm1",
        "getent hosts vm2 | awk '{print $1}'; getent hosts vm2.corp.internal | awk '{print $1}'; \
         ip -4 route show default",
    );
    let text = stdout(&out);
    assert_eq!(
        text.lines().take(2).collect::<Vec<_>>(),
        [vm2.as_str(), vm2.as_str()],
        "{text}{}",
        stderr(&out)
    );
    assert!(text.contains("default via 10.231.9.1 dev eth0"), "{text}");
    // A deleted container is no longer answered.
    gw.cli_ok(&["container", "delete", "vm2"]);
    let out = gw.ssh("alice", "alice@vm1", "getent hosts vm2 || echo gone");
    assert_eq!(stdout(&out), "gone\n", "{}", stderr(&out));
    // Public names through the host's resolver, packages from Debian's mirror.
    let out = gw.ssh(
        "alice",
        "alice@root@vm1",
        "test -e /usr/bin/vim.tiny && echo was-there; \
         export DEBIAN_FRONTEND=noninteractive; apt-get update -qq >/dev/null 2>&1 || echo update-failed; \
         apt-get install -y -qq vim-tiny >/dev/null 2>&1 || echo install-failed; \
         test -x /usr/bin/vim.tiny && echo installed",
    );
    assert_eq!(stdout(&out), "installed\n", "{}", stderr(&out));
}
