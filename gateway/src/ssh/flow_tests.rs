//! The session flow (handler → access → session → live → recording) driven by an
//! in-process russh client against a gateway on the fake runtime: no root, no
//! container. Each test takes some tens of milliseconds and prints how long (speed is
//! measured, not asserted: a loaded machine must not fail them).

use std::time::{Duration, Instant};

use crate::testing::{outcome, TestGateway};

/// Prints how long a flow test took (`cargo test -- --nocapture` shows it).
fn took(test: &str, started: Instant) {
    println!("{test}: {} ms", started.elapsed().as_millis());
}

async fn exec(gw: &TestGateway, user: &str, command: &str) -> crate::testing::Outcome {
    let handle = gw.connect(user).await;
    let mut channel = handle
        .channel_open_session()
        .await
        .expect("session channel");
    channel.exec(true, command).await.expect("exec");
    outcome(&mut channel).await
}

/// alice's session running `wait` (until a signal) in web01, once the gateway has it
/// registered.
async fn waiting(
    gw: &TestGateway,
) -> (
    russh::client::Handle<crate::testing::Client>,
    russh::Channel<russh::client::Msg>,
) {
    let handle = gw.connect("alice@web01").await;
    let channel = handle.channel_open_session().await.expect("session");
    channel.exec(true, "wait").await.expect("exec");
    while gw.app.live.count() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (handle, channel)
}

#[tokio::test]
async fn refused_by_policy_with_the_reason() {
    let gw = TestGateway::start("bob", None).await;
    let started = Instant::now();
    let o = exec(&gw, "alice@web01", "exit 0").await;
    took("refused_by_policy_with_the_reason", started);
    assert_eq!(o.status, Some(1), "{o:?}");
    assert!(
        o.err.contains("access denied") && o.err.contains("belongs to someone else"),
        "{o:?}"
    );
    let decisions = gw.audit_events("policy.decision");
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0]["user"], "alice");
    assert_eq!(decisions[0]["allowed"], false);
    assert!(gw.audit_events("session.start").is_empty());
}

#[tokio::test]
async fn the_exit_status_is_relayed() {
    let gw = TestGateway::start("alice", None).await;
    let started = Instant::now();
    let o = exec(&gw, "alice@web01", "exit 3").await;
    took("the_exit_status_is_relayed", started);
    assert_eq!(o.status, Some(3), "{o:?}");
    let o = exec(&gw, "alice@web01", "echo hello").await;
    assert_eq!((o.out.as_str(), o.status), ("hello\n", Some(0)), "{o:?}");
}

#[tokio::test]
async fn revocation_ends_a_running_session() {
    let allow = "[[allow]]\nname = \"devs\"\ngroups = [\"devs\"]\ncontainers = [\"web01\"]\nactions = [\"exec\"]\n";
    let gw = TestGateway::start("bob", Some(allow)).await;
    let started = Instant::now();
    let (_handle, mut channel) = waiting(&gw).await;
    // The policy changes under the running session: it no longer allows it.
    let file = gw.dir.path().join("policies/p.toml");
    std::fs::write(
        &file,
        "[[deny]]\nname = \"freeze\"\ngroups = [\"devs\"]\nmessage = \"change freeze\"\n",
    )
    .expect("policy");
    gw.app.policy.reload().expect("reload");
    let policy = gw.app.policy.current();
    crate::live::revalidate(&gw.app.live, policy.as_ref(), &gw.app.audit).await;
    let o = outcome(&mut channel).await;
    took("revocation_ends_a_running_session", started);
    assert!(o.err.contains("access revoked"), "{o:?}");
    assert_eq!(o.status, Some(255), "{o:?}");
    assert_eq!(gw.audit_events("session.revoked").len(), 1);
}

#[tokio::test]
async fn the_recording_is_sealed_when_the_gateway_stops() {
    let gw = TestGateway::start("alice", None).await;
    let started = Instant::now();
    let (_handle, mut channel) = waiting(&gw).await;
    // What the gateway does on SIGTERM: every session told to end, then waited for.
    assert_eq!(gw.app.live.end_all("the gateway is stopping"), 1);
    let o = outcome(&mut channel).await;
    while gw.app.live.count() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    took("the_recording_is_sealed_when_the_gateway_stops", started);
    assert!(o.err.contains("the gateway is stopping"), "{o:?}");
    let ends = gw.audit_events("session.end");
    assert_eq!(ends.len(), 1, "{ends:?}");
    let sealed = &ends[0]["recording"];
    assert!(
        sealed.as_object().is_some_and(|files| !files.is_empty()),
        "no digests of the recording in {ends:?}"
    );
}
