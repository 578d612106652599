//! The admin control plane over SSH (`user@+admin@gw COMMAND`): the admin group,
//! delegated rights, self-service with quotas, and the audit trail of each.

use std::process::Output;

use gatehouse_e2e::{stderr, stdout, Gateway};

fn admin(gw: &Gateway, user: &str, command: &str) -> Output {
    gw.ssh(user, &format!("{user}@+admin"), command)
}

/// Puts alice in the admin group (the users file is re-read when it changes).
fn make_alice_admin(gw: &Gateway) {
    let path = gw.dir.path().join("users.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen(
        "groups = [\"devs\"]",
        "groups = [\"devs\", \"gatehouse-admins\"]",
        1,
    );
    std::fs::write(&path, text).unwrap();
}

#[test]
fn admins_manage_containers_over_ssh_and_others_are_refused() {
    let gw = Gateway::start();
    make_alice_admin(&gw);
    let out = admin(
        &gw,
        "alice",
        "container create web9 --owner bob --memory 256M --purpose 'team web'",
    );
    assert!(out.status.success(), "{}\n{}", stderr(&out), gw.log());
    assert!(stderr(&out).contains("container web9 created"));
    let out = admin(&gw, "alice", "container set web9 --memory 512M");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = admin(&gw, "alice", "container start web9");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = admin(&gw, "alice", "container stop web9");
    assert!(out.status.success(), "{}", stderr(&out));
    let show = stdout(&admin(&gw, "alice", "container show web9"));
    assert!(
        show.contains("memory=512M") && show.contains("state:      stopped"),
        "{show}"
    );
    // Host paths are not offered over SSH; nor is anything but the admin commands.
    let out = admin(&gw, "alice", "container backup web9 /etc/x.tar.zst");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("run them on the gateway host"),
        "{}",
        stderr(&out)
    );
    let out = admin(&gw, "alice", "sh -c id");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // bob is no admin and no policy delegates anything to him.
    let out = admin(&gw, "bob", "container create mine --memory 1G");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("bob may not create containers"),
        "{}",
        stderr(&out)
    );
    let out = admin(&gw, "bob", "container stop web9");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("bob may not run container.stop on 'web9'"),
        "{}",
        stderr(&out)
    );
    assert!(gw
        .cli_ok(&["container", "list"])
        .lines()
        .all(|l| !l.starts_with("mine ")));

    // All of it is in the audit log, with who and before/after.
    let a = gw.audit();
    let by_alice = |kind: &str| {
        a.lines().any(|l| {
            l.contains(&format!("\"type\":\"{kind}\""))
                && l.contains("\"by\":\"alice (over SSH from 127.0.0.1")
        })
    };
    assert!(
        by_alice("container.created")
            && by_alice("container.changed")
            && by_alice("container.stopped"),
        "{a}"
    );
    assert!(a
        .lines()
        .any(|l| l.contains("\"type\":\"container.changed\"")
            && l.contains("\"before\"")
            && l.contains("\"after\"")));
    assert!(
        a.lines()
            .any(|l| l.contains("\"type\":\"admin.refused\"")
                && l.contains("\"by\":\"bob (over SSH")),
        "{a}"
    );
}

#[test]
fn self_service_respects_quotas_and_delegation_covers_only_its_containers() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("p.toml"),
        r#"
[[allow]]
name = "own"
groups = ["devs"]
owned = true

[[self_service]]
name = "dev-boxes"
groups = ["devs"]
images = ["debian-12"]
max_containers = 2
max_memory = "512M"
labels = { team = "dev" }

[[admin]]
name = "team-leads"
users = ["alice"]
commands = ["container.start", "container.stop", "container.restart", "container.list"]
containers = ["team-*"]

[[admin]]
name = "auditors"
users = ["bob"]
commands = ["sessions.*", "replay", "audit.verify"]
"#,
    )
    .unwrap();
    let gw = Gateway::start_with(&format!("[policy]\npaths = [\"{}\"]\n", policies.display()));

    // bob creates his own boxes, up to the quota, with the rule's limits and labels.
    let out = admin(&gw, "bob", "container create box1");
    assert!(out.status.success(), "{}\n{}", stderr(&out), gw.log());
    let show = stdout(&admin(&gw, "bob", "container show box1"));
    assert!(
        show.contains("owner:      bob") && show.contains("memory=512M"),
        "{show}"
    );
    assert!(
        show.contains("team=dev") && show.contains("gatehouse.self-service=dev-boxes"),
        "{show}"
    );
    let out = admin(&gw, "bob", "container create box2 --memory 1G");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("memory 1024M is more than rule 'dev-boxes' allows (512M)"),
        "{}",
        stderr(&out)
    );
    let out = admin(&gw, "bob", "container create box2 --memory 256M");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = admin(&gw, "bob", "container create box3");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("quota reached: you own 2 containers"),
        "{}",
        stderr(&out)
    );
    let out = admin(&gw, "bob", "container create box3 --owner alice");
    assert!(
        stderr(&out).contains("only for themselves"),
        "{}",
        stderr(&out)
    );
    // He uses it like any container, and may delete it to make room.
    let out = gw.ssh("bob", "bob@box1", "id -un");
    assert_eq!(stdout(&out), "bob\n", "{}", stderr(&out));
    assert!(admin(&gw, "bob", "container delete box2").status.success());
    assert!(admin(&gw, "bob", "container create box3").status.success());
    let list = stdout(&admin(&gw, "bob", "container list"));
    assert!(
        list.contains("box1") && list.contains("box3") && !list.contains("box2"),
        "{list}"
    );

    // alice may power-cycle team containers, nothing else.
    gw.create_container("team-a", "bob");
    gw.create_container("other", "bob");
    let out = admin(&gw, "alice", "container start team-a");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(admin(&gw, "alice", "container restart team-a")
        .status
        .success());
    let out = admin(&gw, "alice", "container start other");
    assert!(
        stderr(&out).contains("alice may not run container.start on 'other'"),
        "{}",
        stderr(&out)
    );
    let out = admin(&gw, "alice", "container delete team-a");
    assert!(
        stderr(&out).contains("alice may not run container.delete on 'team-a'"),
        "{}",
        stderr(&out)
    );
    let list = stdout(&admin(&gw, "alice", "container list"));
    assert!(
        list.contains("team-a") && !list.contains("other") && !list.contains("box1"),
        "{list}"
    );
    let a = gw.audit();
    assert!(
        a.lines()
            .any(|l| l.contains("\"type\":\"container.created\"")
                && l.contains("box1")
                && l.contains("\"by\":\"bob (over SSH")),
        "{a}"
    );
}
