//! Pure-Rust `Splicer` timing on a realistic stream: 1,000 content events of ~20-byte deltas (OpenAI
//! chunk shape), fed in network-sized pieces and one event per call. Run:
//! `cargo bench -p dragonfly-core --bench splice`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use dragonfly_core::sse::{Encoding, Splicer};

/// The same stream as `benchmarks/micro/bench_sse.py` builds.
pub fn stream(events: usize) -> (Vec<u8>, Vec<usize>) {
    let head = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":"#;
    let words = [
        "The quick brown fox ",
        "jumps over the lazy ",
        "dog, and then it run",
        "s back home again. ",
        "Ünïcödé → 東京 ok! ",
    ];
    let mut out = Vec::new();
    let mut ends = Vec::new();
    let mut push = |out: &mut Vec<u8>, delta: &str, finish: &str| {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(delta.as_bytes());
        out.extend_from_slice(br#","logprobs":null,"finish_reason":"#);
        out.extend_from_slice(finish.as_bytes());
        out.extend_from_slice(b"}]}\n\n");
        ends.push(out.len());
    };
    push(
        &mut out,
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
    );
    for i in 0..events {
        let w = words[i % words.len()];
        push(&mut out, &format!(r#"{{"content":"{w}"}}"#), "null");
    }
    push(&mut out, "{}", "\"stop\"");
    out.extend_from_slice(br#"data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":1000,"total_tokens":1019,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#);
    out.extend_from_slice(b"\n\n");
    ends.push(out.len());
    out.extend_from_slice(b"data: [DONE]\n\n");
    ends.push(out.len());
    (out, ends)
}

/// Splice the whole stream; with `count`, also the local completion-token count (read once at the end).
#[inline(never)]
fn splice(pieces: &[&[u8]], count: bool) -> usize {
    let mut s = Splicer::new(
        "chatcmpl-dragonfly-0001".into(),
        "gpt-4o".into(),
        true,
        1_741_569_952,
        1 << 20,
        Encoding::O200kBase,
    );
    let mut n = 0;
    for p in pieces {
        n += s.feed(p).unwrap().len();
    }
    n += s.finish().unwrap().len();
    if count {
        n += s.counted_completion_tokens() as usize;
    }
    n
}

fn main() {
    println!("{}", common::machine());
    // Build the tokenizer (lazy, once per process) outside the measurement.
    dragonfly_core::tokens::count_text(Encoding::O200kBase, "warm up");
    let events = 1_000;
    let (body, ends) = stream(events);
    let total_events = ends.len();
    let by_event: Vec<&[u8]> = std::iter::once(0)
        .chain(ends.iter().copied())
        .zip(ends.iter().copied())
        .map(|(a, b)| &body[a..b])
        .collect();
    let by_mss: Vec<&[u8]> = body.chunks(1_460).collect();
    let by_16k: Vec<&[u8]> = body.chunks(16 * 1024).collect();
    println!(
        "stream: {} events ({events} content deltas), {} bytes",
        total_events,
        body.len()
    );
    for (label, pieces) in [
        ("1460-byte pieces", &by_mss),
        ("16 KiB pieces", &by_16k),
        ("one event per feed", &by_event),
    ] {
        for count in [false, true] {
            let t = common::per_call(7, Duration::from_millis(300), || splice(pieces, count));
            let s = t.as_secs_f64();
            println!(
                "splice {label:<20} {:7.3} µs/event  {:7.1} MB/s  ({:.2} ms/stream{})",
                s * 1e6 / total_events as f64,
                body.len() as f64 / s / 1e6,
                s * 1e3,
                if count { ", + local token count" } else { "" }
            );
        }
    }
}
