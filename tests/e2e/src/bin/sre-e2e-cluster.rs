//! Starts a cluster for manual use, prints its kubeconfig path and runs until Ctrl-C.
//!
//!     tests/cluster/up.sh [--nodes 3 --node-memory 16Gi ...]
//!     export KUBECONFIG=<the printed path>

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use sre_e2e::{ClusterOptions, NodeSpec, TestCluster};

#[derive(Parser)]
#[command(about = "A Kubernetes control plane on loopback with kwok nodes, until Ctrl-C")]
struct Args {
    /// How many fake nodes (kwok-node-0, kwok-node-1, ...).
    #[arg(long, default_value_t = 2)]
    nodes: u32,
    /// Allocatable CPU of each node.
    #[arg(long, default_value = "4")]
    node_cpu: String,
    /// Allocatable memory of each node.
    #[arg(long, default_value = "8Gi")]
    node_memory: String,
    /// How many Pods fit on each node.
    #[arg(long, default_value_t = 110)]
    node_pods: u32,
    /// --kube-api-qps for the scheduler and the controller-manager (burst: twice that), to
    /// create many Pods quickly.
    #[arg(long)]
    kube_api_qps: Option<u32>,
    /// An extra argument for one component, as COMPONENT=ARG (repeatable), e.g.
    /// kube-apiserver=-v=4 or kwok=--node-lease-duration-seconds=60.
    #[arg(long = "extra-arg", value_name = "COMPONENT=ARG")]
    extra_args: Vec<String>,
    /// Also copy the kubeconfig here once the cluster is ready (for scripts: wait for the file).
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Install the CRDs, the seed's policies and its two broken workloads (a Deployment that
    /// cannot be scheduled, one that crash-loops on a wrong Service name), to try the operator on.
    #[arg(long)]
    demo: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut extra_args = std::collections::BTreeMap::<String, Vec<String>>::new();
    for a in &args.extra_args {
        let (component, arg) = a
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--extra-arg wants COMPONENT=ARG, not {a}"))?;
        extra_args
            .entry(component.into())
            .or_default()
            .push(arg.into());
    }
    let opts = ClusterOptions {
        extra_args,
        nodes: (0..args.nodes)
            .map(|i| {
                NodeSpec::new(format!("kwok-node-{i}"))
                    .cpu(&*args.node_cpu)
                    .memory(&*args.node_memory)
                    .pods(args.node_pods)
            })
            .collect(),
        kube_api_qps: args.kube_api_qps,
        start_timeout: Duration::from_secs(120),
        ..Default::default()
    };
    let cluster = TestCluster::start_local(opts).await?;
    if args.demo {
        let repo = sre_e2e::cluster_assets_dir().join("../..");
        sre_e2e::demo::install(&cluster, &repo).await?;
    }
    if let Some(out) = &args.kubeconfig_out {
        let tmp = out.with_extension("tmp");
        std::fs::copy(cluster.kubeconfig(), &tmp)?;
        std::fs::rename(&tmp, out)?;
    }
    let kubectl = cluster
        .bin_dir()
        .map(|b| b.join("kubectl").display().to_string())
        .unwrap_or_else(|| "kubectl".into());
    println!("kubeconfig: {}", cluster.kubeconfig().display());
    println!("kubectl:    {kubectl}   (v1.36.3, matches the server)");
    println!("logs:       {}", cluster.dir().join("logs").display());
    println!(
        "ready in {:.1} s. Try:",
        cluster.ready_after().as_secs_f64()
    );
    println!("  export KUBECONFIG={}", cluster.kubeconfig().display());
    if args.demo {
        println!(
            "The demo's broken workloads are in; run the operator (in another terminal) and watch:"
        );
        println!("  cargo run -- run --namespace default,production");
        println!("  {kubectl} get dr -A -w");
        println!("  {kubectl} describe dr deployment-critical-app-crashloopbackoff");
        println!(
            "  {kubectl} patch dr deployment-critical-app-crashloopbackoff --type merge -p '{{\"spec\":{{\"decision\":\"Approved\"}}}}'"
        );
    } else {
        println!("  {kubectl} get nodes");
    }
    println!("Ctrl-C stops the cluster and removes its folder.");
    // The library's signal handler stops the cluster and exits on Ctrl-C, SIGTERM or SIGHUP;
    // meanwhile this only waits, and stops early if a component dies.
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pids = cluster.pids();
        for (name, pid) in &pids {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                eprintln!(
                    "{name} (pid {pid}) has exited; its log:\n{}",
                    sre_e2e::log_tail(&cluster.component_log(name), 30)
                );
                drop(cluster);
                std::process::exit(1);
            }
        }
    }
}
