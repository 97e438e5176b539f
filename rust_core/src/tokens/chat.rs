//! OpenAI chat-completion prompt accounting.
//!
//! Messages follow the formula of the OpenAI cookbook "How to count tokens with tiktoken"
//! (`num_tokens_from_messages`), which the cookbook checks against the API's `usage.prompt_tokens`
//! for gpt-3.5-turbo, gpt-4, gpt-4o and gpt-4o-mini:
//!
//! * 3 tokens per message (`<|start|>{role}\n ... <|end|>`), plus the tokens of every string value in the
//!   message (role, content, name, tool_call_id, ...), plus 1 when the message has a `name`;
//! * 3 tokens priming the reply (`<|start|>assistant<|message|>`).
//!
//! Extensions the cookbook formula does not cover (approximations, documented here):
//!
//! * `content` as an array of parts: the `text` (or `refusal`) of each part is counted; an image part
//!   counts [`IMAGE_PART_TOKENS`] (the fixed cost of a `detail: low` image; high-detail images cost more
//!   and are billed from the seller's reported usage);
//! * `tool_calls` on assistant messages (and legacy `function_call`): the tokens of each call's function
//!   name and arguments string;
//! * tool definitions (`tools`, or legacy `functions`): the cookbook's `num_tokens_for_tools` — per
//!   function `func_init` (7 for o200k_base, 10 for cl100k_base) + tokens of `"{name}:{description}"`
//!   (trailing `.` dropped); if it has properties, +3, then per property +3 + tokens of
//!   `"{key}:{type}:{description}"` and, for an `enum`, −3 + Σ(3 + tokens(item)); +12 once at the end.
//!   Nested object properties are not walked (the cookbook does not either).

use serde_json::Value;

use super::encoding::{count_text, Encoding};

const TOKENS_PER_MESSAGE: usize = 3;
const TOKENS_PER_NAME: usize = 1;
const REPLY_PRIMING: usize = 3;
/// Tokens charged for one image content part (a low-detail image's fixed cost).
pub const IMAGE_PART_TOKENS: usize = 85;

/// Why a chat payload could not be counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatError {
    /// The bytes are not JSON.
    NotJson(String),
    /// `messages` is not a JSON array.
    MessagesNotList,
    /// `messages[i]` is not a JSON object.
    MessageNotObject(usize),
}

impl std::fmt::Display for ChatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatError::NotJson(e) => write!(f, "messages are not valid JSON: {e}"),
            ChatError::MessagesNotList => f.write_str("'messages' must be an array"),
            ChatError::MessageNotObject(i) => write!(f, "'messages[{i}]' must be an object"),
        }
    }
}

impl std::error::Error for ChatError {}

/// Prompt tokens of a JSON array of chat messages (no tools).
pub fn count_chat(enc: Encoding, messages_json: &[u8]) -> Result<usize, ChatError> {
    let value: Value =
        serde_json::from_slice(messages_json).map_err(|e| ChatError::NotJson(e.to_string()))?;
    count_chat_value(enc, &value, None)
}

/// Prompt tokens of parsed `messages`, plus tool definitions when given.
pub fn count_chat_value(
    enc: Encoding,
    messages: &Value,
    tools: Option<&Value>,
) -> Result<usize, ChatError> {
    let list = messages.as_array().ok_or(ChatError::MessagesNotList)?;
    let mut total = REPLY_PRIMING;
    for (i, message) in list.iter().enumerate() {
        let obj = message.as_object().ok_or(ChatError::MessageNotObject(i))?;
        total += TOKENS_PER_MESSAGE;
        for (key, value) in obj {
            total += match (key.as_str(), value) {
                ("name", Value::String(s)) => count_text(enc, s) + TOKENS_PER_NAME,
                (_, Value::String(s)) => count_text(enc, s),
                ("content", Value::Array(parts)) => {
                    parts.iter().map(|p| content_part(enc, p)).sum()
                }
                ("tool_calls", Value::Array(calls)) => calls
                    .iter()
                    .map(|c| c.get("function").map_or(0, |f| function_call(enc, f)))
                    .sum(),
                ("function_call", f @ Value::Object(_)) => function_call(enc, f),
                _ => 0,
            };
        }
    }
    if let Some(tools) = tools.and_then(Value::as_array) {
        total += count_tools(enc, tools);
    }
    Ok(total)
}

fn content_part(enc: Encoding, part: &Value) -> usize {
    match part {
        Value::String(s) => count_text(enc, s),
        Value::Object(obj) => {
            if let Some(Value::String(t)) = obj.get("text").or_else(|| obj.get("refusal")) {
                count_text(enc, t)
            } else if obj.contains_key("image_url") {
                IMAGE_PART_TOKENS
            } else {
                0
            }
        }
        _ => 0,
    }
}

fn function_call(enc: Encoding, f: &Value) -> usize {
    str_field(enc, f, "name") + str_field(enc, f, "arguments")
}

fn str_field(enc: Encoding, v: &Value, key: &str) -> usize {
    v.get(key)
        .and_then(Value::as_str)
        .map_or(0, |s| count_text(enc, s))
}

fn strip_dot(s: &str) -> &str {
    s.strip_suffix('.').unwrap_or(s)
}

/// The cookbook's `num_tokens_for_tools` (see the module docs). Accepts `tools` entries
/// (`{"type": "function", "function": {...}}`) and legacy `functions` entries (the function itself).
pub fn count_tools(enc: Encoding, tools: &[Value]) -> usize {
    const PROP_INIT: usize = 3;
    const PROP_KEY: usize = 3;
    const ENUM_ITEM: usize = 3;
    const FUNC_END: usize = 12;
    let func_init = match enc {
        Encoding::O200kBase => 7,
        Encoding::Cl100kBase => 10,
    };
    if tools.is_empty() {
        return 0;
    }
    let mut total = FUNC_END;
    for tool in tools {
        let function = tool.get("function").unwrap_or(tool);
        let name = function.get("name").and_then(Value::as_str).unwrap_or("");
        let desc = function
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        total += func_init + count_text(enc, &format!("{name}:{}", strip_dot(desc)));
        let props = function
            .get("parameters")
            .and_then(|p| p.get("properties"))
            .and_then(Value::as_object);
        let Some(props) = props.filter(|p| !p.is_empty()) else {
            continue;
        };
        total += PROP_INIT;
        for (key, prop) in props {
            total += PROP_KEY;
            let ty = match prop.get("type") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let pdesc = prop
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Some(items) = prop.get("enum").and_then(Value::as_array) {
                // enum_init is −3: the first item's 3 is not charged.
                total = total.saturating_sub(3);
                for item in items {
                    total += ENUM_ITEM
                        + match item {
                            Value::String(s) => count_text(enc, s),
                            other => count_text(enc, &other.to_string()),
                        };
                }
            }
            total += count_text(enc, &format!("{key}:{ty}:{}", strip_dot(pdesc)));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOKBOOK_MESSAGES: &str = r#"[
      {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
      {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
      {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
      {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
      {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
      {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."}
    ]"#;

    #[test]
    fn cookbook_example_matches_published_api_counts() {
        // Published in the cookbook: 129 for gpt-3.5-turbo / gpt-4, 124 for gpt-4o / gpt-4o-mini.
        assert_eq!(
            count_chat(Encoding::Cl100kBase, COOKBOOK_MESSAGES.as_bytes()),
            Ok(129)
        );
        assert_eq!(
            count_chat(Encoding::O200kBase, COOKBOOK_MESSAGES.as_bytes()),
            Ok(124)
        );
    }

    #[test]
    fn cookbook_tools_example_matches_published_api_counts() {
        let tools: Value = serde_json::from_str(
            r#"[{"type": "function", "function": {"name": "get_current_weather",
                "description": "Get the current weather in a given location",
                "parameters": {"type": "object", "properties": {
                  "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                  "unit": {"type": "string", "description": "The unit of temperature to return", "enum": ["celsius", "fahrenheit"]}},
                "required": ["location"]}}}]"#,
        )
        .unwrap();
        let messages: Value = serde_json::from_str(
            r#"[{"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
                {"role": "user", "content": "What's the weather like in San Francisco?"}]"#,
        )
        .unwrap();
        // Published in the cookbook: 105 for gpt-3.5-turbo / gpt-4, 101 for gpt-4o / gpt-4o-mini.
        assert_eq!(
            count_chat_value(Encoding::Cl100kBase, &messages, Some(&tools)),
            Ok(105)
        );
        assert_eq!(
            count_chat_value(Encoding::O200kBase, &messages, Some(&tools)),
            Ok(101)
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(
            count_chat(Encoding::O200kBase, b"{"),
            Err(ChatError::NotJson(_))
        ));
        assert_eq!(
            count_chat(Encoding::O200kBase, b"{}"),
            Err(ChatError::MessagesNotList)
        );
        assert_eq!(
            count_chat(Encoding::O200kBase, b"[{}, 1]"),
            Err(ChatError::MessageNotObject(1))
        );
    }

    #[test]
    fn parts_and_tool_calls_are_counted() {
        let enc = Encoding::O200kBase;
        let as_string = count_chat(enc, br#"[{"role":"user","content":"hello world"}]"#).unwrap();
        let as_parts = count_chat(
            enc,
            br#"[{"role":"user","content":[{"type":"text","text":"hello world"}]}]"#,
        )
        .unwrap();
        assert_eq!(as_string, as_parts);
        let call = count_chat(
            enc,
            br#"[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}]"#,
        )
        .unwrap();
        let expected = 3
            + 3
            + count_text(enc, "assistant")
            + count_text(enc, "f")
            + count_text(enc, "{\"a\":1}");
        assert_eq!(call, expected);
    }
}
