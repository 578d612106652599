//! The CPUs a container with a CPU limit runs on, so that `nproc` (which counts the CPUs
//! a process may run on, not the quota) tells its share as it does under LXD: ⌈cpus⌉ of
//! the host's, from a place the container's name picks, so that containers spread over
//! the host's CPUs. The quota stays what limits; the affinity only answers `nproc` (the
//! container's root may widen it again, and gains no CPU time by that).

use super::error::{NativeError, Result};
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs of `online` (sorted host CPU numbers) for a limit of `cpus`: `None` when
/// the limit covers them all (or there is none).
pub fn pick(name: &str, cpus: Option<f64>, online: &[usize]) -> Option<Vec<usize>> {
    let want = cpus?.ceil().max(1.0) as usize;
    if online.is_empty() || want >= online.len() {
        return None;
    }
    // FNV-1a: stable across runs and builds (std's hasher is not).
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let start = (hash % online.len() as u64) as usize;
    let mut picked: Vec<usize> = (0..want)
        .map(|i| online[(start + i) % online.len()])
        .collect();
    picked.sort_unstable();
    Some(picked)
}

/// Keeps the calling process (and what it starts from now on) to the CPUs [`pick`]
/// chooses among those it may run on now.
pub fn confine_self(name: &str, cpus: Option<f64>) -> Result<()> {
    let now = sched_getaffinity(Pid::from_raw(0)).map_err(NativeError::sys("sched_getaffinity"))?;
    let online: Vec<usize> = (0..CpuSet::count())
        .filter(|c| now.is_set(*c).unwrap_or(false))
        .collect();
    let Some(picked) = pick(name, cpus, &online) else {
        return Ok(());
    };
    let mut set = CpuSet::new();
    for c in picked {
        set.set(c).map_err(NativeError::sys("cpu set"))?;
    }
    sched_setaffinity(Pid::from_raw(0), &set).map_err(NativeError::sys("sched_setaffinity"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_below_the_hosts_cpus_picks_that_many_spread_by_name() {
        let online: Vec<usize> = (0..8).collect();
        assert_eq!(pick("web01", None, &online), None);
        assert_eq!(pick("web01", Some(8.0), &online), None);
        assert_eq!(pick("web01", Some(12.0), &online), None);
        assert_eq!(pick("web01", Some(1.5), &online).unwrap().len(), 2);
        assert_eq!(pick("web01", Some(0.1), &online).unwrap().len(), 1);
        // The same name, the same CPUs; different names spread.
        assert_eq!(
            pick("web01", Some(2.0), &online),
            pick("web01", Some(2.0), &online)
        );
        let firsts: std::collections::BTreeSet<_> = (0..32)
            .map(|i| pick(&format!("c{i}"), Some(1.0), &online).unwrap()[0])
            .collect();
        assert!(firsts.len() > 4, "{firsts:?}");
        // Only CPUs the host offers.
        let sparse = [1, 3, 5];
        let got = pick("x", Some(2.0), &sparse).unwrap();
        assert!(got.iter().all(|c| sparse.contains(c)), "{got:?}");
        assert_eq!(pick("x", Some(1.0), &[]), None);
    }
}
