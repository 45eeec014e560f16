use std::process::ExitCode;

use clap::Parser;
use sre_operator::cli::{Cli, run};
use sre_operator::terminal::escape;

/// One glibc malloc arena per core the process may use (the cgroup's CPU quota counts), set
/// before any thread starts. glibc's default, 8 per core, let each of tokio's and the plugin
/// calls' threads fragment its own arena: the burst benchmark's peak RSS was 98 MiB with it,
/// 87 MiB with two. `MALLOC_ARENA_MAX` in the environment still wins; musl has no arenas.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt only tunes the allocator; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores.clamp(2, 8) as libc::c_int);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Dropped after `run`: flushes the last spans.
        let _traces = sre_operator::telemetry::traces::install(&cli.log)?;
        run(cli).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line a person can act on: the chain of causes, outermost first.
            let causes: Vec<String> = error.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", escape(&causes.join(": ")));
            ExitCode::FAILURE
        }
    }
}
