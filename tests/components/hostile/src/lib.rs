//! A tool component that misbehaves on purpose, one way per tool, so the host's limits can be
//! tested against real WebAssembly: a loop, a memory bomb, a trap, a flood of output, reads
//! outside its scope, an error message of a megabyte. `echo` is the well-behaved trivial call the benchmark measures.

wit_bindgen::generate!({ world: "tool", path: "../../../wit" });

use sre_operator::plugin::cluster;

struct Hostile;

const TOOLS: [&str; 12] = [
    "echo",
    "slow",
    "spin",
    "hog",
    "trap",
    "flood",
    "chatter",
    "read_secret",
    "other_namespace",
    "leak_state",
    "long_error",
    "settings",
];

static mut CALLS: u32 = 0;
/// What `configure` was given, kept for `settings`: the state a configured snapshot carries.
static mut SETTINGS: Option<String> = None;

impl Guest for Hostile {
    fn configure(settings: String) -> Result<(), String> {
        if settings.contains("\"reject\"") {
            return Err("this plugin refuses settings that contain \"reject\"".into());
        }
        if settings.contains("\"spin_in_configure\"") {
            // Never returns: only the deadline ends it.
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        if settings.contains("\"print\"") {
            // Writing to stdout leaves the guest holding the host's stdout stream.
            println!("configured");
        }
        // SAFETY: a component instance runs one call at a time.
        unsafe { SETTINGS = Some(settings) };
        Ok(())
    }

    fn describe() -> Vec<ToolSpec> {
        TOOLS
            .iter()
            .map(|t| ToolSpec {
                name: t.to_string(),
                description: format!("hostile test tool {t}"),
                parameters: "{\"type\":\"object\"}".into(),
            })
            .collect()
    }

    fn invoke(name: String, arguments: String) -> Result<String, ToolError> {
        match name.as_str() {
            "echo" => Ok(arguments),
            "slow" => {
                // Busy for a while, then answers: a call that is still running during a reload.
                let start = std::time::Instant::now();
                while start.elapsed() < std::time::Duration::from_millis(300) {
                    std::hint::black_box(0);
                }
                Ok(format!("slow done {arguments}"))
            }
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => {
                let v: Vec<u32> = Vec::new();
                Ok(v[std::hint::black_box(3)].to_string())
            }
            "flood" => Ok("x".repeat(8 << 20)),
            "chatter" => {
                for _ in 0..100_000 {
                    eprintln!("chatter chatter chatter chatter chatter chatter chatter chatter");
                }
                Ok("done".into())
            }
            "read_secret" => cluster::get_object("Secret", None, "db-credentials")
                .map_err(|e| ToolError::Failed(format!("{e:?}"))),
            "other_namespace" => cluster::list_objects("Pod", Some("kube-system"), None)
                .map_err(|e| ToolError::Failed(format!("{e:?}"))),
            "leak_state" => {
                // A fresh instance per call means this is 1 every time.
                let calls = unsafe {
                    CALLS += 1;
                    CALLS
                };
                Ok(calls.to_string())
            }
            // A megabyte of error message, for the reports and logs it would land in.
            // What `configure` stored, or nothing if it did not run on this instance.
            "settings" => {
                Ok(unsafe { (*std::ptr::addr_of!(SETTINGS)).clone() }.unwrap_or_default())
            }
            "long_error" => Err(ToolError::Failed("é".repeat(512 << 10))),
            other => Err(ToolError::UnknownTool(other.to_string())),
        }
    }
}

export!(Hostile);
