//! Where images live, behind one trait both runtimes implement: the native runtime's
//! store in the state directory ([`NativeImages`]), or LXD's image store (on
//! [`crate::lxd::LxdRuntime`]). `gatehouse image build|import|list|delete` uses only this.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::error::{Result, RuntimeError};
use crate::images::{Images, Recipe};
use crate::inventory::Inventory;

/// One image, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    /// Its name (what containers use).
    pub name: String,
    /// When it was made, in UTC.
    pub created: String,
    /// Where it came from (native) or its fingerprint (LXD).
    pub origin: String,
}

/// A line of a long image job's progress.
pub type Progress = Box<dyn FnMut(&str) + Send>;

/// An image store.
#[async_trait]
pub trait ImageStore: Send + Sync {
    /// Where the store is, for messages (`the image store`, `LXD`).
    fn place(&self) -> &'static str;
    /// What [`ImageRow::origin`] holds, as a column title.
    fn origin_title(&self) -> &'static str;
    /// Builds an image `name` with debootstrap as `recipe` says.
    async fn build(&self, name: &str, recipe: &Recipe, progress: Progress) -> Result<()>;
    /// Imports a rootfs archive as image `name`; how many device nodes were left out.
    async fn import(&self, name: &str, file: &Path) -> Result<usize>;
    /// Every image, by name.
    async fn list(&self) -> Result<Vec<ImageRow>>;
    /// Deletes an image no container uses.
    async fn delete(&self, name: &str) -> Result<()>;
    /// Builds the next generation of image `name` as it was built; its number.
    async fn refresh(&self, name: &str, progress: Progress) -> Result<u32> {
        let _ = (name, progress);
        Err(crate::error::RuntimeError::Invalid(format!(
            "image generations are the native runtime's ({} keeps its own images)",
            self.place()
        )))
    }
    /// Imports a rootfs archive as the next generation of image `name`; its number.
    async fn import_generation(&self, name: &str, file: &Path) -> Result<u32> {
        let _ = (name, file);
        Err(crate::error::RuntimeError::Invalid(format!(
            "image generations are the native runtime's ({} keeps its own images)",
            self.place()
        )))
    }
}

/// The native runtime's images (`state_dir/images`), and the inventory that says which
/// containers use one.
pub struct NativeImages {
    images: PathBuf,
    containers: PathBuf,
}

impl NativeImages {
    /// The stores under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self> {
        Images::open(state_dir.join("images"))?;
        Ok(NativeImages {
            images: state_dir.join("images"),
            containers: state_dir.join("containers"),
        })
    }

    fn images(&self) -> Result<Images> {
        Images::open(self.images.clone())
    }
}

/// Refuses to delete image `name` while any of `containers` uses it.
pub fn unused(name: &str, containers: &[crate::inventory::ContainerRecord]) -> Result<()> {
    let users: Vec<&str> = containers
        .iter()
        .filter(|c| c.image == name)
        .map(|c| c.name.as_str())
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    Err(RuntimeError::Invalid(format!(
        "image {name} is used by containers {}; delete them first",
        users.join(", ")
    )))
}

/// Runs blocking image work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RuntimeError::Tool(format!("image job: {e}")))?
}

#[async_trait]
impl ImageStore for NativeImages {
    fn place(&self) -> &'static str {
        "the image store"
    }

    fn origin_title(&self) -> &'static str {
        "SOURCE"
    }

    async fn build(&self, name: &str, recipe: &Recipe, mut progress: Progress) -> Result<()> {
        let images = self.images()?;
        let (name, recipe) = (name.to_string(), recipe.clone());
        blocking(move || images.build(&name, &recipe, &mut *progress)).await
    }

    async fn import(&self, name: &str, file: &Path) -> Result<usize> {
        let images = self.images()?;
        let (name, file) = (name.to_string(), file.to_path_buf());
        blocking(move || images.import(&name, &file)).await
    }

    async fn list(&self) -> Result<Vec<ImageRow>> {
        let images = self.images()?;
        let rows = images.list()?.into_iter().map(|i| {
            let latest = images.latest(&i.name).unwrap_or(1);
            ImageRow {
                created: i.created.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                origin: match latest {
                    1 => i.source,
                    n => format!("{} (generations 1-{n})", i.source),
                },
                name: i.name,
            }
        });
        Ok(rows.collect())
    }

    async fn refresh(&self, name: &str, mut progress: Progress) -> Result<u32> {
        let images = self.images()?;
        let name = name.to_string();
        blocking(move || images.refresh(&name, &mut *progress)).await
    }

    async fn import_generation(&self, name: &str, file: &Path) -> Result<u32> {
        let images = self.images()?;
        let (name, file) = (name.to_string(), file.to_path_buf());
        blocking(move || images.import_generation(&name, &file)).await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        unused(name, &Inventory::open(self.containers.clone())?.list()?)?;
        self.images()?.delete(name)
    }
}

/// A shared store is a store (`LxdRuntime::new` gives an `Arc`).
#[async_trait]
impl<T: ImageStore + ?Sized> ImageStore for std::sync::Arc<T> {
    fn place(&self) -> &'static str {
        (**self).place()
    }

    fn origin_title(&self) -> &'static str {
        (**self).origin_title()
    }

    async fn build(&self, name: &str, recipe: &Recipe, progress: Progress) -> Result<()> {
        (**self).build(name, recipe, progress).await
    }

    async fn import(&self, name: &str, file: &Path) -> Result<usize> {
        (**self).import(name, file).await
    }

    async fn refresh(&self, name: &str, progress: Progress) -> Result<u32> {
        (**self).refresh(name, progress).await
    }

    async fn import_generation(&self, name: &str, file: &Path) -> Result<u32> {
        (**self).import_generation(name, file).await
    }

    async fn list(&self) -> Result<Vec<ImageRow>> {
        (**self).list().await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        (**self).delete(name).await
    }
}
