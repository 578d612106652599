//! Images in LXD's own image store: built with debootstrap (plus an init, since LXD boots
//! the image's `/sbin/init`) and published as a unified tarball (`metadata.yaml` and
//! `rootfs/`), or imported from such a tarball. No image server is needed.

use std::path::Path;

use hyper::Method;
use serde_json::json;

use super::LxdRuntime;
use crate::api::Runtime as _;
use crate::error::{LxdRefusal, Result, RuntimeError};
use crate::images::{debootstrap, Recipe};
use crate::names::validate_image_name;

/// What an LXD image adds to the native runtime's package list: an init for LXD to boot.
pub const LXD_PACKAGES: &str = "systemd-sysv";

/// An image as LXD lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LxdImage {
    /// Its alias (the name containers use).
    pub name: String,
    /// LXD's fingerprint.
    pub fingerprint: String,
    /// When it was uploaded.
    pub created: String,
}

/// `metadata.yaml` of a unified image tarball: LXD writes each instance's own
/// `/etc/hostname` and `/etc/hosts` from the [`TEMPLATES`] when it creates, copies or
/// starts it (so a restored copy under a new name takes its new name).
fn metadata(suite: &str, name: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut text = format!(
        "architecture: {}\ncreation_date: {now}\nproperties:\n  os: debian\n  release: {suite}\n  description: gatehouse image {name}\ntemplates:\n",
        std::env::consts::ARCH
    );
    for (path, template, _) in TEMPLATES {
        text.push_str(&format!(
            "  {path}:\n    when: [create, copy, start]\n    template: {template}\n"
        ));
    }
    text
}

/// Files LXD renders per instance: (path, template name, template text).
const TEMPLATES: &[(&str, &str, &str)] = &[
    ("/etc/hostname", "hostname.tpl", "{{ container.name }}\n"),
    (
        "/etc/hosts",
        "hosts.tpl",
        "127.0.0.1 localhost\n127.0.1.1 {{ container.name }}\n::1 localhost ip6-localhost ip6-loopback\n",
    ),
];

/// Whether `file` is a unified LXD image tarball (a `metadata.yaml` at its top).
fn is_unified(file: &Path) -> Result<bool> {
    let f = std::fs::File::open(file).map_err(|e| RuntimeError::io("cannot open", file, e))?;
    let mut archive = tar::Archive::new(f);
    let not_tar = |e: std::io::Error| {
        RuntimeError::Invalid(format!("{} is not a tar archive ({e})", file.display()))
    };
    let entries = archive.entries().map_err(not_tar)?;
    for e in entries.take(64) {
        let e = e.map_err(not_tar)?;
        let path = e
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.trim_start_matches("./") == "metadata.yaml" {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Every alias of every image in LXD's `/1.0/images?recursion=1` answer.
pub(crate) fn images_by_alias(images: &serde_json::Value) -> Vec<LxdImage> {
    let mut out = Vec::new();
    for i in images.as_array().into_iter().flatten() {
        let created = i["uploaded_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                t.with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string()
            })
            .unwrap_or_default();
        for a in i["aliases"].as_array().into_iter().flatten() {
            out.push(LxdImage {
                name: a["name"].as_str().unwrap_or_default().to_string(),
                fingerprint: i["fingerprint"].as_str().unwrap_or_default().to_string(),
                created: created.clone(),
            });
        }
    }
    out
}

/// Packs `dir/rootfs` with `metadata` and the [`TEMPLATES`] into `dir/image.tar`, an
/// LXD unified image tarball.
fn pack_unified(dir: &Path, metadata: &str) -> Result<std::path::PathBuf> {
    let rootfs = dir.join("rootfs");
    let tarball = dir.join("image.tar");
    let f = std::fs::File::create(&tarball)
        .map_err(|e| RuntimeError::io("cannot create", &tarball, e))?;
    let mut b = tar::Builder::new(f);
    b.follow_symlinks(false);
    let fail = |e: std::io::Error| RuntimeError::io("cannot write", &tarball, e);
    let mut small = |path: &str, text: &str| {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
        header.set_cksum();
        b.append_data(&mut header, path, text.as_bytes())
    };
    small("metadata.yaml", metadata).map_err(fail)?;
    for (_, template, text) in TEMPLATES {
        small(&format!("templates/{template}"), text).map_err(fail)?;
    }
    b.append_dir_all("rootfs", &rootfs).map_err(fail)?;
    b.finish().map_err(fail)?;
    Ok(tarball)
}

/// A rootfs archive that is not a plain LXD image tarball (a bare rootfs, compressed or
/// not, or a compressed LXC/Incus image) as an LXD image: unpacked, checked for an init
/// system (LXD boots one), and packed with our metadata and templates. The tarball lives
/// in the returned directory.
async fn repack(name: &str, file: &Path) -> Result<(tempfile::TempDir, std::path::PathBuf)> {
    let work = tempfile::Builder::new()
        .prefix("gatehouse-lxd-import-")
        .tempdir()
        .map_err(|e| RuntimeError::Tool(format!("cannot create a work directory: {e}")))?;
    let (dir, file, name) = (
        work.path().to_path_buf(),
        file.to_path_buf(),
        name.to_string(),
    );
    let tarball = tokio::task::spawn_blocking(move || -> Result<std::path::PathBuf> {
        let rootfs = dir.join("rootfs");
        let dropped = crate::images::unpack_rootfs(&file, &rootfs)?;
        if let Some(note) = crate::devices::dropped_note(dropped) {
            tracing::info!("{}: {note}", file.display());
        }
        if std::fs::symlink_metadata(rootfs.join("sbin/init")).is_err() {
            return Err(RuntimeError::Invalid(format!(
                "{} has no /sbin/init: LXD boots the image's init system (install \
                 systemd-sysv in it, or use the native runtime)",
                file.display()
            )));
        }
        pack_unified(&dir, &metadata("imported", &name))
    })
    .await
    .map_err(|e| RuntimeError::Tool(format!("image import: {e}")))??;
    Ok((work, tarball))
}

impl LxdRuntime {
    /// The images in LXD's store that have an alias (one entry per alias).
    pub async fn images(&self) -> Result<Vec<LxdImage>> {
        let images = self.client().get("/1.0/images?recursion=1").await?;
        let mut out = images_by_alias(&images);
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn alias_exists(&self, name: &str) -> Result<bool> {
        match self
            .client()
            .get(&format!("/1.0/images/aliases/{name}"))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.lxd_refusal() == Some(LxdRefusal::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Uploads a unified image tarball and names it `name`.
    pub async fn publish(&self, name: &str, tarball: &Path) -> Result<()> {
        validate_image_name(name)?;
        if self.alias_exists(name).await? {
            return Err(RuntimeError::ImageExists(name.to_string()));
        }
        // A plain LXD image goes as it is; anything else is repacked as one first.
        let repacked = match is_unified(tarball) {
            Ok(true) => None,
            _ => Some(repack(name, tarball).await?),
        };
        let upload = repacked.as_ref().map_or(tarball, |(_, t)| t.as_path());
        let done = self
            .client()
            .upload_file(
                "/1.0/images",
                // Incus renamed LXD's headers; each daemon ignores the other's.
                &[("X-LXD-public", "false"), ("X-Incus-public", "false")],
                upload,
            )
            .await?;
        drop(repacked);
        let fingerprint = done["fingerprint"]
            .as_str()
            .ok_or_else(|| RuntimeError::Engine("the image upload gave no fingerprint".into()))?
            .to_string();
        self.client()
            .call(
                Method::POST,
                "/1.0/images/aliases",
                Some(&json!({"name": name, "target": fingerprint})),
            )
            .await?;
        Ok(())
    }

    /// Builds a Debian image with debootstrap and publishes it as `name`.
    pub async fn build_image(
        &self,
        name: &str,
        recipe: &Recipe,
        progress: Box<dyn FnMut(&str) + Send>,
    ) -> Result<()> {
        let (suite, mirror) = (recipe.suite.as_str(), recipe.mirror.as_str());
        validate_image_name(name)?;
        if self.alias_exists(name).await? {
            return Err(RuntimeError::ImageExists(name.to_string()));
        }
        let work = tempfile::Builder::new()
            .prefix("gatehouse-lxd-image-")
            .tempdir()
            .map_err(|e| RuntimeError::Tool(format!("cannot create a build directory: {e}")))?;
        let (suite_s, mirror_s, name_s) = (suite.to_string(), mirror.to_string(), name.to_string());
        let flavor = recipe.flavor;
        let dir = work.path().to_path_buf();
        let tarball = tokio::task::spawn_blocking(move || -> Result<std::path::PathBuf> {
            let mut progress = progress;
            let rootfs = dir.join("rootfs");
            // LXD boots the image's init: even the minimal flavor has systemd.
            let packages = format!("{},{LXD_PACKAGES}", flavor.packages());
            debootstrap(&rootfs, &suite_s, &mirror_s, &packages, &mut *progress)?;
            pack_unified(&dir, &metadata(&suite_s, &name_s))
        })
        .await
        .map_err(|e| RuntimeError::Tool(format!("image build: {e}")))?;
        let result = match tarball {
            Ok(t) => self.publish(name, &t).await,
            Err(e) => Err(e),
        };
        drop(work);
        result
    }

    /// Deletes image `name` unless a container uses it.
    pub async fn delete_image(&self, name: &str) -> Result<()> {
        crate::image_store::unused(name, &self.list().await?)?;
        let alias = self
            .client()
            .get(&format!("/1.0/images/aliases/{name}"))
            .await
            .map_err(|_| RuntimeError::NoSuchImage(name.to_string()))?;
        let fingerprint = alias["target"].as_str().unwrap_or_default();
        self.client()
            .call(Method::DELETE, &format!("/1.0/images/{fingerprint}"), None)
            .await
            .map(|_| ())
    }
}

/// LXD's image store, as `gatehouse image` sees it.
#[async_trait::async_trait]
impl crate::image_store::ImageStore for LxdRuntime {
    fn place(&self) -> &'static str {
        "LXD"
    }

    fn origin_title(&self) -> &'static str {
        "FINGERPRINT"
    }

    async fn build(
        &self,
        name: &str,
        recipe: &Recipe,
        progress: crate::image_store::Progress,
    ) -> Result<()> {
        self.build_image(name, recipe, progress).await
    }

    async fn import(&self, name: &str, file: &Path) -> Result<usize> {
        self.publish(name, file).await.map(|()| 0)
    }

    async fn list(&self) -> Result<Vec<crate::image_store::ImageRow>> {
        let rows = self
            .images()
            .await?
            .into_iter()
            .map(|i| crate::image_store::ImageRow {
                name: i.name,
                created: i.created,
                origin: i.fingerprint,
            });
        Ok(rows.collect())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.delete_image(name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_is_listed_with_its_image() {
        let answer = serde_json::json!([
            {"fingerprint": "abc", "uploaded_at": "2026-11-27T03:02:01.342752436Z",
             "aliases": [{"name": "debian-12"}, {"name": "stable"}]},
            {"fingerprint": "def", "uploaded_at": "nonsense", "aliases": []}
        ]);
        let list = images_by_alias(&answer);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "debian-12");
        assert_eq!(list[1].name, "stable");
        assert_eq!(list[1].fingerprint, "abc");
        assert_eq!(list[0].created, "2026-11-27 03:02:01 UTC");
    }

    #[test]
    fn metadata_names_the_architecture_and_release() {
        let m = metadata("bookworm", "debian-12");
        assert!(m.contains(&format!("architecture: {}", std::env::consts::ARCH)));
        assert!(m.contains("release: bookworm"));
        assert!(m.contains("creation_date: "));
    }

    #[test]
    fn only_unified_tarballs_count_as_lxd_images() {
        let dir = std::env::temp_dir().join(format!("gh-unified-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let make = |name: &str, with_meta: bool| {
            let path = dir.join(name);
            let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
            let mut add = |p: &str| {
                let mut h = tar::Header::new_gnu();
                h.set_size(1);
                h.set_cksum();
                b.append_data(&mut h, p, &b"x"[..]).unwrap();
            };
            if with_meta {
                add("metadata.yaml");
            }
            add("rootfs/etc/hostname");
            b.finish().unwrap();
            path
        };
        assert!(is_unified(&make("u.tar", true)).unwrap());
        assert!(!is_unified(&make("p.tar", false)).unwrap());
        std::fs::write(dir.join("junk"), b"not a tarball at all").unwrap();
        assert!(is_unified(&dir.join("junk")).is_err() || !is_unified(&dir.join("junk")).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_packed_image_unpacks_with_the_strict_importer() {
        if crate::test_needs_root("a_packed_image_unpacks_with_the_strict_importer") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rootfs/etc")).unwrap();
        std::fs::write(dir.path().join("rootfs/etc/hostname"), "x\n").unwrap();
        let tarball = pack_unified(dir.path(), &metadata("imported", "t")).unwrap();
        assert!(is_unified(&tarball).unwrap());
        let mut archive = tar::Archive::new(std::fs::File::open(&tarball).unwrap());
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().uid().unwrap(), 0, "{:?}", e.path().unwrap());
        }
        let out = tempfile::tempdir().unwrap();
        crate::images::unpack_rootfs(&tarball, &out.path().join("rootfs")).unwrap();
        assert!(out.path().join("rootfs/etc/hostname").exists());
    }
}
