//! Compiled components on disk, keyed by the component's digest and the engine's compatibility
//! hash (wasmtime version and configuration), so that a restart loads a plugin without compiling.
//!
//! Loading a compiled artifact is `unsafe` in wasmtime: the bytes are trusted to be wasmtime's
//! own output. The cache folder is therefore created private (0700) and written atomically, and
//! an artifact that fails to load is deleted and compiled again.

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

    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(engine, digest);
        if !path.is_file() {
            return None;
        }
        // Read into memory rather than mapped: a mapped file that is truncated later (a cleanup,
        // a full disk) would fault the whole process.
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: the file was written by `store` below from `Component::serialize` into a folder
        // only this user can write, under a name that pins the source digest and the engine.
        match unsafe { Component::deserialize(engine, &bytes) } {
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
                std::fs::rename(&tmp, &path)
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not cache a compiled plugin");
        }
    }
}
