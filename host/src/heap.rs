//! The process heap under glibc, which keeps what was freed in its arenas: a compile, the
//! initial LIST and a burst of failures each parse and drop tens of MB. musl's allocator (the
//! image's static binary) returns freed memory by itself; there these do nothing.

/// Hands what was freed back to the kernel, so that RSS follows what is held. Called after a
/// compile, once the caches are synced, and every few seconds while the operator runs.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own arenas to the kernel;
    // it touches no live memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
