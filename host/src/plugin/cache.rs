//! Compiled components on disk, keyed by the component's digest and the engine's compatibility
//! hash (wasmtime version and configuration), so that a restart loads a plugin without compiling.
//!
//! Loading a compiled artifact is `unsafe` in wasmtime: the bytes are trusted to be wasmtime's
//! own output. The cache folder is therefore created private (0700) and written atomically, and
//! an artifact that fails to load is deleted and compiled again.
//!
//! Artifacts are mapped, not read (see [`ArtifactCache::load`]): a file is never changed in
//! place once written, only replaced by a rename or unlinked, and is made read-only.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;

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

    fn path(&self, engine: &Engine, digest: &str) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{digest}-{:016x}.cwasm", hasher.finish()))
    }

    /// The cached artifact for `digest`, if any. `mapped` maps the file rather than reading it:
    /// no copy of tens of MiB per load, and the pooled memories' copy-on-write images come
    /// straight from the file's pages. That is safe because an artifact file is never written in
    /// place: `store` writes a new file and renames it over, and a cleanup unlinks; a mapping
    /// keeps the old inode either way. Only truncating the file where it is (which nothing in
    /// the operator does, in a folder only it can write) could fault the process.
    pub fn load(&self, engine: &Engine, digest: &str, mapped: bool) -> Option<Component> {
        let path = self.path(engine, digest);
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file was written by `store` below from `Component::serialize` into a folder
        // only this user can write, under a name that pins the source digest and the engine, and
        // is replaced only by a rename (see above).
        let loaded = if mapped {
            unsafe { Component::deserialize_file(engine, &path) }
        } else {
            let bytes = std::fs::read(&path).ok()?;
            unsafe { Component::deserialize(engine, &bytes) }
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

    pub fn store(&self, engine: &Engine, digest: &str, component: &Component) {
        let path = self.path(engine, digest);
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|bytes| {
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, bytes)?;
                // Read-only: a mapped artifact cut short in place would fault the process.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o400))?;
                }
                std::fs::rename(&tmp, &path)
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache a compiled plugin");
        }
    }
}
