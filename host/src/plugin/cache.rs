//! Compiled components on disk, keyed by the component's digest and the engine's compatibility
//! hash (wasmtime version and configuration), so that a restart loads a plugin without compiling.
//!
//! Loading a compiled artifact is `unsafe` in wasmtime: the bytes are trusted to be wasmtime's
//! own output. The cache folder is therefore created private (0700) and written atomically, and
//! an artifact that fails to load is deleted and compiled again.
//!
//! An artifact is mapped, not read, from a sealed private copy (see [`ArtifactCache::load`]):
//! the cache file itself can be replaced, cut short or overwritten while its plugin runs, and
//! nothing in the process notices.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(ArtifactCache { dir })
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub(super) fn path(&self, engine: &Engine, digest: &str) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{digest}-{:016x}.cwasm", hasher.finish()))
    }

    /// The cached artifact for `digest`, if any. `mapped` maps it rather than copying it into
    /// the process's heap: the pooled memories' copy-on-write images then come straight from
    /// the artifact's pages instead of a second copy per plugin. What is mapped is a memfd
    /// holding a copy of the file, sealed against shrinking and writes, never the cache file:
    /// a mapped file that is truncated faults the process on its next access (SIGBUS), and this
    /// one is in a folder that other processes of the same user (a second operator, `diagnose`,
    /// a person) may write.
    pub fn load(&self, engine: &Engine, digest: &str, mapped: bool) -> Option<Component> {
        let path = self.path(engine, digest);
        let mut file = std::fs::File::open(&path).ok()?;
        // SAFETY (both): the bytes were written by `store` below from `Component::serialize`
        // into a folder only this user can write, under a name that pins the source digest and
        // the engine; what is mapped cannot change under the mapping (sealed).
        let loaded = match mapped.then(|| sealed_copy(&mut file)) {
            Some(Ok(copy)) => unsafe { Component::deserialize_file(engine, copy.path()) },
            other => {
                if let Some(Err(e)) = other {
                    tracing::debug!(error = %e, "no sealed copy of a compiled plugin; reading it");
                }
                let mut bytes = Vec::new();
                std::io::Seek::rewind(&mut file).ok()?;
                std::io::Read::read_to_end(&mut file, &mut bytes).ok()?;
                unsafe { Component::deserialize(engine, &bytes) }
            }
        };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding an unusable compiled plugin");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores `artifact` (wasmtime's serialized compile) and returns it as a later
    /// [`load`](Self::load) would (`mapped`): only the code calls touch then stays resident.
    /// None when it cannot be stored or read back.
    pub fn keep(
        &self,
        engine: &Engine,
        digest: &str,
        artifact: &[u8],
        mapped: bool,
    ) -> Option<Component> {
        self.store(engine, digest, artifact);
        self.load(engine, digest, mapped)
    }

    fn store(&self, engine: &Engine, digest: &str, artifact: &[u8]) {
        let path = self.path(engine, digest);
        // A name no other writer uses (two loads of one plugin may race here), then a rename:
        // a reader sees the old file or the whole new one.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let tmp = path.with_extension(format!(
            "tmp{}-{}",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let result = std::fs::write(&tmp, artifact)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache a compiled plugin");
        }
    }
}

/// A copy of a file that nobody can change: a memfd sealed against shrinking, growing and
/// writes. Mapped through its `/proc/self/fd` path, as wasmtime maps a path.
struct SealedCopy(std::fs::File);

impl SealedCopy {
    fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.0.as_raw_fd()))
    }
}

#[cfg(target_os = "linux")]
fn sealed_copy(file: &mut std::fs::File) -> std::io::Result<SealedCopy> {
    use memfd::{FileSeal, MemfdOptions};
    let memfd = MemfdOptions::default()
        .allow_sealing(true)
        .create("sre-operator-plugin")
        .map_err(std::io::Error::other)?;
    let mut copy = memfd.as_file();
    std::io::copy(file, &mut copy)?;
    memfd
        .add_seals(&[
            FileSeal::SealShrink,
            FileSeal::SealGrow,
            FileSeal::SealWrite,
            FileSeal::SealSeal,
        ])
        .map_err(std::io::Error::other)?;
    let copy = SealedCopy(memfd.into_file());
    // Without /proc the copy cannot be named; the caller reads the file instead.
    std::fs::metadata(copy.path())?;
    Ok(copy)
}

#[cfg(not(target_os = "linux"))]
fn sealed_copy(_: &mut std::fs::File) -> std::io::Result<SealedCopy> {
    Err(std::io::Error::other("memfd is Linux's"))
}
