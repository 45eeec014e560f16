//! How `kubectl sre` prints: kubectl's ages and tables, objects as JSON or YAML, and a unified
//! diff of two objects' YAML (the `similar` crate).

use std::io::Write;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;

use super::{Format, Result};

/// An age as kubectl prints one (its `HumanDuration`): `45s`, `3m5s`, `150m`, `3h30m`, `20h`,
/// `4d6h`, `30d`, `2y10d`.
pub fn age(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

/// The age of a timestamp at `now`; `<unknown>` without one.
pub(super) fn age_of(time: Option<&Time>, now: Timestamp) -> String {
    match time {
        Some(t) => age(now.duration_since(t.0)),
        None => "<unknown>".into(),
    }
}

/// Columns separated by three spaces, as `kubectl get` prints them.
#[derive(Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[c] - cell.chars().count() + 3;
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Prints a value as pretty JSON or YAML.
pub(super) fn print(out: &mut dyn Write, value: &impl Serialize, format: Format) -> Result<()> {
    let text = match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(value)
                .map_err(|e| super::failed(format!("cannot print JSON: {e}")))?;
            text.push('\n');
            text
        }
        Format::Yaml => serde_yaml::to_string(value)
            .map_err(|e| super::failed(format!("cannot print YAML: {e}")))?,
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// A unified diff (3 lines of context) of two objects as YAML, or an empty string when they are
/// the same.
pub fn yaml_diff(before: &Value, after: &Value, before_label: &str, after_label: &str) -> String {
    let old = serde_yaml::to_string(before).unwrap_or_default();
    let new = serde_yaml::to_string(after).unwrap_or_default();
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(before_label, after_label)
        .to_string()
}

/// What of an object a diff shows: no managedFields, no last-applied annotation, and no status
/// unless the patch writes there.
pub(super) fn for_diff(object: &Value, keep_status: bool) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if let (false, Some(map)) = (keep_status, object.as_object_mut()) {
        map.remove("status");
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let s = |n: i64| age(SignedDuration::from_secs(n));
        assert_eq!(s(5), "5s");
        assert_eq!(s(119), "119s");
        assert_eq!(s(180), "3m");
        assert_eq!(s(185), "3m5s");
        assert_eq!(s(42 * 60), "42m");
        // kubectl counts minutes up to three hours.
        assert_eq!(s(2 * 3600), "120m");
        assert_eq!(s(3 * 3600), "3h");
        assert_eq!(s(3 * 3600 + 30 * 60), "3h30m");
        assert_eq!(s(20 * 3600), "20h");
        assert_eq!(s(4 * 86400), "4d");
        assert_eq!(s(4 * 86400 + 6 * 3600), "4d6h");
        assert_eq!(s(30 * 86400), "30d");
        assert_eq!(s(-1), "0s");
        assert_eq!(s(-5), "<invalid>");
    }

    #[test]
    fn tables_pad_all_but_the_last_column() {
        let mut t = Table::new(&["NAME", "PHASE"]);
        t.row(vec!["a-long-name".into(), "NoFix".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME          PHASE\na-long-name   NoFix\n"
        );
    }
}
