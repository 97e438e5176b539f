//! A byte-level view of a JSON object's top-level members, for rewriting two values in place.
//!
//! Callers validate the document with `serde_json` first; this scanner only has to find spans in valid
//! JSON, and for anything else it returns `None` (it never panics and never indexes out of bounds).

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
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

/// The members named by a [`Pick`] of one JSON object, unparsed, in the order of the names.
pub(crate) type Picked<'a, const N: usize> = [Option<&'a RawValue>; N];

/// Reads a JSON object keeping only the raw values of the named members; every other member is
/// syntax-checked and skipped without being built. An object that repeats a named member is refused
/// (`None`), so callers fall back to their general path for it.
///
/// This is the splicer's per-event fast path: parsing a whole chunk into a `Value` tree costs a couple
/// of dozen allocations (id, model, fingerprint strings, maps with hashed keys) for the few members
/// it reads.
#[derive(Clone, Copy)]
pub(crate) struct Pick<const N: usize>(pub(crate) &'static [&'static str; N]);

impl<const N: usize> Pick<N> {
    /// `None` unless `text` is exactly one JSON object (surrounding whitespace allowed).
    pub(crate) fn object(self, text: &str) -> Option<Picked<'_, N>> {
        let mut de = serde_json::Deserializer::from_str(text);
        let out = self.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(out)
    }

    /// `None` unless `text` is exactly one JSON array whose elements are all objects.
    pub(crate) fn array_of_objects(self, text: &str) -> Option<Vec<Picked<'_, N>>> {
        let mut de = serde_json::Deserializer::from_str(text);
        let out = Elements(self).deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(out)
    }
}

impl<'de, const N: usize> DeserializeSeed<'de> for Pick<N> {
    type Value = Picked<'de, N>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Pick<N> {
    type Value = Picked<'de, N>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Picked<'de, N> = [None; N];
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match self.0.iter().position(|n| *n == key.as_ref()) {
                Some(i) => {
                    let v = map.next_value::<&'de RawValue>()?;
                    match out.get_mut(i) {
                        Some(slot @ None) => *slot = Some(v),
                        // A picked name twice: refuse, the caller takes its general path.
                        _ => return Err(serde::de::Error::custom("repeated member")),
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// An object key, borrowed from the input unless it has escapes (serde's own `Cow<str>` always
/// allocates).
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

struct Elements<const N: usize>(Pick<N>);

impl<'de, const N: usize> DeserializeSeed<'de> for Elements<N> {
    type Value = Vec<Picked<'de, N>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Elements<N> {
    type Value = Vec<Picked<'de, N>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(item) = seq.next_element_seed(self.0)? {
            out.push(item);
        }
        Ok(out)
    }
}

/// Byte offset of `part` inside `whole`, when `part` is a subslice of it (as a borrowed `RawValue` of
/// a document parsed from `whole` is).
pub(crate) fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (whole.get(start..start + part.len())? == part).then_some(start)
}

/// A raw value that is present and not `null`.
pub(crate) fn non_null(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

/// A raw JSON string's text (borrowed when it has no escapes); `None` for any other value, like
/// `Value::as_str`.
pub(crate) fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    match serde_json::from_str::<&str>(text) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(text).ok().map(Cow::Owned),
    }
}

/// A raw JSON number as a `u64`, like `Value::as_u64` (with `arbitrary_precision`).
pub(crate) fn raw_u64(raw: &RawValue) -> Option<u64> {
    raw.get().parse().ok()
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
