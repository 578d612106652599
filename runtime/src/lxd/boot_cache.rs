//! What the gateway learned inside an instance (a login's ids, an account made ready),
//! kept for one boot of that instance only. A boot is named by the instance's creation and
//! last start times, so an instance another gateway restarted, restored or re-created
//! under the same name is looked at afresh.

use std::collections::HashMap;
use std::sync::Mutex;

/// One instance's values: the boot they were learned in, and the values by key.
type Learned<V> = (String, HashMap<String, V>);

/// Values per instance, per key, valid during one boot.
pub struct PerBoot<V> {
    inner: Mutex<HashMap<String, Learned<V>>>,
}

impl<V> Default for PerBoot<V> {
    fn default() -> Self {
        PerBoot {
            inner: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> PerBoot<V> {
    /// The value for `key` learned during `boot` of instance `name`.
    pub fn get(&self, name: &str, boot: &str, key: &str) -> Option<V> {
        let map = self.inner.lock().ok()?;
        match map.get(name) {
            Some((b, values)) if b == boot => values.get(key).cloned(),
            _ => None,
        }
    }

    /// Remembers `value`; what was learned during an earlier boot is dropped.
    pub fn insert(&self, name: &str, boot: &str, key: &str, value: V) {
        if let Ok(mut map) = self.inner.lock() {
            let entry = map
                .entry(name.to_string())
                .or_insert_with(|| (boot.to_string(), HashMap::new()));
            if entry.0 != boot {
                *entry = (boot.to_string(), HashMap::new());
            }
            entry.1.insert(key.to_string(), value);
        }
    }

    /// Forgets everything about instance `name`.
    pub fn forget(&self, name: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_last_one_boot() {
        let c = PerBoot::default();
        c.insert("web01", "boot1", "alice", 10001);
        assert_eq!(c.get("web01", "boot1", "alice"), Some(10001));
        assert_eq!(
            c.get("web01", "boot2", "alice"),
            None,
            "restarted elsewhere"
        );
        assert_eq!(c.get("web02", "boot1", "alice"), None);
        c.insert("web01", "boot2", "bob", 10002);
        assert_eq!(
            c.get("web01", "boot1", "alice"),
            None,
            "the old boot is gone"
        );
        assert_eq!(c.get("web01", "boot2", "bob"), Some(10002));
        c.forget("web01");
        assert_eq!(c.get("web01", "boot2", "bob"), None);
    }
}
