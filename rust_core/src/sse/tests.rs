//! Behaviour of the splicer and the body rewriter, end to end on bytes.

use super::*;

const CHUNK: &str = r#"{"id":"up-1","object":"chat.completion.chunk","created":1,"model":"up/model","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;

fn splicer(include_usage: bool) -> Splicer {
    Splicer::new(
        "req-1".into(),
        "public".into(),
        include_usage,
        42,
        1 << 20,
        Encoding::O200kBase,
    )
}

fn run(s: &mut Splicer, input: &[u8]) -> String {
    let mut out = s.feed(input).unwrap();
    out.extend(s.finish().unwrap());
    String::from_utf8(out).unwrap()
}

fn data_events(out: &str) -> Vec<&str> {
    out.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect()
}

#[test]
fn rewrites_id_and_model_and_ends_with_one_done() {
    let mut s = splicer(false);
    let out = run(
        &mut s,
        format!("data: {CHUNK}\n\ndata: [DONE]\n\n").as_bytes(),
    );
    let ev = data_events(&out);
    assert_eq!(ev.len(), 2);
    assert_eq!(
        ev[0],
        CHUNK
            .replace("\"up-1\"", "\"req-1\"")
            .replace("\"up/model\"", "\"public\"")
    );
    assert_eq!(ev[1], "[DONE]");
    assert!(s.saw_done());
    assert_eq!(s.content_so_far(), "Hi");
    assert_eq!(s.events(), 1);
    assert_eq!(s.bytes_out(), out.len() as u64);
}

#[test]
fn integers_beyond_u64_pass_byte_identical() {
    let big =
        r#"{"id":"x","model":"m","seed":2853637492034609700123456789,"f":1.0e400,"choices":[]}"#;
    let mut s = splicer(true);
    let out = run(&mut s, format!("data: {big}\n\n").as_bytes());
    assert!(
        out.contains(r#""seed":2853637492034609700123456789,"f":1.0e400,"#),
        "{out}"
    );
}

#[test]
fn crlf_and_cr_framed_input_gives_lf_framed_output() {
    let lf = run(&mut splicer(false), format!("data: {CHUNK}\n\n").as_bytes());
    let crlf = run(
        &mut splicer(false),
        format!("data: {CHUNK}\r\n\r\n").as_bytes(),
    );
    let cr = run(&mut splicer(false), format!("data: {CHUNK}\r\r").as_bytes());
    assert_eq!(lf, crlf);
    assert_eq!(lf, cr);
    assert!(!lf.contains('\r'));
}

#[test]
fn comments_pass_through_normalised_and_immediately() {
    let mut s = splicer(false);
    assert_eq!(
        s.feed(b": OPENROUTER PROCESSING\r\n").unwrap(),
        b": OPENROUTER PROCESSING\n\n"
    );
    assert_eq!(s.feed(b":\n").unwrap(), b":\n\n");
}

#[test]
fn garbage_is_skipped_and_counted() {
    let mut s = splicer(false);
    let out = run(
        &mut s,
        format!("data: not json\n\ndata: [1,2]\n\ndata: {CHUNK}\n\n").as_bytes(),
    );
    assert_eq!(s.garbage_events(), 2);
    assert_eq!(s.events(), 1);
    assert_eq!(data_events(&out).len(), 2);
}

#[test]
fn missing_done_still_ends_with_done_and_flushes_unterminated_event() {
    let mut s = splicer(false);
    let out = run(&mut s, format!("data: {CHUNK}").as_bytes());
    assert!(!s.saw_done());
    assert_eq!(data_events(&out).len(), 2);
    assert!(out.ends_with("data: [DONE]\n\n"));
    assert_eq!(s.finish().unwrap(), b"");
}

#[test]
fn anything_after_done_is_ignored() {
    let mut s = splicer(false);
    let out = run(
        &mut s,
        format!("data: [DONE]\n\ndata: {CHUNK}\n\n: late\n\n").as_bytes(),
    );
    assert_eq!(out, "data: [DONE]\n\n");
    assert_eq!(s.events(), 0);
}

#[test]
fn usage_injected_when_asked_and_absent() {
    let mut s = splicer(true);
    s.set_prompt_tokens(7);
    let out = run(
        &mut s,
        format!("data: {CHUNK}\n\ndata: [DONE]\n\n").as_bytes(),
    );
    let ev = data_events(&out);
    assert_eq!(ev.len(), 3);
    let usage: serde_json::Value = serde_json::from_str(ev[1]).unwrap();
    assert_eq!(usage["id"], "req-1");
    assert_eq!(usage["created"], 42);
    assert_eq!(usage["usage"]["prompt_tokens"], 7);
    assert_eq!(usage["dragonfly"]["usage_source"], "counted");
    assert_eq!(ev[2], "[DONE]");
    assert_eq!(s.usage_source(), UsageSource::Counted);
    assert_eq!(s.usage().unwrap().prompt_tokens, 7);
}

#[test]
fn usage_only_chunk_dropped_when_not_asked_but_captured() {
    let usage = r#"{"id":"u","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":4}}}"#;
    let input = format!("data: {CHUNK}\n\ndata: {usage}\n\ndata: [DONE]\n\n");
    let mut s = splicer(false);
    let out = run(&mut s, input.as_bytes());
    assert_eq!(data_events(&out).len(), 2);
    let u = s.usage().unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.completion_tokens,
            u.total_tokens,
            u.cached_tokens,
            u.reasoning_tokens
        ),
        (3, 5, 8, 2, 4)
    );
    assert_eq!(s.usage_source(), UsageSource::Upstream);
    // Asked: forwarded, and nothing injected.
    let mut s = splicer(true);
    let out = run(&mut s, input.as_bytes());
    assert_eq!(data_events(&out).len(), 3);
    assert!(!out.contains("dragonfly"));
}

#[test]
fn running_usage_last_one_wins_and_x_groq_usage_is_read() {
    let a = r#"{"id":"a","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;
    let b =
        r#"{"id":"a","choices":[],"x_groq":{"usage":{"prompt_tokens":9,"completion_tokens":2}}}"#;
    let mut s = splicer(true);
    run(&mut s, format!("data: {a}\n\ndata: {b}\n\n").as_bytes());
    assert_eq!(s.usage().unwrap().prompt_tokens, 9);
    assert_eq!(s.usage().unwrap().total_tokens, 11);
}

#[test]
fn x_groq_only_usage_is_injected_top_level_when_asked() {
    let b = r#"{"id":"a","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"x_groq":{"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}}"#;
    let mut s = splicer(true);
    let out = run(&mut s, format!("data: {b}\n\n").as_bytes());
    assert!(out.contains(r#""usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11},"dragonfly":{"usage_source":"upstream"}"#), "{out}");
}

#[test]
fn error_event_and_top_level_error_become_openai_error_chunks() {
    let mut s = splicer(false);
    let out = run(
        &mut s,
        b"event: error\ndata: {\"error\":{\"message\":\"boom\",\"code\":\"tool_use_failed\",\"status_code\":400}}\n\n",
    );
    let ev = data_events(&out);
    let chunk: serde_json::Value = serde_json::from_str(ev[0]).unwrap();
    assert_eq!(chunk["error"]["message"], "boom");
    assert_eq!(chunk["error"]["code"], "tool_use_failed");
    assert_eq!(chunk["error"]["type"], "upstream_error");
    assert_eq!(chunk["choices"][0]["finish_reason"], "error");
    assert_eq!(s.upstream_error().unwrap()["status_code"], 400);
    assert_eq!(ev[1], "[DONE]");

    let mut s = splicer(false);
    let out = run(&mut s, b"data: {\"id\":\"x\",\"error\":{\"code\":400,\"message\":\"Token limit\"},\"usage\":{\"prompt_tokens\":4}}\n\n");
    let chunk: serde_json::Value = serde_json::from_str(data_events(&out)[0]).unwrap();
    assert_eq!(chunk["error"]["code"], "400");
    assert_eq!(s.usage().unwrap().prompt_tokens, 4);
}

#[test]
fn error_event_ends_the_stream_exactly_once() {
    let mut s = splicer(false);
    s.feed(format!("data: {CHUNK}\n\n").as_bytes()).unwrap();
    let out =
        String::from_utf8(s.error_event("seller went away", Some("upstream_disconnect"))).unwrap();
    let ev = data_events(&out);
    let chunk: serde_json::Value = serde_json::from_str(ev[0]).unwrap();
    assert_eq!(chunk["id"], "req-1");
    assert_eq!(chunk["model"], "public");
    assert_eq!(chunk["error"]["param"], serde_json::Value::Null);
    assert_eq!(ev[1], "[DONE]");
    assert!(s.error_event("again", None).is_empty());
    assert!(s.finish().unwrap().is_empty());
    assert!(matches!(s.feed(b"data: x\n\n"), Err(SseError::Stream(_))));
}

#[test]
fn replace_done_with_error_rewrites_the_end_of_a_finished_stream_once() {
    let mut s = splicer(true);
    s.feed(format!("data: {CHUNK}\n\n").as_bytes()).unwrap();
    assert!(s.replace_done_with_error("early", None).is_empty()); // not finished yet
    let tail = s.finish().unwrap();
    assert!(tail.ends_with(b"data: [DONE]\n\n"));
    let counted = s.bytes_out();
    let end = s.replace_done_with_error("could not record", Some("service_unavailable"));
    let out = String::from_utf8(end.clone()).unwrap();
    let ev = data_events(&out);
    let chunk: serde_json::Value = serde_json::from_str(ev[0]).unwrap();
    assert_eq!(chunk["id"], "req-1");
    assert_eq!(chunk["error"]["message"], "could not record");
    assert_eq!(chunk["error"]["code"], "service_unavailable");
    assert_eq!(ev[1], "[DONE]");
    assert_eq!(ev.len(), 2);
    // What the buyer gets is finish()'s bytes without their [DONE], then these: counted once.
    assert_eq!(s.bytes_out(), counted - 14 + end.len() as u64);
    assert!(s.replace_done_with_error("again", None).is_empty());
}

#[test]
fn replace_done_with_error_leaves_a_stream_that_ended_with_an_error_alone() {
    let mut s = splicer(false);
    s.feed(format!("data: {CHUNK}\n\n").as_bytes()).unwrap();
    assert!(!s.error_event("seller went away", None).is_empty());
    assert!(s
        .replace_done_with_error("could not record", None)
        .is_empty());
}

#[test]
fn too_large_event_is_an_error_and_keeps_earlier_output() {
    let mut s = Splicer::new("r".into(), "m".into(), false, 0, 300, Encoding::O200kBase);
    let huge = format!("data: {CHUNK}\n\ndata: {}\n\n", "x".repeat(400));
    assert!(matches!(
        s.feed(huge.as_bytes()),
        Err(SseError::EventTooLarge { limit: 300, .. })
    ));
    assert!(matches!(s.feed(b"\n"), Err(SseError::Stream(_))));
    let out = String::from_utf8(s.error_event("too large", None)).unwrap();
    assert_eq!(data_events(&out).len(), 3);
}

#[test]
fn multi_line_data_json_is_reframed_as_multiple_data_lines() {
    let mut s = splicer(false);
    let out = run(&mut s, b"data: {\"id\":\"a\",\ndata: \"model\":\"b\"}\n\n");
    assert!(
        out.starts_with("data: {\"id\":\"req-1\",\ndata: \"model\":\"public\"}\n\n"),
        "{out}"
    );
}

#[test]
fn every_split_gives_the_same_output() {
    let input = format!(
        ": c\r\n\r\ndata: {CHUNK}\r\n\r\ndata: {}\r\n\r\nevent: error\ndata: {{\"error\":{{\"message\":\"é\"}}}}\r\rdata: [DONE]\n\n",
        CHUNK.replace("Hi", "h\u{e9}\u{1F600}")
    );
    let bytes = input.as_bytes();
    let whole = run(&mut splicer(true), bytes);
    for cut in 0..=bytes.len() {
        let mut s = splicer(true);
        let mut out = s.feed(&bytes[..cut]).unwrap();
        out.extend(s.feed(&bytes[cut..]).unwrap());
        out.extend(s.finish().unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), whole, "cut at {cut}");
        assert_eq!(s.content_so_far(), "Hih\u{e9}\u{1F600}");
    }
}

#[test]
fn deltas_are_captured_per_kind() {
    let chunks = [
        r#"{"choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"think","reasoning":"think"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":[{"type":"text","text":"A"},{"type":"thinking","thinking":[{"type":"text","text":"!"}]}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
    ];
    let mut s = splicer(false);
    for c in chunks {
        s.feed(format!("data: {c}\n\n").as_bytes()).unwrap();
    }
    assert_eq!(s.content_so_far(), "A");
    assert_eq!(s.reasoning_so_far(), "think!");
    assert!(s.tool_call_open());
    s.feed(br#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}"#).unwrap();
    s.feed(b"\n\n").unwrap();
    assert!(!s.tool_call_open());
    let calls = s.tool_calls();
    assert_eq!(calls[0].arguments, "{\"a\":1}");
    assert_eq!(calls[0].name.as_deref(), Some("f"));
    assert_eq!(s.finish_reason(), Some("tool_calls"));
    assert!(s.counted_completion_tokens() > 0);
}

#[test]
fn continuation_drops_role_preamble_and_keeps_rewriting() {
    let mut s = splicer(false);
    s.feed(format!("data: {CHUNK}\n\ndata: {{\"id\":\"x\",\"choi").as_bytes())
        .unwrap();
    s.begin_continuation().unwrap();
    let role = r#"{"id":"up-2","model":"up/model","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
    let out = run(
        &mut s,
        format!(
            "data: {role}\n\ndata: {}\n\ndata: [DONE]\n\n",
            CHUNK.replace("Hi", " there")
        )
        .as_bytes(),
    );
    let ev = data_events(&out);
    assert_eq!(ev.len(), 2, "{out}");
    assert!(ev[0].starts_with(r#"{"id":"req-1","#));
    assert_eq!(s.content_so_far(), "Hi there");
}

#[test]
fn completion_body_rewritten_with_padding_and_big_ints() {
    let body = b"\n   \n{\"id\":\"x\",\"model\":\"m\",\"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"seed\": 9949578379265081000,\"message\":{\"role\":\"assistant\",\"content\":\"4242\",\"tool_calls\":[{\"id\":\"t\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}],\"usage\":{\"prompt_tokens\":44,\"completion_tokens\":23,\"total_tokens\":67,\"cached_tokens\":5}}\n";
    let c = rewrite_completion(body, "req", "pub", Encoding::O200kBase).unwrap();
    let text = String::from_utf8(c.body.clone()).unwrap();
    assert!(text.starts_with("{\"id\":\"req\",\"model\":\"pub\","));
    assert!(text.contains("\"seed\": 9949578379265081000,"));
    assert!(text.ends_with("}\n"));
    assert_eq!(c.finish_reason.as_deref(), Some("stop"));
    assert_eq!(c.content, "4242");
    assert_eq!(c.tool_calls[0].arguments, "{}");
    assert_eq!(
        c.usage.as_ref().map(|u| (u.total_tokens, u.cached_tokens)),
        Some((67, 5))
    );
    assert!(c.counted_completion_tokens > 0);
    assert!(c.upstream_error.is_none());
}

#[test]
fn completion_error_envelope_and_bad_bodies() {
    let c = rewrite_completion(
        b"{\"error\":{\"message\":\"nope\",\"code\":\"model_not_found\"}}",
        "r",
        "m",
        Encoding::Cl100kBase,
    )
    .unwrap();
    assert_eq!(c.upstream_error.unwrap()["code"], "model_not_found");
    for bad in [&b""[..], b"   ", b"[1]", b"{\"a\":", b"\xff"] {
        assert!(matches!(
            rewrite_completion(bad, "r", "m", Encoding::O200kBase),
            Err(SseError::InvalidInput(_))
        ));
    }
}

/// The per-event fast path (members picked from the raw JSON) against the general path (the whole event
/// parsed into a `Map<String, Value>`): same bytes out, same captured state, on events built from
/// awkward members — repeated and escaped keys, lone and paired surrogate escapes, non-object choices and
/// deltas, array content, tool calls, Groq usage, error members, newlines inside the JSON, odd ids.
#[test]
fn fast_path_agrees_with_the_general_path() {
    const MEMBERS: &[&str] = &[
        r#""id":"up-1""#,
        r#""id":{"nested":["}"]}"#,
        r#""\u0069d":7"#,
        r#""model":"m""#,
        r#""model" : null"#,
        r#""object":"chat.completion.chunk""#,
        r#""created":123456789012345678901234567890"#,
        r#""choices":[{"index":0,"delta":{"content":"Hi ✓"},"finish_reason":null}]"#,
        r#""choices":[{"index":1,"delta":{"role":"assistant","content":""}}]"#,
        r#""choices":[{"delta":{"content":"a\"b\\c\u00e9"},"finish_reason":"stop"}]"#,
        r#""choices":[{"index":0,"delta":{"content":[{"type":"text","text":"p"},{"type":"thinking","thinking":[{"type":"text","text":"t"}]}]}}]"#,
        r#""choices":[{"index":0,"delta":{"reasoning_content":"r1","reasoning":"r2"}}]"#,
        r#""choices":[{"index":0,"delta":{"reasoning":"only"}}]"#,
        r#""choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{\"a\""}}]}}]"#,
        r#""choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]"#,
        r#""choices":[{"index":0,"delta":{"content":"x","content":"y"}}]"#,
        r#""choices":[{"index":0,"index":2,"delta":{"content":"z"}}]"#,
        r#""choices":[1,{"delta":{"content":"after a number"}}]"#,
        r#""choices":[{"index":0,"delta":"not an object"}]"#,
        r#""choices":[{"index":"0","delta":{"content":"string index"}}]"#,
        r#""choices":[{"index":-1,"delta":{"content":"negative index"}}]"#,
        r#""choices":{"not":"an array"}"#,
        r#""choices":[]"#,
        r#""choices":[{"index":0,"delta":{"content":"\ud83d\ude00 pair"}}]"#,
        r#""x":"\ud800 lone""#,
        r#""usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}"#,
        r#""usage":null"#,
        r#""usage":5"#,
        r#""x_groq":{"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        r#""error":null"#,
        r#""error":{"message":"boom","code":429}"#,
        "\"multi\":\n[1,\n2]",
        r#""\u0063hoices":[{"delta":{"content":"escaped key"}}]"#,
        r#""deep":{"a":[{"b":[{"c":"]}"}]}]}"#,
    ];
    let mut state = 0x5eed_u64;
    let mut rng = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (state ^ (state >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for case in 0..4000 {
        let n = (rng() % 5) as usize;
        let members: Vec<&str> = (0..n)
            .map(|_| MEMBERS[(rng() % MEMBERS.len() as u64) as usize])
            .collect();
        let mut stream = String::new();
        for k in 0..3 {
            let mut m = members.clone();
            m.rotate_left(k % members.len().max(1));
            stream.push_str(&format!("data: {{{}}}\n\n", m.join(",")));
        }
        if case % 7 == 0 {
            stream.push_str("data: not json\n\n");
        }
        let include_usage = case % 2 == 0;
        let mut fast = splicer(include_usage);
        let mut general = splicer(include_usage).without_fast_path();
        if case % 5 == 0 {
            fast.begin_continuation().unwrap();
            general.begin_continuation().unwrap();
        }
        let a = run(&mut fast, stream.as_bytes());
        let b = run(&mut general, stream.as_bytes());
        assert_eq!(a, b, "{stream}");
        assert_eq!(fast.usage(), general.usage(), "{stream}");
        assert_eq!(fast.usage_source(), general.usage_source());
        assert_eq!(fast.content_so_far(), general.content_so_far(), "{stream}");
        assert_eq!(fast.reasoning_so_far(), general.reasoning_so_far());
        assert_eq!(fast.tool_calls(), general.tool_calls(), "{stream}");
        assert_eq!(fast.finish_reason(), general.finish_reason());
        assert_eq!(fast.upstream_error(), general.upstream_error());
        assert_eq!(
            (fast.events(), fast.garbage_events()),
            (general.events(), general.garbage_events()),
            "{stream}"
        );
        assert_eq!(
            fast.counted_completion_tokens(),
            general.counted_completion_tokens()
        );
    }
}
