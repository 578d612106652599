//! Why the gateway may end a running session on its own: access revoked (a policy change
//! or a closed time window), the rule's `max_session` reached, or `idle_timeout` without
//! input.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::live::Ending;

/// The ways a session can be ended by the gateway, watched together.
pub struct Endings {
    revoked: mpsc::Receiver<Ending>,
    max: Option<(Instant, Duration)>,
    idle: Option<Duration>,
    last_input: Instant,
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl Endings {
    /// Watches `revoked` and the rule's limits, from now.
    pub fn new(
        revoked: mpsc::Receiver<Ending>,
        max_session: Option<Duration>,
        idle_timeout: Option<Duration>,
    ) -> Self {
        let now = Instant::now();
        Endings {
            revoked,
            max: max_session.map(|d| (now + d, d)),
            idle: idle_timeout,
            last_input: now,
        }
    }

    /// The person typed or sent something.
    pub fn touch(&mut self) {
        self.last_input = Instant::now();
    }

    /// Resolves with why the session must end (a time limit reached also ends what it
    /// left running; an idle session's background jobs stay).
    pub async fn next(&mut self) -> Ending {
        let max = async {
            match self.max {
                Some((at, d)) => {
                    tokio::time::sleep_until(at).await;
                    Ending {
                        message: format!(
                            "the maximum session time ({}) is reached; session ended",
                            human(d)
                        ),
                        processes_too: true,
                    }
                }
                None => std::future::pending().await,
            }
        };
        let idle = async {
            match self.idle {
                Some(d) => {
                    tokio::time::sleep_until(self.last_input + d).await;
                    Ending {
                        message: format!("no input for {}; session ended", human(d)),
                        processes_too: false,
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(why) = self.revoked.recv() => why,
            why = max => why,
            why = idle => why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limits_and_revocation() {
        let (_tx, rx) = mpsc::channel(1);
        let mut e = Endings::new(
            rx,
            Some(Duration::from_secs(3600)),
            Some(Duration::from_secs(60)),
        );
        tokio::time::sleep(Duration::from_secs(50)).await;
        e.touch();
        let t0 = Instant::now();
        let idle = e.next().await;
        assert_eq!(idle.message, "no input for 1m; session ended");
        assert!(!idle.processes_too);
        assert_eq!(t0.elapsed(), Duration::from_secs(60));
        let (_tx, rx) = mpsc::channel(1);
        let mut e = Endings::new(rx, Some(Duration::from_secs(7200)), None);
        let max = e.next().await;
        assert_eq!(
            max.message,
            "the maximum session time (2h) is reached; session ended"
        );
        assert!(max.processes_too);
        let (tx, rx) = mpsc::channel(1);
        let mut e = Endings::new(rx, None, None);
        let revoked = Ending {
            message: "access revoked: x".into(),
            processes_too: true,
        };
        tx.send(revoked.clone()).await.unwrap();
        assert_eq!(e.next().await, revoked);
        // Without limits, a closed channel never ends the session by itself.
        drop(tx);
        assert!(tokio::time::timeout(Duration::from_secs(3600), e.next())
            .await
            .is_err());
    }
}
