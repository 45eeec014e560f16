//! A throwaway CA and the certificates of one cluster, made with the openssl command.
//!
//! Every certificate carries X.509 v3 extensions: rustls refuses v1 certificates
//! ("UnsupportedCertVersion"), which is what `openssl x509 -req` makes without `-extfile`.
//! Keys are ECDSA P-256: quick to generate, and accepted by rustls, Go's TLS stack and the
//! apiserver's ServiceAccount token signer (ES256).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const OPENSSL_CNF: &str = r#"
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"#;

pub(crate) struct Pki {
    pub ca_crt: PathBuf,
    pub ca_key: PathBuf,
    pub server_crt: PathBuf,
    pub server_key: PathBuf,
    pub admin_crt: PathBuf,
    pub admin_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (is the openssl command installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn signed_cert(dir: &Path, name: &str, subject: &str, extensions: &str) -> Result<()> {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    let mut args = vec!["req", "-new", "-nodes", "-config", "openssl.cnf"];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &args)?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            extensions,
            "-out",
            &crt,
        ],
    )?;
    let _ = std::fs::remove_file(dir.join(csr));
    Ok(())
}

/// Makes the CA, the apiserver's serving certificate (127.0.0.1 and the in-cluster names),
/// an admin client certificate in `system:masters`, and the ServiceAccount signing key pair.
pub(crate) fn make(dir: &Path) -> Result<Pki> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("openssl.cnf"), OPENSSL_CNF)?;
    let mut args = vec!["req", "-x509", "-new", "-nodes", "-config", "openssl.cnf"];
    args.extend(EC);
    args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=sre-e2e-ca",
        "-extensions",
        "ca",
    ]);
    openssl(dir, &args)?;
    signed_cert(dir, "server", "/CN=kube-apiserver", "server")?;
    signed_cert(dir, "admin", "/O=system:masters/CN=sre-e2e-admin", "client")?;
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "sa.key",
        ],
    )?;
    openssl(dir, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(Pki {
        ca_crt: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        server_crt: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        admin_crt: dir.join("admin.crt"),
        admin_key: dir.join("admin.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
    })
}
