//! `gatehouse demo`: a one-command local trial. A users file with the caller's SSH key
//! (or a generated one), the native runtime, the default Debian image (built on first
//! use), one container owned by the demo user; prints the `ssh` line and serves.

use std::path::{Path, PathBuf};

use clap::Args;
use gatehouse_runtime::images::{Images, DEFAULT_MIRROR};
use gatehouse_runtime::names::is_user_name;
use gatehouse_runtime::ContainerRecord;

use crate::config::Config;

/// Options of `gatehouse demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2222")]
    listen: String,
    /// State directory.
    #[arg(long, default_value = "gatehouse-demo")]
    state: PathBuf,
}

/// The demo container's name.
const CONTAINER: &str = "demo";

fn demo_user() -> String {
    for var in ["SUDO_USER", "USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var) {
            if is_user_name(&v) && v != "root" {
                return v;
            }
        }
    }
    "demo".into()
}

/// The caller's public key, or a generated pair under `state` (returns the private key path).
fn client_key(state: &Path) -> anyhow::Result<(String, Option<PathBuf>)> {
    if let Some(home) = std::env::var_os("HOME") {
        for name in ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"] {
            let p = Path::new(&home).join(".ssh").join(name);
            if let Ok(text) = std::fs::read_to_string(&p) {
                if russh::keys::PublicKey::from_openssh(text.trim()).is_ok() {
                    return Ok((text.trim().to_string(), None));
                }
            }
        }
    }
    let key_path = state.join("demo_key");
    let key = crate::hostkey::load_or_create_at(&key_path)?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| anyhow::anyhow!("cannot encode key: {e}"))?;
    Ok((public, Some(key_path)))
}

/// Prepares the demo state and serves until interrupted.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state)?;
    let state = std::fs::canonicalize(&args.state)?;
    let user = demo_user();
    let (public_key, key_path) = client_key(&state)?;
    let users_file = state.join("users.toml");
    std::fs::write(
        &users_file,
        format!("# written by gatehouse demo\n[[user]]\nname = \"{user}\"\nuid = 10001\ngroups = [\"demo\"]\nkeys = [\"{public_key}\"]\n"),
    )?;
    let mut config = Config::default();
    config.server.listen = args.listen.clone();
    config.server.state_dir = state.clone();
    config.directory.file = users_file;
    config.runtime.idle_stop = "never".into();
    // Like a VM's: an address, DNS and the outside through the host.
    config.runtime.network = Some(crate::config::NetworkSection::standard());
    let images = Images::open(state.join("images"))?;
    let image = config.runtime.default_image.clone();
    if !images.exists(&image) {
        eprintln!("building the {image} image (first run only; a few minutes)…");
        let store = gatehouse_runtime::image_store::NativeImages::open(&state)?;
        let recipe = gatehouse_runtime::images::Recipe {
            suite: gatehouse_runtime::images::suite_for(&image)
                .unwrap_or("bookworm")
                .to_string(),
            mirror: DEFAULT_MIRROR.to_string(),
            flavor: gatehouse_runtime::images::Flavor::Full,
        };
        super::image::build(&store, &image, &recipe).await?;
    }
    let rt = crate::wiring::open_runtime(&config)?;
    if rt.get(CONTAINER).await.is_err() {
        rt.create(ContainerRecord {
            purpose: "gatehouse demo".into(),
            ..ContainerRecord::new(CONTAINER, &user, &image)
        })
        .await?;
    }
    let addr: std::net::SocketAddr = args.listen.parse().map_err(|_| {
        anyhow::anyhow!(
            "--listen {} is not an address like 127.0.0.1:2222",
            args.listen
        )
    })?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let identity = key_path
        .map(|p| format!(" -i {}", p.display()))
        .unwrap_or_default();
    println!("gatehouse demo is ready. Log into your container with:\n\n    ssh -p {}{identity} -o StrictHostKeyChecking=accept-new {user}@{CONTAINER}@{host}\n\n(state in {}; Ctrl-C stops the gateway, the container keeps running)", addr.port(), state.display());
    tokio::select! {
        r = crate::wiring::serve(config) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nstopping the demo gateway");
            Ok(())
        }
    }
}
