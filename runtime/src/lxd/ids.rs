//! A host id range of its own for every instance: LXD's `security.idmap.isolated` with an
//! explicit `security.idmap.base` chosen here. LXD 5.0's own choice of isolated ranges is
//! unique only within a project, and under parallel starts it handed out a range outside
//! root's subordinate ids, so the instance failed to start; the gateway picks the lowest
//! free slot of root's range in `/etc/subuid` and `/etc/subgid` instead, with every
//! project's instances in view, under a host-wide lock.

use serde_json::Value;

/// Ids per instance (0-65535 inside).
pub const SIZE: u32 = 65_536;

/// Where the gateways of one host take turns choosing ranges.
pub const LOCK: &str = "/run/lock/gatehouse-lxd-ids.lock";

/// The subordinate range `user` has in a `/etc/subuid`-style `text`: (first, count).
pub fn subordinate_range(text: &str, user: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        if f.next()? != user {
            return None;
        }
        let first = f.next()?.parse().ok()?;
        let count = f.next()?.parse().ok()?;
        f.next().is_none().then_some((first, count))
    })
}

/// The range both files give root (the part they share), if they give one.
pub fn root_range(subuid: &str, subgid: &str) -> Option<(u32, u32)> {
    let (u, g) = (
        subordinate_range(subuid, "root")?,
        subordinate_range(subgid, "root")?,
    );
    let first = u.0.max(g.0);
    let end = (u64::from(u.0) + u64::from(u.1)).min(u64::from(g.0) + u64::from(g.1));
    let count = u32::try_from(end.checked_sub(u64::from(first))?).ok()?;
    Some((first, count))
}

/// The bases of the id ranges instances hold, from an answer of
/// `GET /1.0/instances?recursion=1&all-projects=true` (chosen ones and LXD's own).
pub fn taken_bases(instances: &Value) -> Vec<u32> {
    let mut taken = Vec::new();
    for i in instances.as_array().into_iter().flatten() {
        for key in ["security.idmap.base", "volatile.idmap.base"] {
            if let Some(b) = i["config"][key].as_str().and_then(|b| b.parse().ok()) {
                taken.push(b);
            }
        }
    }
    taken
}

/// The lowest slot of `range` whose [`SIZE`] ids overlap no taken range. The range's
/// first slot is left out: LXD's instances without an isolated map start there.
pub fn choose(range: (u32, u32), taken: &[u32]) -> Option<u32> {
    let (first, count) = (u64::from(range.0), u64::from(range.1));
    let size = u64::from(SIZE);
    (1..count / size)
        .map(|slot| first + slot * size)
        .take_while(|base| base + size <= first + count)
        .find(|base| {
            taken
                .iter()
                .all(|t| u64::from(*t) + size <= *base || u64::from(*t) >= base + size)
        })
        .and_then(|b| u32::try_from(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roots_range_is_read_from_both_files() {
        let subuid = "_lxd:100000:10000001\nroot:100000:10000001\n";
        assert_eq!(root_range(subuid, subuid), Some((100_000, 10_000_001)));
        let subgid = "root:200000:65536\n";
        assert_eq!(root_range(subuid, subgid), Some((200_000, 65_536)));
        assert_eq!(root_range("alice:1:2\n", subuid), None);
        assert_eq!(root_range("root:x:2\n", subuid), None);
        assert_eq!(root_range("root:1:2:3\n", subuid), None);
        assert_eq!(root_range("root:1:2\n", "root:5000:2\n"), None);
    }

    #[test]
    fn the_lowest_free_slot_above_the_first_is_chosen() {
        let range = (100_000, 10 * SIZE);
        assert_eq!(choose(range, &[]), Some(100_000 + SIZE));
        // LXD's own maps (at the range's start) do not count against later slots.
        let taken = [100_000, 100_000 + SIZE, 100_000 + 3 * SIZE];
        assert_eq!(choose(range, &taken), Some(100_000 + 2 * SIZE));
        // A base off the grid blocks both slots it overlaps.
        assert_eq!(
            choose(range, &[100_000 + SIZE + 7]),
            Some(100_000 + 3 * SIZE)
        );
        let full: Vec<u32> = (1..10).map(|s| 100_000 + s * SIZE).collect();
        assert_eq!(choose(range, &full), None);
        assert_eq!(choose((100_000, SIZE), &[]), None);
        assert_eq!(choose((u32::MAX - 10, 2 * SIZE), &[]), None);
    }

    #[test]
    fn taken_bases_come_from_config_and_volatile_keys() {
        let answer = json!([
            {"config": {"security.idmap.base": "165536", "volatile.idmap.base": "165536"}},
            {"config": {"volatile.idmap.base": "100000"}},
            {"config": {"volatile.idmap.base": "garbage"}},
            {"config": null},
            "not an instance"
        ]);
        assert_eq!(taken_bases(&answer), [165_536, 165_536, 100_000]);
        assert!(taken_bases(&json!({"not": "a list"})).is_empty());
    }
}
