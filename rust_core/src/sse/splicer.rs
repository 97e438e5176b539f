//! The streaming splicer: upstream SSE bytes in, buyer SSE bytes out.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::capture::{usage_of, usage_of_picked, Texts, ToolCall, Usage, CHOICE};
use super::count::Encoding;
use super::framer::{Frame, Framer};
use super::json::{non_null, offset_in, quote, rewrite_id_model, Pick};
use super::SseError;

const DONE: &[u8] = b"data: [DONE]\n\n";
/// The top-level members of a chunk that [`Splicer`] reads (see [`Chunk`]).
const CHUNK: Pick<6> = Pick(&["choices", "usage", "x_groq", "error", "id", "model"]);

/// Where [`Splicer::usage`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// The upstream reported it (`usage`, or `x_groq.usage`).
    Upstream,
    /// No upstream figure: prompt tokens as set by the caller, completion tokens counted locally.
    Counted,
    /// Nothing seen yet.
    None,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Counted => "counted",
            Self::None => "none",
        }
    }
}

/// Splices one upstream chat-completion stream (or several, see [`Splicer::begin_continuation`]) into
/// the buyer's stream.
///
/// `[DONE]` is only ever written by [`Splicer::finish`] (or [`Splicer::error_event`]): when the upstream
/// sends it, `feed` records it (`saw_done`) and drops everything after it, and the caller decides when
/// to send the last bytes — after settling, as the design requires.
#[derive(Debug)]
pub struct Splicer {
    id_json: String,
    model_json: String,
    include_usage: bool,
    created: i64,
    encoding: Encoding,
    framer: Framer,
    frames: Vec<Frame>,
    texts: Texts,
    upstream_usage: Option<Usage>,
    usage_forwarded: bool,
    prompt_tokens: Option<u64>,
    upstream_error: Option<Value>,
    saw_done: bool,
    finished: bool,
    /// The buyer stream ends with an error chunk (`error_event` or `replace_done_with_error` ran).
    error_sent: bool,
    failed: bool,
    pending: Vec<u8>,
    in_preamble: bool,
    events: u64,
    garbage_events: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Off only in tests, which check the fast path against the general one.
    fast_path: bool,
}

impl Splicer {
    pub fn new(
        request_id: String,
        public_model: String,
        include_usage: bool,
        created: i64,
        max_event_bytes: usize,
        encoding: Encoding,
    ) -> Self {
        Self {
            id_json: quote(&request_id),
            model_json: quote(&public_model),
            include_usage,
            created,
            encoding,
            framer: Framer::new(max_event_bytes),
            frames: Vec::new(),
            texts: Texts::default(),
            upstream_usage: None,
            usage_forwarded: false,
            prompt_tokens: None,
            upstream_error: None,
            saw_done: false,
            finished: false,
            error_sent: false,
            failed: false,
            pending: Vec::new(),
            in_preamble: false,
            events: 0,
            garbage_events: 0,
            bytes_in: 0,
            bytes_out: 0,
            fast_path: true,
        }
    }

    /// This splicer with every event sent down the general (`Map<String, Value>`) path.
    #[cfg(test)]
    pub(crate) fn without_fast_path(mut self) -> Self {
        self.fast_path = false;
        self
    }

    /// Consume upstream bytes (any split) and return the bytes to send to the buyer now.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<u8>, SseError> {
        if self.finished {
            return Err(SseError::Stream(
                "feed() after the buyer stream was finished".into(),
            ));
        }
        self.bytes_in += bytes.len() as u64;
        if self.saw_done {
            return Ok(Vec::new());
        }
        if self.failed {
            return Err(SseError::Stream(
                "feed() after the upstream stream failed".into(),
            ));
        }
        let mut frames = std::mem::take(&mut self.frames);
        let fed = self.framer.feed(bytes, &mut frames);
        let out = self.process(&mut frames);
        self.frames = frames;
        match fed {
            // Bytes after `[DONE]` are ignored, even oversized ones.
            Err(e) if !self.saw_done => {
                // Keep what was already spliced: `finish`/`error_event` send it first.
                self.failed = true;
                self.pending = out;
                Err(e)
            }
            _ => Ok(self.count_out(out)),
        }
    }

    /// End of the upstream stream: flush, inject usage if the buyer asked and nobody sent it, and end
    /// with exactly one `data: [DONE]`. A second call returns nothing.
    pub fn finish(&mut self) -> Result<Vec<u8>, SseError> {
        if self.finished {
            return Ok(Vec::new());
        }
        let mut out = std::mem::take(&mut self.pending);
        if !self.saw_done && !self.failed {
            let mut frames = std::mem::take(&mut self.frames);
            self.framer.finish(&mut frames);
            out.extend(self.process(&mut frames));
            self.frames = frames;
        }
        if self.include_usage && !self.usage_forwarded {
            self.write_usage_chunk(&mut out);
        }
        out.extend_from_slice(DONE);
        self.finished = true;
        Ok(self.count_out(out))
    }

    /// An OpenAI-style in-stream error chunk followed by `data: [DONE]`: ends the buyer stream. Empty if
    /// the stream was already finished.
    pub fn error_event(&mut self, message: &str, code: Option<&str>) -> Vec<u8> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        self.error_sent = true;
        let code = code.map_or(Value::Null, |c| Value::String(c.to_owned()));
        let mut out = std::mem::take(&mut self.pending);
        self.write_error_chunk(message, &code, &mut out);
        out.extend_from_slice(DONE);
        self.count_out(out)
    }

    /// An error chunk and `data: [DONE]`, to send **in place of** the `data: [DONE]` that ended
    /// [`finish`](Self::finish)'s output, for a caller that held those bytes back and then could not
    /// complete the stream (the gateway sends the last `[DONE]` only once the trade is committed; when
    /// that fails, the buyer must hear so rather than see a clean end). Empty unless the stream was
    /// finished by `finish` (not by an error event), and at most once.
    pub fn replace_done_with_error(&mut self, message: &str, code: Option<&str>) -> Vec<u8> {
        if !self.finished || self.error_sent {
            return Vec::new();
        }
        self.error_sent = true;
        let code = code.map_or(Value::Null, |c| Value::String(c.to_owned()));
        let mut out = Vec::new();
        self.write_error_chunk(message, &code, &mut out);
        out.extend_from_slice(DONE);
        // The `[DONE]` it replaces was counted when `finish` returned it.
        self.bytes_out = self.bytes_out.saturating_sub(DONE.len() as u64);
        self.count_out(out)
    }

    /// The next bytes fed come from a new upstream stream that continues this one: its framing starts
    /// fresh, its role-only preamble delta is dropped, and ids/models/choice indices keep being handled
    /// as before. Usage stays "last one wins", so the caller owns how to bill a spliced stream.
    pub fn begin_continuation(&mut self) -> Result<(), SseError> {
        if self.finished || self.failed {
            return Err(SseError::Stream(
                "begin_continuation() after the buyer stream was finished or failed".into(),
            ));
        }
        self.framer.reset();
        self.saw_done = false;
        self.in_preamble = true;
        Ok(())
    }

    /// Prompt tokens counted by the gateway, used when the upstream reports no usage.
    pub fn set_prompt_tokens(&mut self, n: u64) {
        self.prompt_tokens = Some(n);
    }

    fn process(&mut self, frames: &mut Vec<Frame>) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames.drain(..) {
            if self.saw_done {
                break;
            }
            match frame {
                Frame::Comment(line) => {
                    out.extend_from_slice(&line);
                    out.extend_from_slice(b"\n\n");
                }
                Frame::Event { kind, data } => self.event(&kind, &data, &mut out),
            }
        }
        out
    }

    fn count_out(&mut self, out: Vec<u8>) -> Vec<u8> {
        self.bytes_out += out.len() as u64;
        out
    }

    fn event(&mut self, kind: &[u8], data: &[u8], out: &mut Vec<u8>) {
        let trimmed = data.trim_ascii();
        if trimmed == b"[DONE]" {
            self.saw_done = true;
            return;
        }
        if trimmed.is_empty() {
            return;
        }
        if kind == b"error" {
            self.events += 1;
            let parsed: Option<Map<String, Value>> = serde_json::from_slice(data).ok();
            let err = match &parsed {
                Some(obj) => obj
                    .get("error")
                    .cloned()
                    .unwrap_or_else(|| Value::Object(obj.clone())),
                None => Value::String(String::from_utf8_lossy(data).into_owned()),
            };
            self.upstream_error_chunk(err, out);
            return;
        }
        if let Some(chunk) = Chunk::pick(data).filter(|_| self.fast_path) {
            self.chunk(chunk, out);
            return;
        }
        let parsed: Option<Map<String, Value>> = serde_json::from_slice(data).ok();
        let Some(obj) = parsed else {
            self.garbage_events += 1;
            return;
        };
        self.events += 1;
        if let Some(u) = usage_of(&obj) {
            self.upstream_usage = Some(u);
        }
        self.texts.absorb(&obj, "delta");
        if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
            self.upstream_error_chunk(err.clone(), out);
            return;
        }
        let choices = obj.get("choices").and_then(Value::as_array);
        let has_usage = obj.get("usage").is_some_and(|u| !u.is_null());
        if !self.forward(choices, has_usage, choices.map(Vec::len)) {
            return;
        }
        let Some(body) = rewrite_id_model(data, &self.id_json, &self.model_json) else {
            self.garbage_events += 1;
            return;
        };
        self.usage_forwarded |= has_usage;
        write_data(&body, out);
    }

    /// The fast path of [`Splicer::event`], with the same effects (see [`Chunk::pick`]).
    fn chunk(&mut self, c: Chunk<'_>, out: &mut Vec<u8>) {
        let parse = |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).ok();
        // A picked member is valid JSON already: present and not null is all `forward` needs to know.
        let has_usage = non_null(c.usage).is_some();
        // `choices` as an array of objects read member by member (the common case), else as a `Value`.
        let picked = c.choices.and_then(|r| CHOICE.array_of_objects(r.get()));
        let choices_value = match picked {
            Some(_) => None,
            None => c.choices.and_then(parse),
        };
        let choices_array = choices_value.as_ref().and_then(Value::as_array);
        self.events += 1;
        if let Some(u) = usage_of_picked(c.usage, c.x_groq) {
            self.upstream_usage = Some(u);
        }
        match (&picked, choices_array) {
            (Some(p), _) => self.texts.absorb_picked(p),
            (None, Some(a)) => self.texts.absorb_choices(a, "delta"),
            (None, None) => {}
        }
        if let Some(err) = non_null(c.error).and_then(parse) {
            self.upstream_error_chunk(err, out);
            return;
        }
        let len = picked
            .as_ref()
            .map(Vec::len)
            .or(choices_array.map(Vec::len));
        let forward = if self.in_preamble {
            // Rare (the start of a continuation): read the choices as a `Value` for the check.
            let value = c.choices.and_then(parse);
            self.forward(value.as_ref().and_then(Value::as_array), has_usage, len)
        } else {
            self.forward(None, has_usage, len)
        };
        if !forward {
            return;
        }
        self.usage_forwarded |= has_usage;
        c.write_rewritten(&self.id_json, &self.model_json, out);
    }

    /// Whether a parsed chunk goes to the buyer: not a continuation's role preamble, and not a
    /// usage-only chunk the buyer did not ask for. `choices` is only read while in the preamble.
    fn forward(
        &mut self,
        choices: Option<&Vec<Value>>,
        has_usage: bool,
        len: Option<usize>,
    ) -> bool {
        if self.in_preamble {
            if choices.is_some_and(|c| is_role_preamble(c)) && !has_usage {
                return false;
            }
            self.in_preamble = false;
        }
        !(has_usage && len == Some(0) && !self.include_usage)
    }

    fn upstream_error_chunk(&mut self, err: Value, out: &mut Vec<u8>) {
        let message = match err.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => match &err {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        };
        let code = match err.get("code") {
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(Value::Number(n)) => Value::String(n.to_string()),
            _ => Value::Null,
        };
        self.write_error_chunk(&message, &code, out);
        self.upstream_error = Some(err);
    }

    fn write_error_chunk(&self, message: &str, code: &Value, out: &mut Vec<u8>) {
        let chunk = format!(
            r#"{{"id":{},"object":"chat.completion.chunk","created":{},"model":{},"choices":[{{"index":0,"delta":{{}},"finish_reason":"error"}}],"error":{{"message":{},"type":"upstream_error","param":null,"code":{}}}}}"#,
            self.id_json,
            self.created,
            self.model_json,
            quote(message),
            code
        );
        write_data(chunk.as_bytes(), out);
    }

    fn write_usage_chunk(&self, out: &mut Vec<u8>) {
        let source = self.usage_source();
        let Some(u) = self.usage() else { return };
        let chunk = format!(
            r#"{{"id":{},"object":"chat.completion.chunk","created":{},"model":{},"choices":[],"usage":{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}},"dragonfly":{{"usage_source":"{}"}}}}"#,
            self.id_json,
            self.created,
            self.model_json,
            u.prompt_tokens,
            u.completion_tokens,
            u.total_tokens,
            source.as_str()
        );
        write_data(chunk.as_bytes(), out);
    }

    /// Usage: the upstream's if it sent any, else a local count (see [`UsageSource`]).
    pub fn usage(&self) -> Option<Usage> {
        if let Some(u) = &self.upstream_usage {
            return Some(u.clone());
        }
        if self.usage_source() == UsageSource::None {
            return None;
        }
        let (completion, reasoning) = self.texts.count(self.encoding);
        Some(Usage::counted(
            self.prompt_tokens.unwrap_or(0),
            completion,
            reasoning,
        ))
    }

    pub fn usage_source(&self) -> UsageSource {
        if self.upstream_usage.is_some() {
            UsageSource::Upstream
        } else if self.events > 0 || self.prompt_tokens.is_some() || self.finished {
            UsageSource::Counted
        } else {
            UsageSource::None
        }
    }

    pub fn counted_completion_tokens(&self) -> u64 {
        self.texts.count(self.encoding).0
    }
    pub fn finish_reason(&self) -> Option<&str> {
        self.texts.finish_reason.as_deref()
    }
    pub fn content_so_far(&self) -> &str {
        self.texts.content()
    }
    pub fn reasoning_so_far(&self) -> &str {
        self.texts.reasoning()
    }
    pub fn tool_calls(&self) -> Vec<ToolCall> {
        self.texts.tool_calls()
    }
    pub fn tool_call_open(&self) -> bool {
        self.texts.tool_call_open()
    }
    pub fn upstream_error(&self) -> Option<&Value> {
        self.upstream_error.as_ref()
    }
    pub fn saw_done(&self) -> bool {
        self.saw_done
    }
    pub fn events(&self) -> u64 {
        self.events
    }
    pub fn garbage_events(&self) -> u64 {
        self.garbage_events
    }
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }
}

/// The members of one event's JSON that the splicer reads, unparsed, with the text they came from.
struct Chunk<'a> {
    text: &'a str,
    choices: Option<&'a RawValue>,
    usage: Option<&'a RawValue>,
    x_groq: Option<&'a RawValue>,
    error: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    model: Option<&'a RawValue>,
}

impl<'a> Chunk<'a> {
    /// The per-event fast path: `data` as one JSON object whose other members are syntax-checked and
    /// skipped, not built (see [`Pick`]). `None` sends the event down the general path, which parses it
    /// into a `Map<String, Value>`: when it is not UTF-8 or not an object, repeats a member read here,
    /// or has a `\ud…` escape (serde_json refuses a lone surrogate only where it builds the string, so
    /// such events keep the general path's verdict). What the fast path accepts, the general path would
    /// too, with the same effects.
    fn pick(data: &'a [u8]) -> Option<Chunk<'a>> {
        if memchr::memmem::find(data, b"\\ud").is_some()
            || memchr::memmem::find(data, b"\\uD").is_some()
        {
            return None;
        }
        let text = std::str::from_utf8(data).ok()?;
        let [choices, usage, x_groq, error, id, model] = CHUNK.object(text)?;
        Some(Chunk {
            text,
            choices,
            usage,
            x_groq,
            error,
            id,
            model,
        })
    }

    /// `data: {the JSON with id and model replaced}\n\n`, like `rewrite_id_model` + `write_data`.
    fn write_rewritten(&self, id_json: &str, model_json: &str, out: &mut Vec<u8>) {
        let mut spans: [Option<(usize, usize, &str)>; 2] = [None, None];
        for (slot, raw, new) in [(0, self.id, id_json), (1, self.model, model_json)] {
            if let Some(raw) = raw {
                match offset_in(self.text, raw.get()) {
                    Some(start) => spans[slot] = Some((start, start + raw.get().len(), new)),
                    None => return self.write_rewritten_slowly(id_json, model_json, out),
                }
            }
        }
        if memchr::memchr(b'\n', self.text.as_bytes()).is_some() {
            return self.write_rewritten_slowly(id_json, model_json, out);
        }
        if let [Some(a), Some(b)] = spans {
            if b.0 < a.0 {
                spans = [Some(b), Some(a)];
            }
        }
        let bytes = self.text.as_bytes();
        out.reserve(bytes.len() + id_json.len() + model_json.len() + 8);
        out.extend_from_slice(b"data: ");
        let mut copied = 0;
        for (start, end, new) in spans.into_iter().flatten() {
            out.extend_from_slice(bytes.get(copied..start).unwrap_or_default());
            out.extend_from_slice(new.as_bytes());
            copied = end;
        }
        out.extend_from_slice(bytes.get(copied..).unwrap_or_default());
        out.extend_from_slice(b"\n\n");
    }

    #[cold]
    fn write_rewritten_slowly(&self, id_json: &str, model_json: &str, out: &mut Vec<u8>) {
        match rewrite_id_model(self.text.as_bytes(), id_json, model_json) {
            Some(body) => write_data(&body, out),
            None => write_data(self.text.as_bytes(), out),
        }
    }
}

/// `data: …\n\n`, one `data:` line per line of the payload (JSON may legally span lines).
fn write_data(payload: &[u8], out: &mut Vec<u8>) {
    if memchr::memchr(b'\n', payload).is_none() {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\n\n");
        return;
    }
    for (i, line) in payload.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"\n\n");
}

/// Every choice's delta carries nothing but the role (and an empty content/refusal).
fn is_role_preamble(choices: &[Value]) -> bool {
    !choices.is_empty()
        && choices.iter().all(|c| {
            c.get("finish_reason").is_none_or(Value::is_null)
                && c.get("delta").and_then(Value::as_object).is_some_and(|d| {
                    d.contains_key("role")
                        && d.iter().all(|(k, v)| {
                            k == "role"
                                || v.is_null()
                                || v.as_str() == Some("")
                                || v.as_array().is_some_and(Vec::is_empty)
                        })
                })
        })
}
