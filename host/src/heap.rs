//! The process heap under glibc, which keeps what was freed in its arenas: a compile, the
//! initial LIST and a burst of failures each parse and drop tens of MB. musl's allocator (the
//! image's static binary) returns freed memory by itself; there these do nothing.

/// Set before any thread starts (the first thing `main` does); `MALLOC_ARENA_MAX` and
/// `MALLOC_MMAP_THRESHOLD_` in the environment still win.
///
/// - One arena per core the process may use (the cgroup's CPU quota counts). glibc's default,
///   8 per core, let each of tokio's and the plugin calls' threads fragment its own arena: the
///   burst benchmark's peak RSS was 98 MiB with it, 87 MiB with two.
/// - Blocks of 128 KiB and more (a page of a LIST, a log, a plugin's bytes) mapped on their
///   own and unmapped when freed. glibc's default raises that threshold to the largest block
///   freed so far (up to 32 MiB), after which such blocks come from the arenas and stay there.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt only tunes the allocator; no other thread exists yet.
        unsafe {
            if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
                libc::mallopt(libc::M_ARENA_MAX, cores.clamp(2, 8) as libc::c_int);
            }
            if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 << 10;

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
