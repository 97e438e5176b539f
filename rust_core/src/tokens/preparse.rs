//! One-pass pre-parse of an OpenAI request body, and model substitution that keeps every other byte.
//!
//! The body is split once into its top-level members, each kept as raw JSON text (`RawValue`); only the
//! members the gateway needs are parsed further. `substitute_model` re-emits the raw members, so numbers
//! of any size, string escapes and nested whitespace survive byte for byte.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::chat::{count_chat_value, count_tools, ChatError};
use super::encoding::{count_text, Encoding};
use crate::sse::json::Key;

/// What the data plane needs from a request body before routing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreParsed {
    pub model: Option<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    pub n: u64,
    pub has_tools: bool,
    pub prompt_tokens: usize,
    /// The encoding `prompt_tokens` was counted with.
    pub encoding: Encoding,
    /// The prompt was counted with a fallback encoding (the model is not a known OpenAI model and no
    /// encoding was given).
    pub estimated: bool,
    /// The raw JSON text of the top-level `dragonfly` routing-override object.
    pub dragonfly: Option<Vec<u8>>,
}

/// Why a body was refused; the message names the problem (the gateway answers HTTP 400 with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreParseError(pub String);

impl fmt::Display for PreParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PreParseError {}

#[cold]
fn err(msg: impl Into<String>) -> PreParseError {
    PreParseError(msg.into())
}

/// The top-level members of a JSON object, in order, values unparsed.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((Key(k), v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

fn members(body: &[u8]) -> Result<Members<'_>, PreParseError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(err(if first.is_none() {
            "request body is empty"
        } else {
            "request body must be a JSON object"
        }));
    }
    serde_json::from_slice(body).map_err(|e| err(format!("request body is not valid JSON: {e}")))
}

fn parse(name: &str, raw: &RawValue) -> Result<Value, PreParseError> {
    serde_json::from_str(raw.get()).map_err(|e| err(format!("'{name}' is not valid JSON: {e}")))
}

fn opt_bool(name: &str, raw: &RawValue) -> Result<bool, PreParseError> {
    match raw.get() {
        "true" => Ok(true),
        "false" | "null" => Ok(false),
        _ => Err(err(format!("'{name}' must be a boolean"))),
    }
}

fn opt_uint(name: &str, raw: &RawValue) -> Result<Option<u64>, PreParseError> {
    match parse(name, raw)? {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| err(format!("'{name}' must be a non-negative integer"))),
        _ => Err(err(format!("'{name}' must be an integer"))),
    }
}

/// Pre-parse a chat-completions (or embeddings) request body in one pass.
///
/// Prompt tokens: `messages` with OpenAI chat accounting plus `tools`/`functions` definitions, counted
/// with the model's encoding; an embeddings body (`input` and no `messages`) counts its input text
/// (a string, a list of strings, or token arrays whose length is the count).
pub fn preparse_request(body: &[u8]) -> Result<PreParsed, PreParseError> {
    preparse_request_with(body, None)
}

/// [`preparse_request`], counting the prompt with `encoding` when given (e.g. the encoding a listing
/// declares; `estimated` is then false) instead of the one mapped from the body's `model`.
pub fn preparse_request_with(
    body: &[u8],
    encoding: Option<Encoding>,
) -> Result<PreParsed, PreParseError> {
    let Members(members) = members(body)?;
    let mut out = PreParsed {
        model: None,
        stream: false,
        include_usage: false,
        max_tokens: None,
        n: 1,
        has_tools: false,
        prompt_tokens: 0,
        encoding: Encoding::O200kBase,
        estimated: false,
        dragonfly: None,
    };
    let (mut messages, mut input, mut tools, mut max_tokens, mut max_completion) =
        (None, None, None, None, None);
    for (key, raw) in &members {
        match key.as_ref() {
            "model" => match parse("model", raw)? {
                Value::String(s) => out.model = Some(s),
                Value::Null => out.model = None,
                _ => return Err(err("'model' must be a string")),
            },
            "stream" => out.stream = opt_bool("stream", raw)?,
            "stream_options" => match parse("stream_options", raw)? {
                Value::Object(o) => match o.get("include_usage") {
                    None | Some(Value::Null) => {}
                    Some(Value::Bool(b)) => out.include_usage = *b,
                    Some(_) => return Err(err("'stream_options.include_usage' must be a boolean")),
                },
                Value::Null => {}
                _ => return Err(err("'stream_options' must be an object")),
            },
            "max_tokens" => max_tokens = opt_uint("max_tokens", raw)?,
            "max_completion_tokens" => max_completion = opt_uint("max_completion_tokens", raw)?,
            "n" => {
                out.n = match opt_uint("n", raw)? {
                    None => 1,
                    Some(0) => return Err(err("'n' must be at least 1")),
                    Some(n) => n,
                }
            }
            "tools" | "functions" => match parse(key, raw)? {
                Value::Array(list) => {
                    out.has_tools |= !list.is_empty();
                    tools.get_or_insert_with(Vec::new).extend(list);
                }
                Value::Null => {}
                _ => return Err(err(format!("'{key}' must be an array"))),
            },
            "messages" => messages = Some(parse("messages", raw)?),
            "input" => input = Some(parse("input", raw)?),
            "dragonfly" => match raw.get().as_bytes().first() {
                Some(b'{') => out.dragonfly = Some(raw.get().as_bytes().to_vec()),
                _ if raw.get() == "null" => out.dragonfly = None,
                _ => return Err(err("'dragonfly' must be an object")),
            },
            _ => {}
        }
    }
    out.max_tokens = max_completion.or(max_tokens);
    let (enc, estimated) = match encoding {
        Some(enc) => (enc, false),
        None => Encoding::for_model(out.model.as_deref().unwrap_or("")),
    };
    out.encoding = enc;
    out.estimated = estimated;
    out.prompt_tokens = match (&messages, &input) {
        (Some(m), _) => count_chat_value(enc, m, None).map_err(|e| match e {
            ChatError::NotJson(e) => err(format!("'messages' is not valid JSON: {e}")),
            other => err(other.to_string()),
        })?,
        (None, Some(i)) => count_input(enc, i)?,
        (None, None) => return Err(err("request has no 'messages'")),
    };
    if let Some(tools) = &tools {
        out.prompt_tokens += count_tools(enc, tools);
    }
    Ok(out)
}

fn count_input(enc: Encoding, input: &Value) -> Result<usize, PreParseError> {
    match input {
        Value::String(s) => Ok(count_text(enc, s)),
        Value::Array(items) => items.iter().try_fold(0usize, |acc, item| {
            Ok(acc
                + match item {
                    Value::String(s) => count_text(enc, s),
                    Value::Array(tokens) => tokens.len(),
                    Value::Number(_) => 1,
                    _ => {
                        return Err(err(
                            "'input' must be a string or an array of strings or tokens",
                        ))
                    }
                })
        }),
        _ => Err(err("'input' must be a string or an array")),
    }
}

/// Re-emit `body` with the top-level `model` set to `upstream_model` and the top-level `dragonfly`
/// member removed. Every other member's value is copied byte for byte; members keep their order (a
/// missing `model` is added first). Whitespace between top-level members is not kept.
pub fn substitute_model(body: &[u8], upstream_model: &str) -> Result<Vec<u8>, PreParseError> {
    let Members(members) = members(body)?;
    let mut out = Vec::with_capacity(body.len() + upstream_model.len() + 16);
    out.push(b'{');
    let write_model = |out: &mut Vec<u8>| -> Result<(), PreParseError> {
        out.extend_from_slice(b"\"model\":");
        serde_json::to_writer(&mut *out, upstream_model).map_err(|e| err(e.to_string()))
    };
    let mut model_written = !members.iter().any(|(k, _)| k == "model");
    if model_written {
        write_model(&mut out)?;
    }
    for (key, raw) in &members {
        match key.as_ref() {
            "dragonfly" => continue,
            "model" if model_written => continue, // a duplicate `model` member
            _ => {}
        }
        if out.len() > 1 {
            out.push(b',');
        }
        if key == "model" {
            write_model(&mut out)?;
            model_written = true;
        } else {
            serde_json::to_writer(&mut out, key.as_ref()).map_err(|e| err(e.to_string()))?;
            out.push(b':');
            out.extend_from_slice(raw.get().as_bytes());
        }
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preparse_reads_every_field() {
        let body = br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},
            "max_tokens":10,"max_completion_tokens":20,"n":2,"tools":[{"type":"function","function":{"name":"f"}}],
            "messages":[{"role":"user","content":"hi"}],"dragonfly":{"profile":"cheap"}}"#;
        let p = preparse_request(body).unwrap();
        assert_eq!(p.model.as_deref(), Some("gpt-4o"));
        assert!(p.stream && p.include_usage && p.has_tools && !p.estimated);
        assert_eq!((p.max_tokens, p.n), (Some(20), 2));
        assert_eq!(p.dragonfly.as_deref(), Some(&br#"{"profile":"cheap"}"#[..]));
        assert!(p.prompt_tokens > 8);
    }

    #[test]
    fn preparse_counts_with_a_declared_encoding() {
        let body = r#"{"model":"llama-3.1-70b","messages":[{"role":"user","content":"Grüße aus Köln — 東京 ✓"}]}"#;
        let body = body.as_bytes();
        let mapped = preparse_request(body).unwrap();
        assert!(mapped.estimated);
        assert_eq!(mapped.encoding, Encoding::O200kBase);
        let declared = preparse_request_with(body, Some(Encoding::Cl100kBase)).unwrap();
        assert!(!declared.estimated);
        assert_eq!(declared.encoding, Encoding::Cl100kBase);
        assert_ne!(declared.prompt_tokens, mapped.prompt_tokens);
        let same = preparse_request_with(body, Some(Encoding::O200kBase)).unwrap();
        assert_eq!(same.prompt_tokens, mapped.prompt_tokens);
        assert!(!same.estimated);
    }

    #[test]
    fn preparse_refuses_bad_bodies_with_a_reason() {
        for (body, needle) in [
            (&b"not json"[..], "JSON object"),
            (b"", "empty"),
            (b"[1]", "JSON object"),
            (b"{\"messages\": {}}", "'messages' must be an array"),
            (b"{\"messages\": [1]}", "'messages[0]'"),
            (b"{\"model\": 1, \"messages\": []}", "'model'"),
            (b"{\"messages\": [], \"stream\": \"yes\"}", "'stream'"),
            (b"{\"messages\": [], \"n\": 0}", "'n'"),
            (b"{\"messages\": [], \"max_tokens\": -1}", "'max_tokens'"),
            (b"{\"messages\": [], \"dragonfly\": 3}", "'dragonfly'"),
            (b"{\"model\": \"x\"", "not valid JSON"),
            (b"{}", "no 'messages'"),
        ] {
            let e = preparse_request(body).unwrap_err();
            assert!(
                e.0.contains(needle),
                "{:?}: {e}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn substitute_keeps_other_bytes() {
        let body = br#"{"dragonfly":{"x":1},"model":"alias","seed":123456789012345678901234567890,"t":1.0e5,"s":"\u00e9"}"#;
        let out = substitute_model(body, "gpt-4o-2024").unwrap();
        assert_eq!(
            out,
            br#"{"model":"gpt-4o-2024","seed":123456789012345678901234567890,"t":1.0e5,"s":"\u00e9"}"#.to_vec()
        );
        let out = substitute_model(br#"{"a":[1, 2]}"#, "m\"").unwrap();
        assert_eq!(out, br#"{"model":"m\"","a":[1, 2]}"#.to_vec());
    }
}
