//! Writes a synthetic cluster dump in kubectl's layout, for benchmarks and load tests:
//!
//! ```sh
//! cargo run --release --example synth-dump -- --pods 10000 --namespaces 50 /tmp/dump-10k
//! sre-operator diagnose --dump /tmp/dump-10k
//! ```

use std::path::PathBuf;

use clap::Parser;
use sre_e2e::synth::{Spec, write};

#[derive(Parser)]
struct Args {
    /// Healthy Pods (the planted failures come on top).
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Failing Pods to plant, one class after the other.
    #[arg(long, default_value_t = 6)]
    failures: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write (created; must not hold another dump).
    dir: PathBuf,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let started = std::time::Instant::now();
    let written = write(
        &args.dir,
        &Spec {
            namespaces: args.namespaces,
            pods: args.pods,
            failures: args.failures,
            seed: args.seed,
        },
    )?;
    eprintln!(
        "wrote {} Pods, {} Deployments, {} nodes, {} events ({:.1} MiB) to {} in {:.2?}",
        written.pods,
        written.deployments,
        written.nodes,
        written.events,
        written.bytes as f64 / (1 << 20) as f64,
        args.dir.display(),
        started.elapsed()
    );
    for p in &written.planted {
        eprintln!(
            "  planted {:<28} {}/{}",
            p.class.to_string(),
            p.namespace,
            p.pod
        );
    }
    Ok(())
}
