//! What the gateway learns from the chunks it relays: usage, finish reason, text, tool-call arguments.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::count::{count, Encoding};

/// Token usage, normalised from the many shapes upstreams send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// `prompt_tokens_details.cached_tokens`, or Together's `cached_tokens`, or DeepSeek's
    /// `prompt_cache_hit_tokens`.
    pub cached_tokens: u64,
    /// `completion_tokens_details.reasoning_tokens`.
    pub reasoning_tokens: u64,
    /// The usage object as JSON text (compact; numbers exactly as received).
    pub raw: String,
}

fn uint(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64)
}

impl Usage {
    /// Normalise a usage object; `None` for anything that is not a JSON object.
    pub fn from_value(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        let prompt = uint(o.get("prompt_tokens")).unwrap_or(0);
        let completion = uint(o.get("completion_tokens")).unwrap_or(0);
        let cached = uint(
            o.get("prompt_tokens_details")
                .and_then(|d| d.get("cached_tokens")),
        )
        .or_else(|| uint(o.get("cached_tokens")))
        .or_else(|| uint(o.get("prompt_cache_hit_tokens")))
        .unwrap_or(0);
        Some(Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: uint(o.get("total_tokens")).unwrap_or(prompt.saturating_add(completion)),
            cached_tokens: cached,
            reasoning_tokens: uint(
                o.get("completion_tokens_details")
                    .and_then(|d| d.get("reasoning_tokens")),
            )
            .unwrap_or(0),
            raw: v.to_string(),
        })
    }

    /// Usage made from local counts (no upstream figure).
    pub(crate) fn counted(prompt: u64, completion: u64, reasoning: u64) -> Self {
        let total = prompt.saturating_add(completion);
        let raw = format!(
            r#"{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":{total}}}"#
        );
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: total,
            cached_tokens: 0,
            reasoning_tokens: reasoning,
            raw,
        }
    }
}

/// The usage a chunk or body carries: top-level `usage`, else Groq's `x_groq.usage`.
pub(crate) fn usage_of(obj: &Map<String, Value>) -> Option<Usage> {
    obj.get("usage").and_then(Usage::from_value).or_else(|| {
        obj.get("x_groq")
            .and_then(|x| x.get("usage"))
            .and_then(Usage::from_value)
    })
}

/// One tool call as assembled from its fragments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCall {
    pub choice: u64,
    pub index: u64,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

#[derive(Debug, Default)]
struct ChoiceText {
    content: String,
    reasoning: String,
    tools: BTreeMap<u64, ToolCall>,
}

/// Accumulated text per choice index, and the last finish reason.
#[derive(Debug, Default)]
pub(crate) struct Texts {
    choices: BTreeMap<u64, ChoiceText>,
    pub(crate) finish_reason: Option<String>,
}

fn index_or(v: &Value, fallback: usize) -> u64 {
    uint(v.get("index")).unwrap_or(fallback as u64)
}

impl Texts {
    /// Take text from a streamed chunk's `choices[].delta` (or a body's `choices[].message`).
    pub(crate) fn absorb(&mut self, obj: &Map<String, Value>, part: &str) {
        let Some(choices) = obj.get("choices").and_then(Value::as_array) else {
            return;
        };
        for (pos, choice) in choices.iter().enumerate() {
            if let Some(fr) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(fr.to_owned());
            }
            let Some(delta) = choice.get(part).and_then(Value::as_object) else {
                continue;
            };
            let idx = index_or(choice, pos);
            let acc = self.choices.entry(idx).or_default();
            match delta.get("content") {
                Some(Value::String(s)) => acc.content.push_str(s),
                Some(Value::Array(parts)) => {
                    absorb_parts(parts, &mut acc.content, &mut acc.reasoning)
                }
                _ => {}
            }
            // vLLM sends `reasoning` and `reasoning_content` with the same text: take one.
            if let Some(r) = delta
                .get("reasoning_content")
                .and_then(Value::as_str)
                .or_else(|| delta.get("reasoning").and_then(Value::as_str))
            {
                acc.reasoning.push_str(r);
            }
            let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) else {
                continue;
            };
            for (tpos, call) in calls.iter().enumerate() {
                let tidx = index_or(call, tpos);
                let tc = acc.tools.entry(tidx).or_insert_with(|| ToolCall {
                    choice: idx,
                    index: tidx,
                    ..ToolCall::default()
                });
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    tc.id = Some(id.to_owned());
                }
                let func = call.get("function");
                if let Some(name) = func.and_then(|f| f.get("name")).and_then(Value::as_str) {
                    tc.name = Some(name.to_owned());
                }
                if let Some(args) = func
                    .and_then(|f| f.get("arguments"))
                    .and_then(Value::as_str)
                {
                    tc.arguments.push_str(args);
                }
            }
        }
    }

    /// Content of the first choice (index 0, or the lowest index seen).
    pub(crate) fn content(&self) -> &str {
        self.choices
            .values()
            .next()
            .map_or("", |c| c.content.as_str())
    }

    pub(crate) fn reasoning(&self) -> &str {
        self.choices
            .values()
            .next()
            .map_or("", |c| c.reasoning.as_str())
    }

    pub(crate) fn tool_calls(&self) -> Vec<ToolCall> {
        self.choices
            .values()
            .flat_map(|c| c.tools.values().cloned())
            .collect()
    }

    /// A tool call whose arguments so far are not a complete JSON value.
    pub(crate) fn tool_call_open(&self) -> bool {
        self.choices
            .values()
            .flat_map(|c| c.tools.values())
            .any(|t| serde_json::from_str::<serde::de::IgnoredAny>(&t.arguments).is_err())
    }

    /// Completion tokens counted locally: each text segment of each choice counted whole, then summed.
    pub(crate) fn count(&self, enc: Encoding) -> (u64, u64) {
        let (mut total, mut reasoning) = (0usize, 0usize);
        for c in self.choices.values() {
            let r = count(enc, &c.reasoning);
            reasoning += r;
            total += count(enc, &c.content) + r;
            total += c
                .tools
                .values()
                .map(|t| count(enc, &t.arguments))
                .sum::<usize>();
        }
        (total as u64, reasoning as u64)
    }
}

/// Text parts of an array-valued `content`: `{"type":"text","text":…}` is content; Mistral's
/// `{"type":"thinking","thinking":[{"type":"text",…}]}` is reasoning.
fn absorb_parts(parts: &[Value], content: &mut String, reasoning: &mut String) {
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    content.push_str(t);
                }
            }
            Some("thinking") => {
                if let Some(inner) = p.get("thinking").and_then(Value::as_array) {
                    let mut ignored = String::new();
                    absorb_parts(inner, reasoning, &mut ignored);
                }
            }
            _ => {}
        }
    }
}
