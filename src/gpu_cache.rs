//! Where burn's GPU backends keep, between runs, what they learn about this machine.
//!
//! Under burn's wgpu and CUDA backends, cubecl compiles every kernel the first time it is
//! launched and autotunes the heavy ones: for each matmul, convolution and reduction shape it
//! compiles and times several candidate kernels and keeps the fastest. Two things can outlive
//! the process (cubecl 0.10, `cubecl-runtime/src/config/{autotune,compilation,cache}.rs`):
//! - the autotune choices, kept by default under the `target/` folder of the Cargo project the
//!   program is started in, and in the user's cache folder only outside of one;
//! - the compiled kernels: PTX on CUDA (`cubecl-cuda/src/compute/context.rs`), SPIR-V on wgpu's
//!   Vulkan compiler; kept only when cubecl's `[compilation] cache` is configured, which it is
//!   not by default. burn's default wgpu build compiles WGSL, which has no cache.
//!
//! Before the first GPU client starts, [`use_kiln_gpu_caches`] points both at one per-user
//! folder, `$KILN_CACHE_DIR` or the platform's cache folder + `kiln/cubecl`
//! (`~/.cache/kiln/cubecl` on Linux), so that a second run on the same machine (and any run
//! from another working folder) starts warm. A `cubecl.toml` or `burn.toml` in the working
//! folder or above is the user's own configuration and is then left as it is; cubecl's
//! environment variables (`CUBECL_AUTOTUNE_LEVEL`, `CUBECL_DEBUG_LOG`) apply either way.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cubecl_runtime::config::cache::CacheConfig;
use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};

/// The files in which cubecl looks for its configuration, in the working folder and above.
const CUBECL_CONFIG_FILES: [&str; 4] = ["cubecl.toml", "CubeCL.toml", "burn.toml", "Burn.toml"];

/// What [`use_kiln_gpu_caches`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuCaches {
    /// The autotune choices and the compiled kernels are kept in this folder.
    Kiln(PathBuf),
    /// cubecl's configuration comes from this file of the user's, unchanged.
    UserFile(PathBuf),
    /// cubecl's configuration had been read already (a GPU client ran before): unchanged.
    AlreadySet,
    /// Neither `$KILN_CACHE_DIR` nor a cache folder of the platform is known: cubecl's
    /// defaults apply.
    NoCacheFolder,
}

/// Points cubecl's autotune and kernel caches at Kiln's per-user folder (see the module
/// documentation), once per process; later calls return the first call's answer. Call it
/// before the first GPU tensor is made: [`crate::device::run_on`] does.
pub fn use_kiln_gpu_caches() -> &'static GpuCaches {
    static DONE: OnceLock<GpuCaches> = OnceLock::new();
    DONE.get_or_init(configure)
}

fn configure() -> GpuCaches {
    let user_file = std::env::current_dir()
        .ok()
        .and_then(|dir| cubecl_config_file(&dir));
    if let Some(file) = user_file {
        return GpuCaches::UserFile(file);
    }
    let Some(folder) = kiln_cache_folder() else {
        return GpuCaches::NoCacheFolder;
    };
    let mut storage = CubeClRuntimeConfig::storage().lock();
    if storage.is_some() {
        return GpuCaches::AlreadySet;
    }
    let mut config = CubeClRuntimeConfig::default().override_from_env();
    config.autotune.cache = CacheConfig::File(folder.clone());
    config.compilation.cache = Some(CacheConfig::File(folder.clone()));
    *storage = Some(config.into());
    GpuCaches::Kiln(folder)
}

/// The first of cubecl's configuration files in `dir` or a folder above it.
fn cubecl_config_file(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .flat_map(|dir| CUBECL_CONFIG_FILES.map(|name| dir.join(name)))
        .find(|file| file.is_file())
}

/// `$KILN_CACHE_DIR`, else the platform's cache folder + `kiln/cubecl`.
fn kiln_cache_folder() -> Option<PathBuf> {
    match std::env::var_os("KILN_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::cache_dir().map(|dir| dir.join("kiln").join("cubecl")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_is_found_in_the_folder_or_above() {
        let root = std::env::temp_dir().join(format!("kiln-gpu-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let inner = root.join("a").join("b");
        std::fs::create_dir_all(&inner).unwrap();
        assert_eq!(cubecl_config_file(&inner), None);
        std::fs::write(root.join("a").join("burn.toml"), "").unwrap();
        assert_eq!(
            cubecl_config_file(&inner),
            Some(root.join("a").join("burn.toml"))
        );
        std::fs::write(inner.join("cubecl.toml"), "").unwrap();
        assert_eq!(cubecl_config_file(&inner), Some(inner.join("cubecl.toml")));
    }
}
