//! Helpers shared by the test targets that train: scratch folders and turns at burn's backend
//! RNG.

use std::fs;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

/// A fresh empty folder `{target}-{name}` under the target directory's temp space.
pub fn scratch(target: &str, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{target}-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// burn's backend RNG (initial weights, dropout) is global to the process, so runs and
/// initialisations that must reproduce each other cannot overlap with anything that draws from
/// it (a run, a seeded `init`, or burn's `load_file`): the tests take turns. Loading a model
/// from safetensors (`load_for_sampling`) draws nothing, so it needs no turn.
static BACKEND_RNG: Mutex<()> = Mutex::new(());

/// Waits for this test's turn at the backend RNG.
pub fn my_turn() -> MutexGuard<'static, ()> {
    BACKEND_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
