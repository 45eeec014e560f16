//! The operator image, built and run without a Docker daemon: the commands of the README's
//! "The image" block, run as written there (only the `run` command's port 8080 becomes a free one),
//! with podman in storage of the test's own. Then the image is checked from its OCI archive
//! (digests, config, every file of every layer, the binary static and the one build.sh made) and
//! by running it: `--version`, and `run` against the loopback cluster until `/readyz`, as uid
//! 65532, with the built-in plugins loaded and cached.
//!
//! Ignored by `cargo test --workspace`: it builds the release binary for musl (minutes, see
//! docs/operating.md, "1. The image") and needs podman, runc and musl-tools. `.ci/run` runs it:
//! `cargo test --workspace --test image -- --ignored` (as `.ci/run` does).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use sre_e2e::{ClusterOptions, TestCluster};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const ARCHIVE: &str = "target/image/sre-operator-{VERSION}.oci.tar";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The commands of the README's "The image" block, a `\`-continued line joined to the next.
fn readme_commands() -> Result<Vec<String>> {
    let readme = std::fs::read_to_string(repo().join("README.md"))?;
    let section = readme
        .split_once("\n### The image\n")
        .context("README.md has no \"### The image\" section")?
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .context("README.md's \"The image\" section has no sh block")?
        .0;
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        match line.trim_end().strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    Ok(commands
        .into_iter()
        .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|c| !c.is_empty())
        .collect())
}

/// podman with storage and settings of its own (a temporary folder): the user's images stay
/// untouched, and what podman needs on a machine like CI's is said here, not in the commands.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Result<Podman> {
        let dir = tempfile::Builder::new().prefix("sre-image-").tempdir()?;
        let root = dir.path();
        // vfs: plain copies, nothing mounted that could outlive a failed test.
        std::fs::write(
            root.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                root.join("graph").display(),
                root.join("run").display()
            ),
        )?;
        // On a VM like CI's (cgroup v1 with a controller on the v2 hierarchy, no
        // CAP_SYS_RESOURCE): crun refuses hybrid cgroups, and podman's default ulimits (nofile
        // 1048576) exceed what its processes may raise theirs to. runc with lower limits runs.
        std::fs::write(
            root.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n\
             [engine]\nruntime = \"runc\"\n",
        )?;
        Ok(Podman { dir })
    }

    /// `line` through bash in the repository, with this podman's settings.
    fn shell(&self, line: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.args(["-c", line])
            .current_dir(repo())
            .env(
                "CONTAINERS_STORAGE_CONF",
                self.dir.path().join("storage.conf"),
            )
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"));
        cmd
    }

    /// Runs `line`; its stdout, or an error with what it printed.
    fn run(&self, line: &str) -> Result<String> {
        let t0 = Instant::now();
        let out = self
            .shell(line)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {line}"))?;
        eprintln!("image: {:.1} s: {line}", t0.elapsed().as_secs_f64());
        ensure!(out.status.success(), "{line}: {}", out.status);
        Ok(String::from_utf8(out.stdout)?)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers and images of this storage only; the folder goes with the TempDir.
        for line in [
            "podman rm --all --force --time 0",
            "podman rmi --all --force",
        ] {
            let _ = self
                .shell(line)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(path).output()?;
    ensure!(out.status.success(), "sha256sum {}", path.display());
    Ok(String::from_utf8(out.stdout)?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// A blob of the OCI layout at `dir`, checked against its digest.
fn blob(dir: &Path, digest: &str) -> Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("digest {digest}"))?;
    let path = dir.join("blobs/sha256").join(hex);
    ensure!(
        sha256(&path)? == hex,
        "blob {digest} does not match its digest"
    );
    Ok(path)
}

fn json(path: &Path) -> Result<Value> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

/// (mode string, uid/gid, path) of every entry of a layer.
fn layer_entries(layer: &Path) -> Result<Vec<(String, String, String)>> {
    let out = Command::new("tar")
        .args(["--list", "--verbose", "--numeric-owner", "--file"])
        .arg(layer)
        .output()?;
    ensure!(out.status.success(), "tar --list {}", layer.display());
    let text = String::from_utf8(out.stdout)?;
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            ensure!(fields.len() >= 6, "tar listing line {line:?}");
            let path = fields[5..].join(" ");
            Ok((
                fields[0].to_string(),
                fields[1].to_string(),
                path.trim_start_matches("./")
                    .trim_end_matches('/')
                    .to_string(),
            ))
        })
        .collect()
}

/// An ELF executable with no program interpreter (PT_INTERP): the kernel runs it without a
/// dynamic loader, which an empty base does not have.
fn is_static_elf(bytes: &[u8]) -> Result<bool> {
    ensure!(
        bytes.len() > 64 && &bytes[..4] == b"\x7fELF" && bytes[4] == 2,
        "not a 64-bit ELF file"
    );
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    Ok((0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) != PT_INTERP
    }))
}

/// A GET to the operator in the container (host networking: it listens on loopback).
async fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let (status, body) = sre_e2e::loopback::request(port, "GET", path, &[], b"").await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `podman run` in the background; SIGTERM (which podman passes on to the container) on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds the musl release binary (minutes) and needs podman, runc, musl-tools; .ci/run runs it"]
async fn the_readme_builds_the_image_and_it_runs_against_the_cluster() -> Result<()> {
    let commands = readme_commands()?;
    let [build, podman_build, save, version, run] = commands.as_slice() else {
        bail!("README's image block should hold five commands: {commands:#?}");
    };
    for (command, starts) in [
        (build, "deploy/image/build.sh"),
        (podman_build, "podman build "),
        (save, "podman save "),
        (version, "podman run "),
        (run, "podman run "),
    ] {
        ensure!(command.starts_with(starts), "README: {command}");
    }
    let archive_path = ARCHIVE.replace("{VERSION}", VERSION);
    ensure!(
        save.contains(&archive_path),
        "README: {save} writes {archive_path}"
    );
    let image = format!("sre-operator:{VERSION}");
    ensure!(
        podman_build.contains(&format!("--tag {image} ")),
        "README: {podman_build}"
    );
    // The Dockerfile's build stage runs the same script, so both routes ship the same binary.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile"))?;
    ensure!(
        dockerfile.contains("deploy/image/build.sh /rootfs")
            && dockerfile.contains("COPY --from=build /rootfs/ /"),
        "the Dockerfile's build stage must run deploy/image/build.sh"
    );
    let which = Command::new("bash")
        .args(["-c", "command -v podman && command -v runc"])
        .output()?;
    ensure!(
        which.status.success(),
        "podman and runc are needed (apt-get install podman runc; .ci/run installs them)"
    );

    let podman = Podman::new()?;
    let archive = repo().join(&archive_path);
    let _ = std::fs::remove_file(&archive);
    podman.run(build)?;
    podman.run(podman_build)?;
    podman.run(save)?;
    let printed = podman.run(version)?;
    ensure!(
        printed.trim() == format!("sre-operator {VERSION}"),
        "--version printed {printed:?}"
    );

    // --- The archive: an OCI layout whose blobs match their digests. -------------------
    let layout = tempfile::tempdir()?;
    let status = Command::new("tar")
        .arg("--extract")
        .arg("--file")
        .arg(&archive)
        .arg("--directory")
        .arg(layout.path())
        .status()?;
    ensure!(status.success(), "tar --extract {}", archive.display());
    let layout = layout.path();
    let oci_layout = json(&layout.join("oci-layout"))?;
    ensure!(oci_layout["imageLayoutVersion"] == "1.0.0", "{oci_layout}");
    let index = json(&layout.join("index.json"))?;
    let manifests = index["manifests"].as_array().context("index.json")?;
    ensure!(manifests.len() == 1, "one image in the archive: {index}");
    ensure!(
        manifests[0]["mediaType"] == "application/vnd.oci.image.manifest.v1+json",
        "{index}"
    );
    let manifest = json(&blob(
        layout,
        manifests[0]["digest"].as_str().unwrap_or_default(),
    )?)?;
    let config_blob = blob(
        layout,
        manifest["config"]["digest"].as_str().unwrap_or_default(),
    )?;
    let image_config = json(&config_blob)?;
    let config = &image_config["config"];
    ensure!(image_config["os"] == "linux" && image_config["architecture"] == "amd64");
    ensure!(config["User"] == "65532:65532", "user: {}", config["User"]);
    ensure!(
        config["Entrypoint"] == serde_json::json!(["/usr/local/bin/sre-operator"])
            && config["Cmd"] == serde_json::json!(["run"]),
        "entrypoint {} cmd {}",
        config["Entrypoint"],
        config["Cmd"]
    );
    let env: Vec<&str> = config["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        env.contains(&"SRE_OPERATOR_CACHE=/var/cache/sre-operator"),
        "env: {env:?}"
    );
    ensure!(
        config["ExposedPorts"].as_object().map(|p| p.len()) == Some(1)
            && config["ExposedPorts"].get("8080/tcp").is_some(),
        "exposed ports: {}",
        config["ExposedPorts"]
    );
    let labels = &config["Labels"];
    ensure!(
        labels["org.opencontainers.image.version"] == VERSION
            && labels["org.opencontainers.image.source"]
                == "https://github.com/sre-operator/sre-operator",
        "labels: {labels}"
    );

    // --- The layers: the binary and the certificates, nothing else; no shell. ----------
    let layers = manifest["layers"].as_array().context("manifest layers")?;
    ensure!(
        layers.len()
            == image_config["rootfs"]["diff_ids"]
                .as_array()
                .map_or(0, Vec::len),
        "layers and diff_ids differ"
    );
    let (mut files, mut layer_bytes) = (Vec::new(), 0u64);
    let mut binary = None;
    for layer in layers {
        let path = blob(layout, layer["digest"].as_str().unwrap_or_default())?;
        // As stored and pulled: podman compresses layers (mediaType ...tar+gzip).
        layer_bytes += std::fs::metadata(&path)?.len();
        for (mode, owner, name) in layer_entries(&path)? {
            let base = name.rsplit('/').next().unwrap_or_default();
            ensure!(
                !["sh", "bash", "dash", "ash", "busybox", "apt", "dpkg", "apk"].contains(&base),
                "{name} in the image"
            );
            if !mode.starts_with('d') {
                files.push((mode.clone(), owner.clone(), name.clone()));
            }
            if name == "usr/local/bin/sre-operator" {
                binary = Some(path.clone());
            }
        }
    }
    files.sort_by(|a, b| a.2.cmp(&b.2));
    ensure!(
        files
            == vec![
                (
                    "-rw-r--r--".into(),
                    "0/0".into(),
                    "etc/ssl/certs/ca-certificates.crt".into()
                ),
                (
                    "-rwxr-xr-x".into(),
                    "0/0".into(),
                    "usr/local/bin/sre-operator".into()
                ),
            ],
        "files in the image: {files:?}"
    );
    let unpacked = tempfile::tempdir()?;
    let status = Command::new("tar")
        .arg("--extract")
        .arg("--file")
        .arg(binary.context("no layer holds the binary")?)
        .arg("--directory")
        .arg(unpacked.path())
        .status()?;
    ensure!(status.success(), "unpacking the layer");
    let bytes = std::fs::read(unpacked.path().join("usr/local/bin/sre-operator"))?;
    ensure!(
        is_static_elf(&bytes)?,
        "the binary asks for a dynamic loader"
    );
    let built = std::fs::read(repo().join("target/image/rootfs/usr/local/bin/sre-operator"))?;
    ensure!(
        bytes == built,
        "the image's binary is not the one build.sh made"
    );
    let certs = std::fs::read_to_string(unpacked.path().join("etc/ssl/certs/ca-certificates.crt"))?;
    ensure!(
        certs.matches("BEGIN CERTIFICATE").count() > 50,
        "root certificates"
    );
    eprintln!(
        "image: binary {:.1} MB; layers {:.1} MB as pulled ({}); archive {:.1} MB",
        bytes.len() as f64 / 1e6,
        layer_bytes as f64 / 1e6,
        layers
            .iter()
            .filter_map(|l| l["mediaType"].as_str())
            .collect::<Vec<_>>()
            .join(", "),
        std::fs::metadata(&archive)?.len() as f64 / 1e6,
    );

    // --- `run` against the loopback cluster, as the README says. -----------------------
    let cluster = TestCluster::start(ClusterOptions::default()).await?;
    sre_e2e::demo::install_crds(&cluster, &repo().join("crds"))?;
    // A copy the container's user may read (the cluster's own is private to root).
    let kubeconfig = podman.dir.path().join("kubeconfig");
    std::fs::copy(cluster.kubeconfig(), &kubeconfig)?;
    std::fs::set_permissions(
        &kubeconfig,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    ensure!(run.ends_with("--http-addr 127.0.0.1:8080"), "README: {run}");
    let run = run.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let log_path = podman.dir.path().join("operator.log");
    let log = std::fs::File::create(&log_path)?;
    let running = Running(
        podman
            .shell(&format!("exec {run}"))
            .env("KUBECONFIG", &kubeconfig)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let t0 = Instant::now();
    while http_get(port, "/readyz").await.map(|(s, _)| s).unwrap_or(0) != 200 {
        ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "not ready within 120 s:\n{}",
            read_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "image: ready {:.1} s after podman run",
        t0.elapsed().as_secs_f64()
    );
    let (status, plugins) = http_get(port, "/plugins").await?;
    ensure!(
        status == 200 && plugins.contains("k8s-reader") && plugins.contains("patch-safety"),
        "/plugins: {status} {plugins}"
    );
    // The process in the container runs as 65532, as the image says.
    let id = podman.run("podman ps --quiet --no-trunc")?;
    let pid = podman.run(&format!(
        "podman inspect --format '{{{{.State.Pid}}}}' {}",
        id.trim()
    ))?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .context("Uid in /proc/PID/status")?;
    ensure!(
        uid.split_whitespace().all(|u| u == "65532"),
        "the operator runs as uid {uid}"
    );
    drop(running);
    let log = read_log();
    ensure!(
        !log.contains("plugin cache unavailable"),
        "the plugin cache on its tmpfs should work:\n{log}"
    );
    ensure!(
        podman.run("podman ps --all --quiet")?.trim().is_empty(),
        "--rm left a container after SIGTERM"
    );
    Ok(())
}
