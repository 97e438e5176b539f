//! What the gateway learns from the chunks it relays: usage, finish reason, text, tool-call arguments.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::count::{count, Encoding};
use super::json::{non_null, raw_str, raw_u64, Pick, Picked};

/// The members of a streamed `choices[]` entry that [`Texts::absorb_picked`] reads.
pub(crate) const CHOICE: Pick<3> = Pick(&["index", "finish_reason", "delta"]);
/// The members of a `delta` that [`Texts::absorb_picked`] reads.
const DELTA: Pick<4> = Pick(&["content", "reasoning_content", "reasoning", "tool_calls"]);

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

/// [`usage_of`] for the members picked as raw JSON (`usage`, `x_groq`) by the fast paths of the
/// splicer and of `rewrite_completion`.
pub(crate) fn usage_of_picked(
    usage: Option<&RawValue>,
    x_groq: Option<&RawValue>,
) -> Option<Usage> {
    let parse = |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).ok();
    non_null(usage)
        .and_then(parse)
        .as_ref()
        .and_then(Usage::from_value)
        .or_else(|| {
            non_null(x_groq)
                .and_then(parse)
                .and_then(|x| x.get("usage").and_then(Usage::from_value))
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
        if let Some(choices) = obj.get("choices").and_then(Value::as_array) {
            self.absorb_choices(choices, part);
        }
    }

    /// [`Texts::absorb`] given the `choices` array itself.
    pub(crate) fn absorb_choices(&mut self, choices: &[Value], part: &str) {
        for (pos, choice) in choices.iter().enumerate() {
            if let Some(fr) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(fr.to_owned());
            }
            let Some(delta) = choice.get(part).and_then(Value::as_object) else {
                continue;
            };
            self.absorb_delta(index_or(choice, pos), delta);
        }
    }

    fn absorb_delta(&mut self, idx: u64, delta: &Map<String, Value>) {
        let acc = self.choices.entry(idx).or_default();
        match delta.get("content") {
            Some(Value::String(s)) => acc.content.push_str(s),
            Some(Value::Array(parts)) => absorb_parts(parts, &mut acc.content, &mut acc.reasoning),
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
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            absorb_tool_calls(acc, idx, calls);
        }
    }

    /// [`Texts::absorb_choices`] (`part = "delta"`) for a streamed chunk's `choices` read with
    /// [`CHOICE`], each delta with [`DELTA`]: the same result without building a `Value` tree. A delta
    /// the pick refuses (not an object, a repeated member) is read as a `Value` instead.
    pub(crate) fn absorb_picked(&mut self, choices: &[Picked<'_, 3>]) {
        for (pos, [index, finish_reason, delta]) in choices.iter().enumerate() {
            if let Some(fr) = finish_reason.and_then(raw_str) {
                self.finish_reason = Some(fr.into_owned());
            }
            let Some(delta) = delta else {
                continue;
            };
            let idx = index.and_then(raw_u64).unwrap_or(pos as u64);
            let Some([content, reasoning_content, reasoning, tool_calls]) =
                DELTA.object(delta.get())
            else {
                if let Ok(Value::Object(d)) = serde_json::from_str::<Value>(delta.get()) {
                    self.absorb_delta(idx, &d);
                }
                continue;
            };
            let acc = self.choices.entry(idx).or_default();
            if let Some(c) = content {
                if let Some(s) = raw_str(c) {
                    acc.content.push_str(&s);
                } else if c.get().starts_with('[') {
                    if let Ok(parts) = serde_json::from_str::<Vec<Value>>(c.get()) {
                        absorb_parts(&parts, &mut acc.content, &mut acc.reasoning);
                    }
                }
            }
            if let Some(r) = reasoning_content
                .and_then(raw_str)
                .or_else(|| reasoning.and_then(raw_str))
            {
                acc.reasoning.push_str(&r);
            }
            if let Some(calls) = tool_calls
                .filter(|t| t.get().starts_with('['))
                .and_then(|t| serde_json::from_str::<Vec<Value>>(t.get()).ok())
            {
                absorb_tool_calls(acc, idx, &calls);
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

fn absorb_tool_calls(acc: &mut ChoiceText, idx: u64, calls: &[Value]) {
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
