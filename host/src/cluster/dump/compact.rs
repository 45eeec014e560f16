//! One pass over an object of a dump as kubectl wrote it: the object without whitespace,
//! `metadata.managedFields` or the last-applied annotation (the live reader drops them too), and
//! the fields the reader needs before storing it (kind, name, namespace, a Pod's node). A dump of
//! 10,000 Pods is 200 MB of indented JSON; reading it field by field with serde and then
//! minifying it was three passes, and managedFields alone were a third of what was stored.
//!
//! The input must be valid JSON (the list was parsed by serde first, which checked it); this
//! walks it, it does not validate it.

use std::borrow::Cow;

const LAST_APPLIED: &[u8] = b"kubectl.kubernetes.io/last-applied-configuration";

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

struct Walk<'a> {
    src: &'a str,
    pos: usize,
    found: Compact<'a>,
}

/// Compacts one object (`raw` starts with `{`).
pub(super) fn compact(raw: &str) -> Compact<'_> {
    let mut walk = Walk {
        src: raw,
        pos: 0,
        found: Compact {
            text: String::with_capacity(raw.len() / 2),
            ..Default::default()
        },
    };
    walk.value(At::Root);
    walk.found
}

impl<'a> Walk<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn skip_ws(&mut self) {
        while matches!(
            self.bytes().get(self.pos),
            Some(b' ' | b'\n' | b'\r' | b'\t')
        ) {
            self.pos += 1;
        }
    }

    /// The string starting at `pos` (its quotes included); `pos` moves past it.
    fn string(&mut self) -> &'a str {
        let start = self.pos;
        let bytes = self.bytes();
        let mut i = start + 1;
        while let Some(at) = memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) {
            i += at;
            if bytes[i] == b'"' {
                break;
            }
            i += 2;
        }
        // No closing quote (not valid JSON, which the caller rules out): the rest is the string.
        if i >= bytes.len() || bytes[i] != b'"' {
            i = bytes.len();
        }
        self.pos = (i + 1).min(bytes.len());
        &self.src[start..self.pos]
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

    /// Walks the value at `pos`, writing it unless `emit` is false.
    fn value_to(&mut self, at: At, emit: bool) {
        self.skip_ws();
        match self.bytes().get(self.pos) {
            Some(b'{') => self.object(at, emit),
            Some(b'[') => {
                self.pos += 1;
                if emit {
                    self.found.text.push('[');
                }
                let mut first = true;
                while self.next_member(b']') {
                    if emit && !first {
                        self.found.text.push(',');
                    }
                    first = false;
                    self.value_to(At::Elsewhere, emit);
                }
                if emit {
                    self.found.text.push(']');
                }
            }
            Some(b'"') => {
                let s = self.string();
                if emit {
                    self.found.text.push_str(s);
                }
            }
            Some(_) => {
                // A number, true, false or null: up to the next delimiter.
                let start = self.pos;
                while !matches!(
                    self.bytes().get(self.pos),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                ) {
                    self.pos += 1;
                }
                if emit {
                    self.found.text.push_str(&self.src[start..self.pos]);
                }
            }
            None => {}
        }
    }

    /// Moves to the next member of an array or object (past whitespace and commas): false, past
    /// the bracket, when `close` ends it.
    fn next_member(&mut self, close: u8) -> bool {
        loop {
            self.skip_ws();
            match self.bytes().get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b) if *b == close => {
                    self.pos += 1;
                    return false;
                }
                None => return false,
                _ => return true,
            }
        }
    }

    fn value(&mut self, at: At) {
        self.value_to(at, true)
    }

    fn object(&mut self, at: At, emit: bool) {
        self.pos += 1;
        if emit {
            self.found.text.push('{');
        }
        let mut first = true;
        while self.next_member(b'}') {
            let key = self.string();
            self.skip_ws();
            self.pos += 1; // ':'
            self.skip_ws();
            let bare = key.as_bytes().get(1..key.len() - 1).unwrap_or_default();
            let dropped = match at {
                At::Metadata => bare == b"managedFields",
                At::Annotations => bare == LAST_APPLIED,
                _ => false,
            };
            let keep = emit && !dropped;
            if keep {
                if !first {
                    self.found.text.push(',');
                }
                first = false;
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
                    | (At::Spec, b"nodeName")
            );
            if wanted && self.bytes().get(self.pos) == Some(&b'"') {
                let s = self.string();
                if keep {
                    self.found.text.push_str(s);
                }
                let value = Some(Self::unquote(s));
                match bare {
                    b"kind" => self.found.kind = value,
                    b"name" => self.found.name = value,
                    b"namespace" => self.found.namespace = value,
                    _ => self.found.node_name = value,
                }
                continue;
            }
            if at == At::Root && bare == b"apiVersion" {
                self.found.has_api_version = true;
            }
            self.value_to(child, keep);
        }
        if emit {
            self.found.text.push('}');
        }
    }
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
            "spec": { "nodeName": "node-a", "containers": [ { "name": "app", "args": ["a b", "-1"] } ] },
            "status": { "phase": "Running", "restartCount": 3, "ready": false, "x": null, "n": -1.5e3 }
        }"#;
        let found = compact(raw);
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
        assert!(!found.has_api_version && found.has_metadata);
    }

    #[test]
    fn only_the_top_level_fields_count() {
        // A `name` or `nodeName` deeper down is not the object's.
        let raw = json!({"spec": {"template": {"metadata": {"name": "t"}}, "x": {"nodeName": "n"}},
                         "metadata": {"labels": {"name": "l"}, "managedFields": []},
                         "items": [{"kind": "Other"}], "apiVersion": "v1"})
        .to_string();
        let found = compact(&raw);
        assert_eq!(found.name, None);
        assert_eq!(found.node_name, None);
        assert_eq!(found.kind, None);
        assert!(found.has_api_version);
        let got: Value = serde_json::from_str(&found.text).unwrap();
        assert_eq!(got["metadata"], json!({"labels": {"name": "l"}}));
        // The only member dropped leaves valid JSON behind.
        let found = compact(r#"{"metadata": {"managedFields": [1], "name": "a"}}"#);
        assert_eq!(found.text, r#"{"metadata":{"name":"a"}}"#);
        let found = compact(r#"{"metadata": {"name": "a", "managedFields": [1]}}"#);
        assert_eq!(found.text, r#"{"metadata":{"name":"a"}}"#);
    }
}
