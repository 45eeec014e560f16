//! Applies an RFC 6902 JSON Patch to a copy of the target, so the review can judge a patch by its
//! effect (what the object looks like afterwards) and not only by the paths its operations name.
//!
//! Written over `serde_json` by hand rather than with the `json-patch` crate: the review needs
//! only `add`, `remove`, `replace` and `test` (`move` and `copy` are refused before this runs), and
//! the component ships in a size-limited ConfigMap.

use serde_json::Value;

/// The object after every operation of `ops`, or why the patch does not apply to it.
pub fn applied(target: &Value, ops: &[Value]) -> Result<Value, String> {
    let mut doc = target.clone();
    for (i, op) in ops.iter().enumerate() {
        let name = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        apply_one(&mut doc, name, path, op.get("value"))
            .map_err(|e| format!("operation {i} ({name} {path}) does not apply: {e}"))?;
    }
    Ok(doc)
}

fn apply_one(doc: &mut Value, op: &str, path: &str, value: Option<&Value>) -> Result<(), String> {
    let value = || value.cloned().ok_or_else(|| "it has no value".to_string());
    if path.is_empty() {
        return match op {
            "add" | "replace" => {
                *doc = value()?;
                Ok(())
            }
            "test" if Some(&*doc) == value().ok().as_ref() => Ok(()),
            "test" => Err("the test fails".into()),
            _ => Err("the whole document cannot be removed".into()),
        };
    }
    let (parent_path, last) = path.rsplit_once('/').ok_or("not a JSON Pointer")?;
    let key = last.replace("~1", "/").replace("~0", "~");
    if op == "test" {
        return match doc.pointer(path) {
            Some(current) if Some(current) == value().ok().as_ref() => Ok(()),
            _ => Err("the test fails".into()),
        };
    }
    let parent = doc
        .pointer_mut(parent_path)
        .ok_or_else(|| format!("{parent_path:?} does not exist"))?;
    match (op, parent) {
        ("add", Value::Object(map)) => {
            map.insert(key, value()?);
        }
        ("replace", Value::Object(map)) => {
            *map.get_mut(&key).ok_or("nothing to replace there")? = value()?;
        }
        ("remove", Value::Object(map)) => {
            map.remove(&key).ok_or("nothing to remove there")?;
        }
        ("add", Value::Array(items)) if key == "-" => items.push(value()?),
        ("add", Value::Array(items)) => {
            let at = index(&key, items.len() + 1)?;
            items.insert(at, value()?);
        }
        ("replace", Value::Array(items)) => {
            let at = index(&key, items.len())?;
            items[at] = value()?;
        }
        ("remove", Value::Array(items)) => {
            let at = index(&key, items.len())?;
            items.remove(at);
        }
        (_, Value::Object(_) | Value::Array(_)) => return Err(format!("unknown op {op:?}")),
        _ => return Err(format!("{parent_path:?} is neither an object nor an array")),
    }
    Ok(())
}

/// An array index below `len`, written without leading zeros as RFC 6901 requires.
fn index(token: &str, len: usize) -> Result<usize, String> {
    let at: usize = token
        .parse()
        .ok()
        .filter(|_| token == "0" || !token.starts_with('0'))
        .ok_or_else(|| format!("{token:?} is not an array index"))?;
    if at >= len {
        return Err(format!("index {at} is out of bounds"));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn add_replace_remove_and_test_follow_rfc_6902() {
        let target = json!({"a": {"b": [1, 2]}, "c": "x"});
        let ops = json!([
            {"op": "test", "path": "/c", "value": "x"},
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "add", "path": "/a/b/0", "value": 0},
            {"op": "replace", "path": "/c", "value": "y"},
            {"op": "remove", "path": "/a/b/1"},
            {"op": "add", "path": "/a/d~1e", "value": true}
        ]);
        let after = applied(&target, ops.as_array().unwrap()).unwrap();
        assert_eq!(after, json!({"a": {"b": [0, 2, 3], "d/e": true}, "c": "y"}));
    }

    #[test]
    fn a_patch_that_does_not_fit_the_object_is_an_error() {
        let target = json!({"a": [1]});
        for ops in [
            json!([{"op": "remove", "path": "/b"}]),
            json!([{"op": "replace", "path": "/a/1", "value": 2}]),
            json!([{"op": "add", "path": "/x/y", "value": 2}]),
            json!([{"op": "test", "path": "/a/0", "value": 2}]),
            json!([{"op": "remove", "path": "/a/01"}]),
        ] {
            assert!(applied(&target, ops.as_array().unwrap()).is_err(), "{ops}");
        }
    }
}
