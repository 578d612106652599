//! `gatehouse patch` on the gateway host: run from here (not through the admin socket,
//! it takes a while), recorded and audited as the host account that runs it.

use crate::commands::hosted::Viewer;
use crate::commands::patch::{self, Context, PatchArgs};
use crate::commands::Console;
use crate::config::Config;

/// Runs `patch` on this host.
pub async fn run(config: &Config, args: PatchArgs) -> anyhow::Result<()> {
    let runtime = crate::wiring::open_runtime(config)?;
    let state = &config.server.state_dir;
    let audit = crate::audit::Audit::open(state)?;
    let recordings = gatehouse_recordings::store::Recordings::open(state.join("recordings"))?;
    let mut console = Console::local();
    let cx = Context {
        config,
        rt: runtime.as_ref(),
        audit: &audit,
        recordings: &recordings,
        viewer: Viewer {
            user: console.by.clone(),
            peer: "local".into(),
            rights: "root on the gateway host".into(),
        },
    };
    let result = patch::run(&cx, args, &mut console).await;
    console.print();
    result
}
