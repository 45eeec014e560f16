use regex::Regex;
use std::sync::LazyLock;

/// What a caller asks of a container's log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRequest {
    pub namespace: String,
    pub pod: String,
    /// The Pod's only (or first) container when unset, as `kubectl logs` does.
    pub container: Option<String>,
    /// The previous, terminated instance of the container (`kubectl logs --previous`).
    pub previous: bool,
    /// The last N lines only.
    pub tail_lines: Option<usize>,
}

/// A container's log as the cluster (or dump) gave it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Logs {
    pub container: String,
    pub text: String,
    /// Whether this is the previous instance's log.
    pub previous: bool,
    /// What the reader should know about where the text comes from.
    pub note: Option<String>,
}

/// One frame of a dump's `logs.txt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerLog {
    pub container: String,
    /// The log text, or the error kubectl wrote in its place.
    pub content: Result<String, String>,
}

static START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^==== START logs for container (\S+) of pod (\S+)/(\S+) ====\r?\n?")
        .expect("static regex")
});

/// Parses a `logs.txt` that `kubectl cluster-info dump` wrote for one Pod: frames of
/// `==== START logs for container C of pod NS/P ====` ... `==== END logs for container C of pod NS/P ====`.
/// The END marker may follow the last log line with no newline between them.
pub fn parse_dump_logs(
    text: &str,
    namespace: &str,
    pod: &str,
) -> Result<Vec<ContainerLog>, String> {
    let mut logs = Vec::new();
    let mut rest = text;
    while let Some(start) = START.captures(rest) {
        let whole = start.get(0).expect("match");
        if !rest[..whole.start()].trim().is_empty() && logs.is_empty() {
            return Err(format!(
                "text before the first START marker ({:?}); not a kubectl cluster-info dump log file",
                first_line(&rest[..whole.start()])
            ));
        }
        let (container, ns, name) = (&start[1], &start[2], &start[3]);
        if ns != namespace || name != pod {
            return Err(format!(
                "frame for container {container} names pod {ns}/{name}, but the file belongs to {namespace}/{pod}"
            ));
        }
        let end_marker = format!("==== END logs for container {container} of pod {ns}/{name} ====");
        let body_and_more = &rest[whole.end()..];
        let Some(end) = body_and_more.find(&end_marker) else {
            return Err(format!(
                "no END marker for container {container} (the file is truncated?)"
            ));
        };
        let body = &body_and_more[..end];
        let trimmed = body.trim_end_matches(['\n', '\r']);
        let content = if !trimmed.contains('\n')
            && (trimmed.starts_with("Request log error: ")
                || trimmed.starts_with("Create log request error: "))
        {
            Err(trimmed.to_string())
        } else {
            Ok(body.to_string())
        };
        logs.push(ContainerLog {
            container: container.to_string(),
            content,
        });
        rest = &body_and_more[end + end_marker.len()..];
    }
    if logs.is_empty() && !text.trim().is_empty() {
        return Err(format!(
            "no `==== START logs for container C of pod {namespace}/{pod} ====` frame; \
             expected the log format of kubectl cluster-info dump (first line: {:?})",
            first_line(text)
        ));
    }
    Ok(logs)
}

fn first_line(text: &str) -> String {
    let line = text.trim_start().lines().next().unwrap_or("");
    line.chars().take(80).collect()
}

/// The last `n` lines of a text.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    let mut starts = trimmed.rmatch_indices('\n').map(|(i, _)| i + 1);
    match starts.nth(n.saturating_sub(1)) {
        Some(start) if n > 0 => text[start..].to_string(),
        _ if n == 0 => String::new(),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames_including_errors_and_a_missing_final_newline() {
        let text = "==== START logs for container init-db of pod shop/web-1 ====\n\
                    migrated\n\
                    ==== END logs for container init-db of pod shop/web-1 ====\n\
                    ==== START logs for container app of pod shop/web-1 ====\n\
                    line 1\nError: Connection refused to redis:6379==== END logs for container app of pod shop/web-1 ====\n\
                    ==== START logs for container sidecar of pod shop/web-1 ====\n\
                    Request log error: container \"sidecar\" in pod \"web-1\" is waiting to start: ContainerCreating\n\
                    ==== END logs for container sidecar of pod shop/web-1 ====\n";
        let logs = parse_dump_logs(text, "shop", "web-1").unwrap();
        assert_eq!(logs.len(), 3);
        assert_eq!(logs[0].container, "init-db");
        assert_eq!(logs[0].content.as_deref(), Ok("migrated\n"));
        assert_eq!(
            logs[1].content.as_deref(),
            Ok("line 1\nError: Connection refused to redis:6379")
        );
        assert!(
            logs[2]
                .content
                .as_ref()
                .unwrap_err()
                .contains("waiting to start")
        );
    }

    #[test]
    fn rejects_unframed_truncated_and_misattributed_logs() {
        let err = parse_dump_logs("panic: boom\n", "a", "b").unwrap_err();
        assert!(err.contains("no `==== START logs"), "{err}");
        let err = parse_dump_logs(
            "==== START logs for container app of pod a/b ====\nhalf a log",
            "a",
            "b",
        )
        .unwrap_err();
        assert!(err.contains("no END marker for container app"), "{err}");
        let err = parse_dump_logs(
            "==== START logs for container app of pod x/y ====\n==== END logs for container app of pod x/y ====\n",
            "a",
            "b",
        )
        .unwrap_err();
        assert!(err.contains("names pod x/y"), "{err}");
        assert_eq!(parse_dump_logs("", "a", "b").unwrap(), vec![]);
    }

    #[test]
    fn tails_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\n", 5), "a\nb\n");
        assert_eq!(tail("a\nb\n", 0), "");
    }
}
