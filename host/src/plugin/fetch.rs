//! Plugins referenced by URL: downloaded once, verified against the manifest's sha256 before
//! anything else looks at them, and kept by digest in `downloads/` inside the runtime's cache
//! folder (beside the compiled artifacts), so a restart or a reload reads them from disk.
//!
//! Components built from Python or JavaScript weigh 12-18 MB, far over what a ConfigMap holds
//! (1 MiB), which is why they can be named by URL. A download is bounded in size and time; a
//! failure refuses that plugin with the URL and the reason, and the others load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::manifest::is_loopback;
use super::{Runtime, sha256_hex};

/// Largest component the operator downloads.
pub const MAX_DOWNLOAD_BYTES: u64 = 64 << 20;
/// Time to connect, and for the whole download.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_REDIRECTS: usize = 5;

/// Downloaded components by digest.
pub struct Downloads {
    dir: Option<PathBuf>,
    max_bytes: u64,
}

impl Runtime {
    /// Where this runtime keeps downloaded components: `downloads/` in its cache folder.
    pub(crate) fn downloads(&self) -> Downloads {
        Downloads {
            dir: self.cache.as_ref().map(|c| c.dir().join("downloads")),
            max_bytes: MAX_DOWNLOAD_BYTES,
        }
    }
}

impl Downloads {
    fn cached_path(&self, sha256: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.wasm", sha256.to_ascii_lowercase())))
    }

    /// The component's bytes, from the cache when it holds them, else fetched and verified.
    pub fn fetch(&self, url: &str, sha256: &str) -> Result<Vec<u8>, String> {
        let cached = self.cached_path(sha256);
        if let Some(path) = &cached
            && let Ok(bytes) = std::fs::read(path)
        {
            // Checked on every read: a cache file is never trusted more than the network.
            if sha256_hex(&bytes).eq_ignore_ascii_case(sha256) {
                tracing::debug!(%url, path = %path.display(), "plugin component from the download cache");
                return Ok(bytes);
            }
            tracing::warn!(path = %path.display(), "discarding a corrupt downloaded plugin");
            let _ = std::fs::remove_file(path);
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url} is not a URL: {e}"))?;
        let started = std::time::Instant::now();
        let bytes = match parsed.scheme() {
            "file" => read_file(&parsed, self.max_bytes),
            _ => download(&parsed, self.max_bytes),
        }
        .map_err(|reason| format!("cannot fetch {url}: {reason}"))?;
        let digest = sha256_hex(&bytes);
        if !digest.eq_ignore_ascii_case(sha256) {
            return Err(format!(
                "sha256 mismatch: the manifest says {sha256}, {url} served {digest} ({} bytes); refusing it",
                bytes.len()
            ));
        }
        tracing::info!(%url, bytes = bytes.len(), elapsed = ?started.elapsed(), "plugin component fetched and verified");
        if let Some(path) = &cached
            && let Err(e) = store(path, &bytes)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not cache a downloaded plugin; it will be fetched again");
        }
        Ok(bytes)
    }
}

fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("a cache file has a folder");
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn read_file(url: &reqwest::Url, max_bytes: u64) -> Result<Vec<u8>, String> {
    let path = url
        .to_file_path()
        .map_err(|()| "is not a local file path".to_string())?;
    let meta = std::fs::metadata(&path).map_err(|e| e.to_string())?;
    if meta.len() > max_bytes {
        return Err(too_large(meta.len(), max_bytes));
    }
    std::fs::read(&path).map_err(|e| e.to_string())
}

fn too_large(size: u64, max: u64) -> String {
    format!("it is {size} bytes, over the download limit of {max} bytes")
}

/// An error with its causes: reqwest's own message says "error sending request" and keeps the
/// useful part ("Connection refused") in its sources.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Downloads on a thread of its own with a small runtime: loading is synchronous and may be
/// called from inside the operator's async runtime, where blocking on it would panic.
fn download(url: &reqwest::Url, max_bytes: u64) -> Result<Vec<u8>, String> {
    let url = url.clone();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a download: {e}"))?;
                runtime.block_on(async {
                    tokio::time::timeout(DOWNLOAD_TIMEOUT, get(url, max_bytes))
                        .await
                        .unwrap_or_else(|_| {
                            Err(format!(
                                "the download took longer than {DOWNLOAD_TIMEOUT:?}"
                            ))
                        })
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the download thread panicked".into()))
    })
}

async fn get(url: reqwest::Url, max_bytes: u64) -> Result<Vec<u8>, String> {
    // Redirects may not leave https (or loopback http): the rule the manifest's URL obeys.
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if attempt.url().scheme() == "https"
            || (attempt.url().scheme() == "http" && is_loopback(attempt.url()))
        {
            attempt.follow()
        } else {
            let to = attempt.url().to_string();
            attempt.error(format!("redirected to {to}, which is not https"))
        }
    });
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(DOWNLOAD_TIMEOUT)
        .redirect(redirects)
        .user_agent(concat!("sre-operator/", env!("CARGO_PKG_VERSION")));
    if is_loopback(&url) {
        // A proxy from the environment has no business with loopback addresses.
        builder = builder.no_proxy();
    }
    let client = builder.build().map_err(|e| with_causes(&e))?;
    let mut response = client.get(url).send().await.map_err(|e| with_causes(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the server answered {status}"));
    }
    if let Some(length) = response.content_length()
        && length > max_bytes
    {
        return Err(too_large(length, max_bytes));
    }
    let mut bytes = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = response.chunk().await.map_err(|e| with_causes(&e))? {
        if (bytes.len() + chunk.len()) as u64 > max_bytes {
            return Err(format!(
                "it is over the download limit of {max_bytes} bytes"
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_are_read_bounded_verified_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("plugin.wasm");
        std::fs::write(&source, b"component bytes").unwrap();
        let url = reqwest::Url::from_file_path(&source).unwrap().to_string();
        let digest = sha256_hex(b"component bytes");
        let downloads = Downloads {
            dir: Some(dir.path().join("cache")),
            max_bytes: 1024,
        };
        assert_eq!(downloads.fetch(&url, &digest).unwrap(), b"component bytes");
        // The second fetch is served from the cache: the source is gone.
        std::fs::remove_file(&source).unwrap();
        assert_eq!(downloads.fetch(&url, &digest).unwrap(), b"component bytes");
        // A corrupt cache entry is discarded and fetched again (and here the source is gone).
        std::fs::write(
            dir.path().join("cache").join(format!("{digest}.wasm")),
            b"x",
        )
        .unwrap();
        let err = downloads.fetch(&url, &digest).unwrap_err();
        assert!(err.starts_with(&format!("cannot fetch {url}: ")), "{err}");

        std::fs::write(&source, b"other bytes").unwrap();
        let err = downloads.fetch(&url, &digest).unwrap_err();
        assert_eq!(
            err,
            format!(
                "sha256 mismatch: the manifest says {digest}, {url} served {} (11 bytes); refusing it",
                sha256_hex(b"other bytes")
            )
        );
        std::fs::write(&source, vec![0u8; 2048]).unwrap();
        let err = downloads
            .fetch(&url, &sha256_hex(&[0u8; 2048]))
            .unwrap_err();
        assert!(
            err.ends_with("it is 2048 bytes, over the download limit of 1024 bytes"),
            "{err}"
        );
    }
}
