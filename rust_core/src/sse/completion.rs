//! Non-streaming chat completions: rewrite `id`/`model`, read usage and the answer.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::capture::{usage_of, usage_of_picked, Texts, ToolCall, Usage};
use super::count::Encoding;
use super::json::{non_null, quote, raw_str, rewrite_id_model, Pick};
use super::SseError;

/// The top-level members a completion body is read for; everything else is skipped unbuilt.
const BODY: Pick<4> = Pick(&["choices", "usage", "x_groq", "error"]);
/// The members of a choice read; `message` has the members of a stream's `delta`.
const MESSAGE_CHOICE: Pick<3> = Pick(&["index", "finish_reason", "message"]);

/// A rewritten non-streaming body and what was read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The body with leading whitespace dropped and top-level `id`/`model` replaced; every other byte
    /// as received.
    pub body: Vec<u8>,
    pub usage: Option<Usage>,
    /// `choices[0].finish_reason`.
    pub finish_reason: Option<String>,
    /// `choices[0].message.content` (the text parts, when it is an array).
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub counted_completion_tokens: u64,
    /// The upstream's `error` object, when the body is an error envelope (or carries one).
    pub upstream_error: Option<Value>,
}

/// Rewrite a whole chat-completion body. Leading whitespace (OpenRouter's keep-alive padding) is
/// tolerated and dropped; anything that is not a JSON object is [`SseError::InvalidInput`].
pub fn rewrite_completion(
    body: &[u8],
    request_id: &str,
    public_model: &str,
    encoding: Encoding,
) -> Result<Completion, SseError> {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let body = body.get(start..).unwrap_or_default();
    let id_json = quote(request_id);
    let model_json = quote(public_model);
    if let Some(c) = picked(body, &id_json, &model_json, encoding) {
        return Ok(c);
    }
    general(body, &id_json, &model_json, encoding)
}

/// The fast path (the common case): the few members read are picked as raw JSON, the rest of the
/// body is only syntax-checked, never built into a `Value` tree. `None` sends the body to
/// [`general`] (not UTF-8, a repeated picked member, `choices` not an array of objects...), which
/// gives the same result or the error.
fn picked(body: &[u8], id_json: &str, model_json: &str, encoding: Encoding) -> Option<Completion> {
    let text = std::str::from_utf8(body).ok()?;
    let [choices, usage, x_groq, error] = BODY.object(text)?;
    let choices = match non_null(choices) {
        Some(raw) => MESSAGE_CHOICE.array_of_objects(raw.get())?,
        None => Vec::new(),
    };
    let rewritten = rewrite_id_model(body, id_json, model_json)?;
    let usage = usage_of_picked(usage, x_groq);
    let finish_reason = choices
        .first()
        .and_then(|[_, fr, _]| *fr)
        .and_then(raw_str)
        .map(|s| s.into_owned());
    let mut texts = Texts::default();
    texts.absorb_picked(&choices);
    Some(Completion {
        body: rewritten,
        usage,
        finish_reason,
        content: texts.content().to_owned(),
        tool_calls: texts.tool_calls(),
        counted_completion_tokens: texts.count(encoding).0,
        upstream_error: non_null(error)
            .and_then(|raw: &RawValue| serde_json::from_str::<Value>(raw.get()).ok()),
    })
}

/// The general path: the whole body as a `Value` tree.
fn general(
    body: &[u8],
    id_json: &str,
    model_json: &str,
    encoding: Encoding,
) -> Result<Completion, SseError> {
    let obj: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| SseError::InvalidInput(format!("upstream body is not a JSON object: {e}")))?;
    let rewritten = rewrite_id_model(body, id_json, model_json)
        .ok_or_else(|| SseError::InvalidInput("upstream body is not a JSON object".into()))?;
    let mut texts = Texts::default();
    // Only choice 0's finish reason counts here; `absorb` keeps the last one, so feed it choice 0 alone.
    let first = obj
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    let finish_reason = first
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    texts.absorb(&obj, "message");
    Ok(Completion {
        body: rewritten,
        usage: usage_of(&obj),
        finish_reason,
        content: texts.content().to_owned(),
        tool_calls: texts.tool_calls(),
        counted_completion_tokens: texts.count(encoding).0,
        upstream_error: obj.get("error").filter(|e| !e.is_null()).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path gives exactly what the general path gives, on every shape it accepts.
    #[test]
    fn picked_equals_general() {
        let bodies: &[&str] = &[
            r#"{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":1},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
            r#"{"id":"x","model":"m","choices":[{"index":0,"finish_reason":"tool_calls","message":{"content":null,"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}}]}"#,
            r#"{"id":"x","model":"m","choices":[{"message":{"content":[{"type":"text","text":"part one "},{"type":"text","text":"two"}],"reasoning_content":"think"},"finish_reason":null},{"index":1,"message":{"content":"second"},"finish_reason":"length"}],"x_groq":{"usage":{"prompt_tokens":9,"completion_tokens":4}}}"#,
            r#"{"id":"x","model":"m","choices":null,"usage":null,"error":null}"#,
            r#"{"error":{"message":"quota","type":"insufficient_quota","code":429}}"#,
            r#"{"id":"x","model":"m","choices":[{"index":0,"message":{"content":"caf\u00e9 \"q\""},"finish_reason":"stop","seed":9949578379265081000}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
            r#"{"id":"x","choices":[],"usage":"weird","x_groq":{"usage":{"prompt_tokens":2,"completion_tokens":3}}}"#,
        ];
        let (id, model) = (quote("gen-1"), quote("public/model"));
        for body in bodies {
            let fast = picked(body.as_bytes(), &id, &model, Encoding::O200kBase)
                .unwrap_or_else(|| panic!("fast path refused {body}"));
            let slow = general(body.as_bytes(), &id, &model, Encoding::O200kBase).unwrap();
            assert_eq!(fast, slow, "{body}");
        }
    }

    /// Shapes the fast path leaves to the general path still come out right (or fail the same way).
    #[test]
    fn refused_shapes_fall_back() {
        let (id, model) = (quote("gen-1"), quote("m"));
        let twice = r#"{"id":"a","choices":[],"choices":[{"index":0,"message":{"content":"x"},"finish_reason":"stop"}]}"#;
        assert!(picked(twice.as_bytes(), &id, &model, Encoding::O200kBase).is_none());
        let scalar_choice = r#"{"id":"a","model":"m","choices":[1]}"#;
        assert!(picked(scalar_choice.as_bytes(), &id, &model, Encoding::O200kBase).is_none());
        assert!(
            rewrite_completion(scalar_choice.as_bytes(), "gen-1", "m", Encoding::O200kBase).is_ok()
        );
        assert!(rewrite_completion(b"[1,2]", "gen-1", "m", Encoding::O200kBase).is_err());
        assert!(rewrite_completion(b"{\"id\":", "gen-1", "m", Encoding::O200kBase).is_err());
    }
}
