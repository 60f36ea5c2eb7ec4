//! The examples' memory allocator: mimalloc, told to keep the memory a program frees.
//!
//! With the system allocator every large tensor is a fresh `mmap` that page-faults on first
//! touch; mimalloc reuses memory, but by default it still returns freed pages to the OS after
//! 10 ms, and a training step frees and reallocates its activations every step, so the kernel
//! zeroes the same pages again and again (a quarter of a `tiny` step's samples in
//! docs/performance.md). The examples are applications that run one model until they exit, so
//! they keep what they free. Kiln's libraries choose no allocator.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: the 16th option of `mi_option_e` in the `mimalloc.h` of
/// both sources `libmimalloc-sys` 0.1 builds (v2 and v3); the crate names no constant for it.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never returns freed memory to the OS (purge delay −1, the setting `MIMALLOC_PURGE_DELAY=-1`
/// would make); call it first thing in `main`.
pub fn keep_freed_memory() {
    // SAFETY: sets a process-wide option of the allocator, a plain integer store that mimalloc
    // documents as callable at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}
