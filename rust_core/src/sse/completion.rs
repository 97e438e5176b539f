//! Non-streaming chat completions: rewrite `id`/`model`, read usage and the answer.

use serde_json::{Map, Value};

use super::capture::{usage_of, Texts, ToolCall, Usage};
use super::count::Encoding;
use super::json::{quote, rewrite_id_model};
use super::SseError;

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
    let obj: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| SseError::InvalidInput(format!("upstream body is not a JSON object: {e}")))?;
    let rewritten = rewrite_id_model(body, &quote(request_id), &quote(public_model))
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
