//! One pass over a list file of a dump as kubectl wrote it: where each item is, and the fields
//! the reader needs before indexing it (kind, name, namespace, a Pod's node, where its spec and
//! status are). A dump of 10,000 Pods is 200 MB of indented JSON; the reader keeps only this
//! index and compacts an item ([`compact`]: no whitespace, `metadata.managedFields` or the
//! last-applied annotation, as the live reader drops them) when it is asked for.
//!
//! The walk checks the JSON as strictly as serde_json does (RFC 8259: string escapes, no control
//! characters in strings, number grammar, commas and colons where they belong, nothing after
//! the document, at most 128 levels deep). On anything it does not accept, or a list shaped
//! unlike kubectl's, it answers None, and the reader asks serde, which names the fault.

use std::borrow::Cow;
use std::ops::Range;

const LAST_APPLIED: &[u8] = b"kubectl.kubernetes.io/last-applied-configuration";
/// serde_json's own limit: deeper input is refused, not walked (the walk recurses).
const MAX_DEPTH: usize = 128;

/// What the reader needs of an object, and the object itself, compact.
#[derive(Debug, Default)]
pub(super) struct Compact<'a> {
    pub text: String,
    pub kind: Option<Cow<'a, str>>,
    pub has_api_version: bool,
    pub has_metadata: bool,
    pub name: Option<Cow<'a, str>>,
    pub namespace: Option<Cow<'a, str>>,
    pub node_name: Option<Cow<'a, str>>,
    /// A Pod's `spec.restartPolicy`: the gate tells a Job's failed Pod by it.
    pub restart_policy: Option<Cow<'a, str>>,
    /// Where the top-level `spec` and `status` values are, from the object's first byte.
    pub spec: Option<Range<usize>>,
    pub status: Option<Range<usize>>,
    /// A top-level `spec` or `status` stands twice (serde refuses the object as a Pod).
    pub repeated: bool,
}

/// A list file: its `kind`, and where each item is in the file with what was found in it (its
/// `text` left empty: the list is walked, not copied).
pub(super) struct List<'a> {
    pub kind: Option<Cow<'a, str>>,
    pub items: Vec<(Range<usize>, Compact<'a>)>,
}

/// Where the walk is: the few places whose members matter.
#[derive(Clone, Copy, PartialEq)]
enum At {
    Root,
    Metadata,
    Annotations,
    Spec,
    Elsewhere,
}

/// Not valid JSON, or not a list as kubectl writes one: serde is asked instead.
struct Refused;

type Walked<T = ()> = Result<T, Refused>;

struct Walk<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
    found: Compact<'a>,
}

/// Walks a list file (`{"kind": ..., "items": [{...}, ...]}`, any other members checked and
/// skipped) in one pass; None when it is not valid JSON or not shaped so.
pub(super) fn list(text: &str) -> Option<List<'_>> {
    let mut walk = Walk::new(text);
    walk.list().ok()
}

/// Compacts one object (`raw` starts with `{`); None when the walk does not accept it.
pub(super) fn compact(raw: &str) -> Option<Compact<'_>> {
    let mut walk = Walk::new(raw);
    walk.found.text.reserve(raw.len() / 2);
    walk.value_to(At::Root, true).ok()?;
    walk.skip_ws();
    (walk.pos == raw.len()).then_some(walk.found)
}

impl<'a> Walk<'a> {
    fn new(src: &'a str) -> Self {
        Walk {
            src,
            pos: 0,
            depth: 0,
            found: Compact::default(),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        let bytes = self.bytes();
        // Indented JSON is mostly runs of spaces: eight at a time.
        while let Some(chunk) = bytes.get(self.pos..self.pos + 8) {
            if chunk != b"        " {
                break;
            }
            self.pos += 8;
        }
        while matches!(bytes.get(self.pos), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Walked {
        self.skip_ws();
        if self.peek() != Some(byte) {
            return Err(Refused);
        }
        self.pos += 1;
        Ok(())
    }

    /// The list's top level: `kind` read, `items` walked item by item, the rest checked.
    fn list(&mut self) -> Walked<List<'a>> {
        let mut list = List {
            kind: None,
            items: Vec::new(),
        };
        let (mut seen_kind, mut seen_items) = (false, false);
        self.expect(b'{')?;
        self.depth = 1;
        let mut first = true;
        while self.next_member(b'}', &mut first)? {
            let key = self.key()?;
            match key.as_bytes() {
                b"\"kind\"" if !seen_kind => {
                    seen_kind = true;
                    self.skip_ws();
                    if self.peek() == Some(b'"') {
                        list.kind = Some(Self::unquote(self.string()?));
                    } else if self.literal()? != "null" {
                        return Err(Refused);
                    }
                }
                b"\"items\"" if !seen_items => {
                    seen_items = true;
                    self.skip_ws();
                    match self.peek() {
                        Some(b'[') => self.items(&mut list.items)?,
                        Some(b'n') if self.literal()? == "null" => {}
                        _ => return Err(Refused),
                    }
                }
                // A second `kind` or `items`: serde says which.
                b"\"kind\"" | b"\"items\"" => return Err(Refused),
                _ => self.value_to(At::Elsewhere, false)?,
            }
        }
        self.skip_ws();
        if self.pos != self.src.len() {
            return Err(Refused);
        }
        Ok(list)
    }

    fn items(&mut self, items: &mut Vec<(Range<usize>, Compact<'a>)>) -> Walked {
        self.pos += 1; // '['
        self.depth += 1;
        let mut first = true;
        while self.next_member(b']', &mut first)? {
            self.skip_ws();
            if self.peek() != Some(b'{') {
                return Err(Refused);
            }
            let start = self.pos;
            self.found = Compact::default();
            self.value_to(At::Root, false)?;
            let mut found = std::mem::take(&mut self.found);
            let from_item = |r: Range<usize>| r.start - start..r.end - start;
            found.spec = found.spec.map(from_item);
            found.status = found.status.map(from_item);
            items.push((start..self.pos, found));
        }
        self.depth -= 1;
        Ok(())
    }

    /// The string starting at `pos` (its quotes included), checked; `pos` moves past it.
    fn string(&mut self) -> Walked<&'a str> {
        let start = self.pos;
        let bytes = self.bytes();
        let mut i = start + 1;
        loop {
            let rest = bytes.get(i..).ok_or(Refused)?;
            let at = memchr::memchr2(b'"', b'\\', rest).ok_or(Refused)?;
            // No control character may stand in a string unescaped.
            if rest[..at].iter().any(|b| *b < 0x20) {
                return Err(Refused);
            }
            i += at;
            if bytes[i] == b'"' {
                break;
            }
            match bytes.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u')
                    if bytes
                        .get(i + 2..i + 6)
                        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                {
                    i += 6
                }
                _ => return Err(Refused),
            }
        }
        self.pos = i + 1;
        Ok(&self.src[start..self.pos])
    }

    /// An object's key and the colon after it.
    fn key(&mut self) -> Walked<&'a str> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return Err(Refused);
        }
        let key = self.string()?;
        // Escapes in a key would hide `metadata` or `kind` from the walk (kubectl writes none).
        if key.contains('\\') {
            return Err(Refused);
        }
        self.expect(b':')?;
        self.skip_ws();
        Ok(key)
    }

    /// A quoted JSON string's value: borrowed unless it has escapes.
    fn unquote(quoted: &'a str) -> Cow<'a, str> {
        let inner = &quoted[1..quoted.len().saturating_sub(1).max(1)];
        if inner.contains('\\') {
            Cow::Owned(serde_json::from_str(quoted).unwrap_or_default())
        } else {
            Cow::Borrowed(inner)
        }
    }

    /// A number, `true`, `false` or `null` at `pos`, checked; `pos` moves past it.
    fn literal(&mut self) -> Walked<&'a str> {
        let start = self.pos;
        while !matches!(
            self.peek(),
            None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
        ) {
            self.pos += 1;
        }
        let token = &self.src[start..self.pos];
        if matches!(token, "true" | "false" | "null") || is_number(token.as_bytes()) {
            Ok(token)
        } else {
            Err(Refused)
        }
    }

    /// Walks the value at `pos`, writing it unless `emit` is false.
    fn value_to(&mut self, at: At, emit: bool) -> Walked {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.object(at, emit),
            Some(b'[') => {
                self.descend()?;
                self.pos += 1;
                if emit {
                    self.found.text.push('[');
                }
                let (mut first, mut written) = (true, 0);
                while self.next_member(b']', &mut first)? {
                    if emit && written > 0 {
                        self.found.text.push(',');
                    }
                    written += 1;
                    self.value_to(At::Elsewhere, emit)?;
                }
                if emit {
                    self.found.text.push(']');
                }
                self.depth -= 1;
                Ok(())
            }
            Some(b'"') => {
                let s = self.string()?;
                if emit {
                    self.found.text.push_str(s);
                }
                Ok(())
            }
            Some(_) => {
                let token = self.literal()?;
                if emit {
                    self.found.text.push_str(token);
                }
                Ok(())
            }
            None => Err(Refused),
        }
    }

    fn descend(&mut self) -> Walked {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Refused);
        }
        Ok(())
    }

    /// Moves to the next member of an array or object: false, past the bracket, when `close`
    /// ends it. A comma must stand between members, and only there.
    fn next_member(&mut self, close: u8, first: &mut bool) -> Walked<bool> {
        self.skip_ws();
        match self.peek() {
            Some(b) if b == close && *first => {
                self.pos += 1;
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                *first = true;
                Ok(false)
            }
            Some(b',') if !*first => {
                self.pos += 1;
                self.skip_ws();
                // A trailing comma is not JSON.
                if self.peek() == Some(close) {
                    return Err(Refused);
                }
                Ok(true)
            }
            Some(_) if *first => {
                *first = false;
                Ok(true)
            }
            _ => Err(Refused),
        }
    }

    fn object(&mut self, at: At, emit: bool) -> Walked {
        self.descend()?;
        self.pos += 1;
        if emit {
            self.found.text.push('{');
        }
        let mut first_kept = true;
        let mut first = true;
        while self.next_member(b'}', &mut first)? {
            let key = self.key()?;
            let bare = key.as_bytes().get(1..key.len() - 1).unwrap_or_default();
            let dropped = match at {
                At::Metadata => bare == b"managedFields",
                At::Annotations => bare == LAST_APPLIED,
                _ => false,
            };
            let keep = emit && !dropped;
            if keep {
                if !first_kept {
                    self.found.text.push(',');
                }
                first_kept = false;
                self.found.text.push_str(key);
                self.found.text.push(':');
            }
            let child = match (at, bare) {
                (At::Root, b"metadata") => {
                    self.found.has_metadata = true;
                    At::Metadata
                }
                (At::Root, b"spec") => At::Spec,
                (At::Metadata, b"annotations") => At::Annotations,
                _ => At::Elsewhere,
            };
            // The few string fields the reader needs, read as the value is copied.
            let wanted = matches!(
                (at, bare),
                (At::Root, b"kind")
                    | (At::Metadata, b"name" | b"namespace")
                    | (At::Spec, b"nodeName" | b"restartPolicy")
            );
            if wanted && self.peek() == Some(b'"') {
                let s = self.string()?;
                if keep {
                    self.found.text.push_str(s);
                }
                let value = Some(Self::unquote(s));
                match bare {
                    b"kind" => self.found.kind = value,
                    b"name" => self.found.name = value,
                    b"namespace" => self.found.namespace = value,
                    b"restartPolicy" => self.found.restart_policy = value,
                    _ => self.found.node_name = value,
                }
                continue;
            }
            if at == At::Root && bare == b"apiVersion" {
                self.found.has_api_version = true;
            }
            let start = self.pos;
            self.value_to(child, keep)?;
            if at == At::Root && matches!(bare, b"spec" | b"status") {
                let end = self.pos;
                let range = if bare == b"spec" {
                    &mut self.found.spec
                } else {
                    &mut self.found.status
                };
                if range.replace(start..end).is_some() {
                    self.found.repeated = true;
                }
            }
        }
        if emit {
            self.found.text.push('}');
        }
        self.depth -= 1;
        Ok(())
    }
}

/// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_number(token: &[u8]) -> bool {
    let digits = |from: usize| {
        let n = token[from.min(token.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        (n > 0).then_some(from + n)
    };
    let mut i = usize::from(token.first() == Some(&b'-'));
    i = match token.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => match digits(i) {
            Some(end) => end,
            None => return false,
        },
        _ => return false,
    };
    if token.get(i) == Some(&b'.') {
        match digits(i + 1) {
            Some(end) => i = end,
            None => return false,
        }
    }
    if matches!(token.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(token.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        match digits(i) {
            Some(end) => i = end,
            None => return false,
        }
    }
    i == token.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn the_object_is_kept_but_for_whitespace_and_bookkeeping() {
        let raw = r#"{
            "kind": "Pod",
            "metadata": {
                "name": "web-\u0031",
                "namespace": "shop",
                "managedFields": [ { "manager": "kubelet", "fieldsV1": { "f:status": {} } } ],
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
                    "team": "a \"quoted\" } value"
                },
                "labels": { "app": "web" }
            },
            "spec": { "nodeName": "node-a", "restartPolicy": "Never", "containers": [ { "name": "app", "args": ["a b", "-1"] } ] },
            "status": { "phase": "Running", "restartCount": 3, "ready": false, "x": null, "n": -1.5e3 }
        }"#;
        let found = compact(raw).unwrap();
        let mut expected: Value = serde_json::from_str(raw).unwrap();
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        expected["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("kubectl.kubernetes.io/last-applied-configuration");
        let got: Value = serde_json::from_str(&found.text).unwrap();
        assert_eq!(got, expected);
        assert!(!found.text.contains(' ') || found.text.contains("a b"));
        assert_eq!(found.kind.as_deref(), Some("Pod"));
        assert_eq!(found.name.as_deref(), Some("web-1"));
        assert_eq!(found.namespace.as_deref(), Some("shop"));
        assert_eq!(found.node_name.as_deref(), Some("node-a"));
        assert_eq!(found.restart_policy.as_deref(), Some("Never"));
        assert!(!found.has_api_version && found.has_metadata);
    }

    #[test]
    fn only_the_top_level_fields_count() {
        // A `name` or `nodeName` deeper down is not the object's.
        let raw = json!({"spec": {"template": {"metadata": {"name": "t"}}, "x": {"nodeName": "n"}},
                         "metadata": {"labels": {"name": "l"}, "managedFields": []},
                         "items": [{"kind": "Other"}], "apiVersion": "v1"})
        .to_string();
        let found = compact(&raw).unwrap();
        assert_eq!(found.name, None);
        assert_eq!(found.node_name, None);
        assert_eq!(found.kind, None);
        assert!(found.has_api_version);
        let got: Value = serde_json::from_str(&found.text).unwrap();
        assert_eq!(got["metadata"], json!({"labels": {"name": "l"}}));
        // The only member dropped leaves valid JSON behind.
        let found = compact(r#"{"metadata": {"managedFields": [1], "name": "a"}}"#).unwrap();
        assert_eq!(found.text, r#"{"metadata":{"name":"a"}}"#);
        let found = compact(r#"{"metadata": {"name": "a", "managedFields": [1]}}"#).unwrap();
        assert_eq!(found.text, r#"{"metadata":{"name":"a"}}"#);
    }

    const LIST: &str = r#"{
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": { "resourceVersion": "12" },
        "items": [
            {
                "metadata": { "name": "web-1", "namespace": "shop", "managedFields": [ {"manager": "k"} ] },
                "spec": { "nodeName": "node-a", "containers": [ { "name": "app", "args": ["a\tb", "\u00e9"] } ] },
                "status": { "phase": "Running", "n": -1.5e3, "z": 0, "f": 0.25, "e": 1E+2, "ok": true, "no": false, "x": null }
            },
            { "metadata": { "name": "web-2" }, "spec": {}, "status": {} }
        ]
    }"#;

    #[test]
    fn a_list_is_read_in_one_pass_as_serde_reads_it() {
        let list = list(LIST).unwrap();
        assert_eq!(list.kind.as_deref(), Some("PodList"));
        assert_eq!(list.items.len(), 2);
        let document: Value = serde_json::from_str(LIST).unwrap();
        for (i, (at, found)) in list.items.iter().enumerate() {
            let mut expected = document["items"][i].clone();
            let raw = &LIST[at.clone()];
            let from_raw: Value = serde_json::from_str(raw).unwrap();
            assert_eq!(from_raw, expected);
            // The walk copies nothing; the spec and status it found are the item's.
            assert!(found.text.is_empty());
            for (range, field) in [(&found.spec, "spec"), (&found.status, "status")] {
                let value: Value = serde_json::from_str(&raw[range.clone().unwrap()]).unwrap();
                assert_eq!(value, expected[field], "{field}");
            }
            assert!(!found.repeated);
            expected["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("managedFields");
            let compacted = compact(raw).unwrap();
            assert_eq!(
                (&compacted.spec, &compacted.status),
                (&found.spec, &found.status)
            );
            let got: Value = serde_json::from_str(&compacted.text).unwrap();
            assert_eq!(got, expected);
        }
        let twice =
            super::list(r#"{"items": [{"status": {}, "metadata": {}, "status": {"a": 1}}]}"#);
        assert!(twice.unwrap().items[0].1.repeated);
        assert_eq!(list.items[0].1.node_name.as_deref(), Some("node-a"));
        // No items, or null ones, are an empty list.
        assert!(list_items(r#"{"kind": "PodList"}"#).is_some_and(|n| n == 0));
        assert!(list_items(r#"{"kind": null, "items": null}"#).is_some_and(|n| n == 0));
        assert!(list_items(r#" {"items": [], "kind": "List"} "#).is_some_and(|n| n == 0));
    }

    fn list_items(text: &str) -> Option<usize> {
        list(text).map(|l| l.items.len())
    }

    #[test]
    fn what_is_not_json_or_not_a_list_is_left_to_serde() {
        let refused = [
            r#"{"items": [{"a": 1},]}"#,
            r#"{"items": [{"a": 1,}]}"#,
            r#"{"items": [,{"a": 1}]}"#,
            r#"{"items": [{"a": 1},,{"b": 2}]}"#,
            r#"{"items": [{"a" 1}]}"#,
            r#"{"items": [{"a": 1 "b": 2}]}"#,
            r#"{"items": [{"a": "x
y"}]}"#,
            r#"{"items": [{"a": "\x"}]}"#,
            r#"{"items": [{"a": "\u12g4"}]}"#,
            r#"{"items": [{"a": 01}]}"#,
            r#"{"items": [{"a": 1.}]}"#,
            r#"{"items": [{"a": .5}]}"#,
            r#"{"items": [{"a": -}]}"#,
            r#"{"items": [{"a": 1e}]}"#,
            r#"{"items": [{"a": tru}]}"#,
            r#"{"items": [{"a": "unclosed}]}"#,
            r#"{"items": [{"a": 1}]} x"#,
            r#"{"items": [{"a": 1}]"#,
            r#"{"items": [1]}"#,
            r#"{"items": {"a": 1}}"#,
            r#"{"kind": 5, "items": []}"#,
            r#"{"items": [], "items": []}"#,
            r#"{"items": [{"met\u0061data": {"name": "a"}}]}"#,
            r#"["items"]"#,
            "",
        ];
        for text in refused {
            assert!(list(text).is_none(), "taken: {text}");
        }
        // Deeper than serde goes is not walked (the walk recurses).
        let deep = format!(
            r#"{{"items": [{{"a": {}1{}}}]}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(list(&deep).is_none());
        let fine = format!(
            r#"{{"items": [{{"a": {}1{}}}]}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(list(&fine).is_some());
    }

    /// Never more lenient than serde: every one-byte change of a list that the walk still
    /// takes, serde takes too.
    #[test]
    fn every_one_byte_change_the_walk_takes_serde_takes() {
        let bytes = LIST.as_bytes();
        let mut taken = 0;
        for i in 0..bytes.len() {
            for b in [
                b',', b'"', b'}', b']', b'{', b'[', b':', b'0', b'-', b'e', b'\\', b' ', b'\n',
                0x01,
            ] {
                let mut changed = bytes.to_vec();
                changed[i] = b;
                let mut deleted = bytes.to_vec();
                deleted.remove(i);
                for text in [changed, deleted] {
                    let Ok(text) = String::from_utf8(text) else {
                        continue;
                    };
                    if list(&text).is_some() {
                        taken += 1;
                        assert!(
                            serde_json::from_str::<Value>(&text).is_ok(),
                            "taken but not JSON: {text}"
                        );
                    }
                }
            }
        }
        // Whitespace and string contents change freely: the walk took many.
        assert!(taken > 100, "{taken}");
    }
}
