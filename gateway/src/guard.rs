//! Brute-force protection, like OpenSSH's MaxStartups and LoginGraceTime plus
//! fail2ban-style limits: failed authentications are counted per source address and per
//! user in a sliding window; each failure slows the next answer (doubling, capped), and
//! past a limit further attempts are refused outright until the window has passed.
//! A success clears the counters of that address and user. IPv6 sources are counted per
//! /64 (one host's whole subnet), and the per-user limit holds for passwords only: guesses
//! at alice's password never lock out alice's key.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Failures counted within this window.
    pub window: Duration,
    /// Failures from one address before it is refused.
    pub per_address: u32,
    /// Failures for one user (from anywhere) before the user is refused.
    pub per_user: u32,
    /// Delay after the first failure; doubles with each further one.
    pub base_delay: Duration,
    /// Longest delay.
    pub max_delay: Duration,
    /// Unauthenticated connections at once (MaxStartups).
    pub max_unauthenticated: usize,
    /// Time to authenticate before the connection is closed (LoginGraceTime).
    pub grace: Duration,
    /// Connections from one source that may come without logging in within
    /// [`NOAUTH_WINDOW`] before further connections from it are refused at once (like
    /// OpenSSH's PerSourcePenalties for `noauth`, counted from the connect): a scanner or
    /// a DHEat-style flood is slowed, people who log in are not.
    pub per_source_unauthenticated: u32,
}

/// The window connections that end unauthenticated are counted in.
pub const NOAUTH_WINDOW: Duration = Duration::from_secs(60);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window: Duration::from_secs(600),
            per_address: 10,
            per_user: 30,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(4),
            max_unauthenticated: 64,
            grace: Duration::from_secs(60),
            per_source_unauthenticated: 20,
        }
    }
}

/// How an attempt authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A public key (or a ProxyJump's inner login): counted per address only.
    Key,
    /// A password: counted per address and per user.
    Password,
}

/// The source an attempt is counted under: an IPv4 address (also one mapped into IPv6),
/// or an IPv6 address's /64.
fn source(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(a) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// What to do with an authentication attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Check the credentials.
    Proceed,
    /// Refuse without checking; the reason is for the log.
    Refuse(String),
}

#[derive(Default)]
struct State {
    by_address: HashMap<IpAddr, Vec<Instant>>,
    by_user: HashMap<String, Vec<Instant>>,
    /// Connections not (yet) logged in, by source, when they came.
    noauth: HashMap<IpAddr, Vec<Instant>>,
}

/// The shared counters.
pub struct Guard {
    limits: Limits,
    state: Mutex<State>,
}

fn recent(list: &mut Vec<Instant>, window: Duration) -> u32 {
    list.retain(|t| t.elapsed() < window);
    list.len() as u32
}

impl Guard {
    /// A guard with these limits.
    pub fn new(limits: Limits) -> Self {
        Guard {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decides whether an attempt by `user` from `addr` may be checked at all.
    pub fn check(&self, addr: Option<IpAddr>, user: &str, method: Method) -> Verdict {
        let Ok(mut s) = self.state.lock() else {
            return Verdict::Proceed;
        };
        let window = self.limits.window;
        if let Some(a) = addr {
            if let Some(list) = s.by_address.get_mut(&source(a)) {
                if recent(list, window) >= self.limits.per_address {
                    return Verdict::Refuse(format!("too many failed logins from {a}"));
                }
            }
        }
        if method == Method::Key {
            return Verdict::Proceed;
        }
        if let Some(list) = s.by_user.get_mut(user) {
            if recent(list, window) >= self.limits.per_user {
                return Verdict::Refuse(format!("too many failed logins for {user}"));
            }
        }
        Verdict::Proceed
    }

    /// Decides whether a new connection from `addr` is served at all; one that is counts
    /// as unauthenticated against its source until it logs in.
    pub fn connection(&self, addr: IpAddr) -> Verdict {
        let Ok(mut s) = self.state.lock() else {
            return Verdict::Proceed;
        };
        let source = source(addr);
        let limit = self.limits.per_source_unauthenticated;
        let list = s.noauth.entry(source).or_default();
        if recent(list, NOAUTH_WINDOW) >= limit {
            return Verdict::Refuse(format!(
                "{limit} connections from {source} without a login within {}s",
                NOAUTH_WINDOW.as_secs()
            ));
        }
        list.push(Instant::now());
        if s.noauth.len() > 100_000 {
            s.noauth.clear();
        }
        Verdict::Proceed
    }

    /// A connection from `addr` logged in: it no longer counts against its source.
    pub fn connection_authenticated(&self, addr: IpAddr) {
        if let Ok(mut s) = self.state.lock() {
            let source = source(addr);
            if let Some(list) = s.noauth.get_mut(&source) {
                list.pop();
                if list.is_empty() {
                    s.noauth.remove(&source);
                }
            }
        }
    }

    /// Records a failure; returns how long to wait before answering.
    pub fn failed(&self, addr: Option<IpAddr>, user: &str, method: Method) -> Duration {
        let Ok(mut s) = self.state.lock() else {
            return self.limits.base_delay;
        };
        let window = self.limits.window;
        let mut worst = 0;
        if let Some(a) = addr {
            let list = s.by_address.entry(source(a)).or_default();
            list.push(Instant::now());
            worst = worst.max(recent(list, window));
        }
        if method == Method::Password {
            let list = s.by_user.entry(user.to_string()).or_default();
            list.push(Instant::now());
            worst = worst.max(recent(list, window));
        }
        // Bound memory: forget the oldest picture if it grows without limit.
        if s.by_address.len() > 100_000 || s.by_user.len() > 100_000 {
            *s = State::default();
        }
        let factor = 1u32 << worst.saturating_sub(1).min(16);
        (self.limits.base_delay * factor).min(self.limits.max_delay)
    }

    /// Records a success: the address and the user start afresh.
    pub fn succeeded(&self, addr: Option<IpAddr>, user: &str) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(a) = addr {
                s.by_address.remove(&source(a));
            }
            s.by_user.remove(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(Limits {
            per_address: 3,
            per_user: 5,
            ..Limits::default()
        })
    }

    #[test]
    fn slows_then_refuses_an_address_but_not_others() {
        let g = guard();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let d1 = g.failed(Some(a), "x", Method::Password);
        let d2 = g.failed(Some(a), "y", Method::Password);
        assert!(d2 > d1, "no back-off: {d1:?} {d2:?}");
        assert_eq!(g.check(Some(a), "z", Method::Password), Verdict::Proceed);
        g.failed(Some(a), "z", Method::Password);
        assert!(matches!(
            g.check(Some(a), "alice", Method::Password),
            Verdict::Refuse(_)
        ));
        assert_eq!(
            g.check(Some(b), "alice", Method::Password),
            Verdict::Proceed
        );
        // Delays are capped.
        for _ in 0..40 {
            assert!(g.failed(Some(b), "q", Method::Password) <= Limits::default().max_delay);
        }
    }

    #[test]
    fn per_user_limit_and_success_resets() {
        let g = guard();
        for i in 0..5 {
            g.failed(Some(IpAddr::from([10, 0, 0, i])), "alice", Method::Password);
        }
        let far = Some("10.9.9.9".parse().unwrap());
        assert!(matches!(
            g.check(far, "alice", Method::Password),
            Verdict::Refuse(_)
        ));
        // Her key still gets in: others' password guesses do not lock it out.
        assert_eq!(g.check(far, "alice", Method::Key), Verdict::Proceed);
        g.succeeded(None, "alice");
        assert_eq!(g.check(far, "alice", Method::Password), Verdict::Proceed);
    }

    #[test]
    fn a_source_whose_connections_do_not_log_in_is_refused_at_connect() {
        let g = Guard::new(Limits {
            per_source_unauthenticated: 3,
            ..Limits::default()
        });
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        // People who log in never add up.
        for _ in 0..10 {
            assert_eq!(g.connection(a), Verdict::Proceed);
            g.connection_authenticated(a);
        }
        for _ in 0..3 {
            assert_eq!(g.connection(a), Verdict::Proceed);
        }
        assert!(matches!(g.connection(a), Verdict::Refuse(_)));
        assert_eq!(g.connection("192.0.2.8".parse().unwrap()), Verdict::Proceed);
    }

    #[test]
    fn an_ipv6_64_counts_as_one_source_and_key_failures_lock_no_user() {
        let g = guard();
        for i in 1..=3u16 {
            let a = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 7, i, i, i, i);
            g.failed(Some(IpAddr::V6(a)), "x", Method::Password);
        }
        let same: IpAddr = "2001:db8:0:7:ffff::1".parse().unwrap();
        let other: IpAddr = "2001:db8:0:8::1".parse().unwrap();
        assert!(matches!(
            g.check(Some(same), "y", Method::Key),
            Verdict::Refuse(_)
        ));
        assert_eq!(g.check(Some(other), "y", Method::Key), Verdict::Proceed);
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        g.failed(Some(mapped), "z", Method::Key);
        assert_eq!(source(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
        for i in 0..10u8 {
            g.failed(Some(IpAddr::from([10, 1, 0, i])), "bob", Method::Key);
        }
        assert_eq!(
            g.check(Some("10.2.0.1".parse().unwrap()), "bob", Method::Password),
            Verdict::Proceed
        );
    }
}
