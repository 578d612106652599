//! The container inventory: one JSON record per container under
//! `state_dir/containers/<name>/container.json`, written atomically.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::limits::Limits;
use crate::names::validate_container_name;

/// What the inventory knows about one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The container's name (a DNS label); also its hostname.
    pub name: String,
    /// The user who owns it.
    pub owner: String,
    /// The image its root filesystem is layered on.
    pub image: String,
    /// Which generation of the image (`image build --refresh` makes new ones; `None` is
    /// the first); `container rebase` moves it to the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    /// What it is for, in the owner's words.
    #[serde(default)]
    pub purpose: String,
    /// Free-form labels such as `env=prod`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When someone last logged in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login: Option<DateTime<Utc>>,
    /// Its address on the container network, once allocated (kept for good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::Ipv4Addr>,
    /// This container's own idle stop (`never`, or a duration like `2h`), overriding
    /// the runtime's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_stop: Option<String>,
    /// The host it is placed on, where the runtime has several (an LXD cluster member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Whether it may make user namespaces of its own (to run containers or sandboxes
    /// inside); off unless an admin turns it on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nesting: bool,
    /// The first host id of its own id range (root inside), where its files are now;
    /// `None` for a container from before ranges were per container (the shared one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_base: Option<u32>,
    /// Which init it boots; `None`: the image's own when it has one (`/sbin/init`),
    /// the built-in one otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitChoice>,
}

/// The init a container boots (`container create --init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitChoice {
    /// The image's `/sbin/init` (systemd on Debian's full image).
    Image,
    /// gatehouse's built-in init: reaps orphans, stops on request; no services.
    Builtin,
}

impl InitChoice {
    /// Reads `image` or `builtin`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "image" => Ok(InitChoice::Image),
            "builtin" => Ok(InitChoice::Builtin),
            _ => Err(RuntimeError::Invalid(format!(
                "invalid init '{}': use image or builtin",
                crate::names::shorten(s)
            ))),
        }
    }
}

impl ContainerRecord {
    /// A new container of `owner` on `image`, created now, with nothing else set.
    pub fn new(name: &str, owner: &str, image: &str) -> Self {
        ContainerRecord {
            name: name.into(),
            owner: owner.into(),
            image: image.into(),
            generation: None,
            purpose: String::new(),
            labels: BTreeMap::new(),
            limits: Limits::default(),
            created: Utc::now(),
            last_login: None,
            address: None,
            host: None,
            nesting: false,
            id_base: None,
            idle_stop: None,
            init: None,
        }
    }
}

/// The inventory directory (`state_dir/containers`).
#[derive(Debug, Clone)]
pub struct Inventory {
    dir: PathBuf,
}

const RECORD_FILE: &str = "container.json";

impl Inventory {
    /// An inventory rooted at `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::io("cannot create inventory directory", &dir, e))?;
        Ok(Inventory { dir })
    }

    /// The directory holding one container's state. The name must be valid.
    pub fn container_dir(&self, name: &str) -> Result<PathBuf> {
        validate_container_name(name)?;
        Ok(self.dir.join(name))
    }

    /// Reads one record.
    pub fn get(&self, name: &str) -> Result<ContainerRecord> {
        let path = self.container_dir(name)?.join(RECORD_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::NoSuchContainer(name.to_string()))
            }
            Err(e) => return Err(RuntimeError::io("cannot read", &path, e)),
        };
        let record: ContainerRecord =
            serde_json::from_str(&text).map_err(|e| RuntimeError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if record.name != name {
            return Err(RuntimeError::Corrupt {
                path,
                reason: format!("record names '{}'", record.name),
            });
        }
        Ok(record)
    }

    /// Adds a new record; fails if the name is taken.
    pub fn create(&self, record: &ContainerRecord) -> Result<()> {
        let dir = self.container_dir(&record.name)?;
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::ContainerExists(record.name.clone()))
            }
            Err(e) => return Err(RuntimeError::io("cannot create", &dir, e)),
        }
        self.save(record)
    }

    /// Writes a record atomically (temporary file, fsync, rename).
    pub fn save(&self, record: &ContainerRecord) -> Result<()> {
        let dir = self.container_dir(&record.name)?;
        let json = serde_json::to_vec_pretty(record).map_err(|e| RuntimeError::Corrupt {
            path: dir.join(RECORD_FILE),
            reason: e.to_string(),
        })?;
        crate::atomic::write_atomic(&dir.join(RECORD_FILE), &json)
    }

    /// All records, sorted by name. Unreadable records are skipped with a warning.
    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| RuntimeError::io("cannot list", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if validate_container_name(&name).is_err() || !entry.path().join(RECORD_FILE).exists() {
                continue;
            }
            match self.get(&name) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!("skipping container {name}: {e}"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The container's network address, allocated now if it has none. Allocation holds
    /// an inventory-wide lock and is saved before the lock is released, so no address is
    /// ever handed out twice, also across restarts and concurrent gateways.
    pub fn assign_address(
        &self,
        name: &str,
        net: &crate::network::NetworkConfig,
    ) -> Result<std::net::Ipv4Addr> {
        let _lock = crate::lockfile::lock(&self.dir.join(".addresses.lock"))?;
        let mut record = self.get(name)?;
        if let Some(a) = record.address.filter(|a| net.subnet.contains(a)) {
            return Ok(a);
        }
        let taken: Vec<_> = self.list()?.iter().filter_map(|r| r.address).collect();
        let address = crate::network::allocate(net, &taken).ok_or_else(|| {
            RuntimeError::Invalid(format!("no free address left in {}", net.subnet))
        })?;
        record.address = Some(address);
        self.save(&record)?;
        Ok(address)
    }

    /// Gives container `name` an id range of its own (native runtime): the one it has if
    /// no other container holds it, else the lowest free one, after `move_files` has moved
    /// its files from the range they are in (the shared one, or a restored backup's taken
    /// range) to the new one. Under the inventory lock, so a concurrent start waits for
    /// the move. Returns the range.
    pub fn assign_id_base(
        &self,
        name: &str,
        move_files: impl FnOnce(u32, u32) -> Result<()>,
    ) -> Result<u32> {
        let _lock = crate::lockfile::lock(&self.dir.join(".addresses.lock"))?;
        let mut record = self.get(name)?;
        let now = record.id_base.unwrap_or(crate::images::ID_BASE);
        let taken: Vec<u32> = self
            .list()?
            .iter()
            .filter(|r| r.name != name)
            .filter_map(|r| r.id_base)
            .collect();
        if record.id_base.is_some() && now != crate::images::ID_BASE && !taken.contains(&now) {
            return Ok(now);
        }
        let base = crate::images::free_id_base(&taken).ok_or_else(|| {
            RuntimeError::Invalid("no free id range left for another container".into())
        })?;
        move_files(now, base)?;
        record.id_base = Some(base);
        self.save(&record)?;
        Ok(base)
    }

    /// Removes a container's whole directory.
    pub fn remove(&self, name: &str) -> Result<()> {
        let dir = self.container_dir(name)?;
        if !dir.join(RECORD_FILE).exists() {
            return Err(RuntimeError::NoSuchContainer(name.to_string()));
        }
        std::fs::remove_dir_all(&dir).map_err(|e| RuntimeError::io("cannot remove", &dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ContainerRecord {
        ContainerRecord {
            purpose: "test".into(),
            labels: BTreeMap::from([("env".into(), "dev".into())]),
            ..ContainerRecord::new(name, "alice", "debian-12")
        }
    }

    #[test]
    fn create_get_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let inv = Inventory::open(tmp.path()).unwrap();
        inv.create(&record("web01")).unwrap();
        inv.create(&record("db01")).unwrap();
        assert!(matches!(
            inv.create(&record("web01")),
            Err(RuntimeError::ContainerExists(_))
        ));
        assert_eq!(inv.get("web01").unwrap().owner, "alice");
        let names: Vec<_> = inv.list().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["db01", "web01"]);
        inv.remove("web01").unwrap();
        assert!(matches!(
            inv.get("web01"),
            Err(RuntimeError::NoSuchContainer(_))
        ));
    }

    #[test]
    fn concurrent_saves_never_fail_or_tear() {
        let tmp = tempfile::tempdir().unwrap();
        let inv = Inventory::open(tmp.path()).unwrap();
        inv.create(&record("web01")).unwrap();
        std::thread::scope(|s| {
            for i in 0..8 {
                let inv = &inv;
                s.spawn(move || {
                    for _ in 0..50 {
                        let mut r = record("web01");
                        r.purpose = format!("writer {i}");
                        inv.save(&r).unwrap();
                    }
                });
            }
        });
        assert!(inv.get("web01").unwrap().purpose.starts_with("writer "));
        let leftovers = std::fs::read_dir(tmp.path().join("web01")).unwrap().count();
        assert_eq!(leftovers, 1, "temporary files left behind");
    }

    #[test]
    fn addresses_are_never_handed_out_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let inv = Inventory::open(tmp.path()).unwrap();
        let net = crate::network::NetworkConfig::parse("gh0", "10.88.0.0/24").unwrap();
        let names: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
        for n in &names {
            inv.create(&record(n)).unwrap();
        }
        std::thread::scope(|s| {
            for n in &names {
                let (inv, net) = (&inv, &net);
                s.spawn(move || inv.assign_address(n, net).unwrap());
            }
        });
        let mut addrs: Vec<_> = inv
            .list()
            .unwrap()
            .iter()
            .map(|r| r.address.unwrap())
            .collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), names.len());
        // Stable: asking again gives the same address.
        let a = inv.get("c3").unwrap().address.unwrap();
        assert_eq!(inv.assign_address("c3", &net).unwrap(), a);
    }

    #[test]
    fn bad_names_never_touch_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let inv = Inventory::open(tmp.path()).unwrap();
        assert!(matches!(
            inv.get("../etc"),
            Err(RuntimeError::InvalidName { .. })
        ));
        assert!(inv.remove("..").is_err());
    }

    #[test]
    fn corrupt_record_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let inv = Inventory::open(tmp.path()).unwrap();
        std::fs::create_dir(tmp.path().join("x1")).unwrap();
        std::fs::write(tmp.path().join("x1/container.json"), b"{not json").unwrap();
        assert!(matches!(inv.get("x1"), Err(RuntimeError::Corrupt { .. })));
        assert!(inv.list().unwrap().is_empty());
    }
}
