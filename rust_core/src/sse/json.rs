//! A byte-level view of a JSON object's top-level members, for rewriting two values in place.
//!
//! Callers validate the document with `serde_json` first; this scanner only has to find spans in valid
//! JSON, and for anything else it returns `None` (it never panics and never indexes out of bounds).

use serde_json::Value;

/// Byte spans of one top-level member: the key (with its quotes) and the value.
#[derive(Debug, Clone, Copy)]
struct Member {
    key: (usize, usize),
    value: (usize, usize),
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(buf: &[u8], mut i: usize) -> usize {
    while buf.get(i).is_some_and(|&b| is_ws(b)) {
        i += 1;
    }
    i
}

/// Index just past the string starting at `i` (which must be a `"`).
fn skip_string(buf: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let rel = memchr::memchr2(b'"', b'\\', buf.get(j..)?)?;
        j += rel;
        if buf.get(j) == Some(&b'\\') {
            j += 2;
        } else {
            return Some(j + 1);
        }
    }
}

/// Index just past the value starting at `i`.
fn skip_value(buf: &[u8], i: usize) -> Option<usize> {
    match *buf.get(i)? {
        b'"' => skip_string(buf, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *buf.get(j)? {
                    b'"' => {
                        j = skip_string(buf, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while buf
                .get(j)
                .is_some_and(|&b| !is_ws(b) && !matches!(b, b',' | b'}' | b']'))
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

fn members(buf: &[u8]) -> Option<Vec<Member>> {
    let mut i = skip_ws(buf, 0);
    if buf.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(buf, i + 1);
    let mut out = Vec::new();
    if buf.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if buf.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(buf, i)?;
        let key = (i, key_end);
        i = skip_ws(buf, key_end);
        if buf.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(buf, i + 1);
        let value_end = skip_value(buf, i)?;
        out.push(Member {
            key,
            value: (i, value_end),
        });
        i = skip_ws(buf, value_end);
        match buf.get(i)? {
            b',' => i = skip_ws(buf, i + 1),
            b'}' => return Some(out),
            _ => return None,
        }
    }
}

/// The key's text, decoding escapes only when there are any.
fn key_is(buf: &[u8], (start, end): (usize, usize), want: &str) -> bool {
    let Some(raw) = buf.get(start..end) else {
        return false;
    };
    let Some(inner) = raw.get(1..raw.len().saturating_sub(1)) else {
        return false;
    };
    if memchr::memchr(b'\\', inner).is_none() {
        return inner == want.as_bytes();
    }
    serde_json::from_slice::<String>(raw).is_ok_and(|k| k == want)
}

/// Copy `buf` replacing the value of every top-level `id` with `id_json` and of every top-level `model`
/// with `model_json` (both already JSON-encoded). Absent fields stay absent. `None` if `buf` is not an
/// object.
pub(crate) fn rewrite_id_model(buf: &[u8], id_json: &str, model_json: &str) -> Option<Vec<u8>> {
    let members = members(buf)?;
    let mut out = Vec::with_capacity(buf.len() + id_json.len() + model_json.len());
    let mut copied = 0usize;
    for m in members {
        let new = if key_is(buf, m.key, "id") {
            id_json
        } else if key_is(buf, m.key, "model") {
            model_json
        } else {
            continue;
        };
        out.extend_from_slice(buf.get(copied..m.value.0)?);
        out.extend_from_slice(new.as_bytes());
        copied = m.value.1;
    }
    out.extend_from_slice(buf.get(copied..)?);
    Some(out)
}

/// JSON-encode a string (never fails).
pub(crate) fn quote(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(s: &str) -> String {
        String::from_utf8(rewrite_id_model(s.as_bytes(), "\"R\"", "\"M\"").unwrap()).unwrap()
    }

    #[test]
    fn rewrites_only_top_level_id_and_model_byte_exact() {
        let src = r#"{"id":"x","choices":[{"id":"keep","model":"keep"}],"model" : "m", "seed": 99495783792650810001234}"#;
        assert_eq!(
            rw(src),
            r#"{"id":"R","choices":[{"id":"keep","model":"keep"}],"model" : "M", "seed": 99495783792650810001234}"#
        );
    }

    #[test]
    fn escaped_keys_strings_with_braces_and_odd_values() {
        assert_eq!(
            rw(r#"{"\u0069d":null,"s":"}\"{[","model":{"a":[1,{"b":"]"}]}}"#),
            r#"{"\u0069d":"R","s":"}\"{[","model":"M"}"#
        );
        assert_eq!(rw("  {}  "), "  {}  ");
        assert_eq!(rw("{\n \"id\" :\t12 \n}\n"), "{\n \"id\" :\t\"R\" \n}\n");
    }

    #[test]
    fn non_objects_are_none() {
        for s in [
            "[]",
            "1",
            "\"id\"",
            "{",
            "{\"id\"",
            "{\"id\":}",
            "{\"a\":1,}",
            "",
        ] {
            assert!(rewrite_id_model(s.as_bytes(), "1", "2").is_none(), "{s}");
        }
    }
}
