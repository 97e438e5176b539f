//! Incremental WHATWG `text/event-stream` framing.
//!
//! Lines end at LF, CRLF or CR (a CR at the end of one chunk and an LF at the start of the next are one
//! line ending). A blank line dispatches the event; `data:` lines are joined with "\n"; a leading UTF-8
//! BOM is dropped. Splits only ever happen at CR/LF bytes, which never occur inside a multi-byte UTF-8
//! sequence, so a chunk boundary in the middle of a character is harmless.
//!
//! Deliberate leniency: at end of input, a final line without its terminator and an event without its
//! blank line are still dispatched (the WHATWG spec drops them). Upstreams that close right after their
//! last `data:` line would otherwise lose the chunk carrying usage.

use super::SseError;

/// One thing the framer found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A comment line (keep-alive), including its leading `:`.
    Comment(Vec<u8>),
    /// A complete event: its `event:` type (empty when absent) and its joined data.
    Event { kind: Vec<u8>, data: Vec<u8> },
}

#[derive(Debug)]
pub(crate) struct Framer {
    max_event_bytes: usize,
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    kind: Vec<u8>,
    after_cr: bool,
    first_line: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Framer {
    pub(crate) fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            kind: Vec::new(),
            after_cr: false,
            first_line: true,
        }
    }

    /// Forget any partial line or event (used when a new upstream stream starts).
    pub(crate) fn reset(&mut self) {
        *self = Self::new(self.max_event_bytes);
    }

    /// Consume `bytes`, appending complete frames to `out`.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), SseError> {
        while !bytes.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if let Some(rest) = bytes.strip_prefix(b"\n") {
                    bytes = rest;
                    continue;
                }
            }
            match memchr::memchr2(b'\n', b'\r', bytes) {
                Some(pos) => {
                    let (head, tail) = bytes.split_at(pos);
                    self.push_line_bytes(head)?;
                    self.after_cr = tail.first() == Some(&b'\r');
                    bytes = tail.get(1..).unwrap_or_default();
                    self.end_line(out);
                }
                None => {
                    self.push_line_bytes(bytes)?;
                    bytes = &[];
                }
            }
        }
        Ok(())
    }

    /// End of input: dispatch what is complete enough to be useful (see the module note).
    pub(crate) fn finish(&mut self, out: &mut Vec<Frame>) {
        if !self.line.is_empty() {
            self.end_line(out);
        }
        self.dispatch(out);
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        let size = self.line.len() + self.data.len() + bytes.len();
        if size > self.max_event_bytes {
            return Err(too_large(self.max_event_bytes, size));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<Frame>) {
        // The line buffer is handed back afterwards (cleared) so its allocation is reused.
        let mut line = std::mem::take(&mut self.line);
        self.take_line(&mut line, out);
        line.clear();
        self.line = line;
    }

    fn take_line(&mut self, line: &mut Vec<u8>, out: &mut Vec<Frame>) {
        if self.first_line {
            self.first_line = false;
            if line.starts_with(BOM) {
                line.drain(..BOM.len());
            }
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.first() == Some(&b':') {
            out.push(Frame::Comment(std::mem::take(line)));
            return;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(pos) => {
                let (name, rest) = line.split_at(pos);
                let value = rest.get(1..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line.as_slice(), &[][..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.kind = value.to_vec(),
            // `id:` and `retry:` are the upstream's reconnection hints; they mean nothing to the buyer
            // (who reconnects to us, not to the seller), so they are read and dropped.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Frame>) {
        let kind = std::mem::take(&mut self.kind);
        if !self.has_data {
            return;
        }
        self.has_data = false;
        out.push(Frame::Event {
            kind,
            data: std::mem::take(&mut self.data),
        });
    }
}

#[cold]
fn too_large(limit: usize, size: usize) -> SseError {
    SseError::EventTooLarge { limit, size }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut f = Framer::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, &mut out).unwrap();
        }
        f.finish(&mut out);
        out
    }

    fn ev(data: &str) -> Frame {
        Frame::Event {
            kind: Vec::new(),
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn lf_crlf_and_cr_line_endings_frame_the_same() {
        let expect = vec![ev("a"), ev("b")];
        assert_eq!(frames(&[b"data: a\n\ndata: b\n\n"]), expect);
        assert_eq!(frames(&[b"data: a\r\n\r\ndata: b\r\n\r\n"]), expect);
        assert_eq!(frames(&[b"data: a\r\rdata: b\r\r"]), expect);
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_ending() {
        assert_eq!(
            frames(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]),
            vec![ev("a"), ev("b")]
        );
        assert_eq!(
            frames(&[b"data: x\r", b"\ndata: y\r\n\r\n"]),
            vec![ev("x\ny")]
        );
        assert_eq!(
            frames(&[b"data: x\r\ndata: y\r", b"\n\r\n"]),
            vec![ev("x\ny")]
        );
    }

    #[test]
    fn multiple_data_lines_join_with_newline_and_space_is_optional() {
        assert_eq!(
            frames(&[b"data:{\"a\":\ndata: 1}\n\n"]),
            vec![ev("{\"a\":\n1}")]
        );
    }

    #[test]
    fn comments_come_out_immediately_and_event_type_is_kept() {
        let out = frames(&[b": ping\nevent: error\ndata: x\n\n"]);
        assert_eq!(
            out,
            vec![
                Frame::Comment(b": ping".to_vec()),
                Frame::Event {
                    kind: b"error".to_vec(),
                    data: b"x".to_vec()
                }
            ]
        );
    }

    #[test]
    fn bom_is_dropped_and_id_retry_ignored() {
        assert_eq!(
            frames(&[b"\xEF\xBB", b"\xBFid: 7\nretry: 10\ndata: a\n\n"]),
            vec![ev("a")]
        );
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing() {
        assert_eq!(frames(&[b"\n\n\nevent: x\n\n"]), vec![]);
    }

    #[test]
    fn unterminated_last_event_is_dispatched_at_finish() {
        assert_eq!(frames(&[b"data: a\n\ndata: b"]), vec![ev("a"), ev("b")]);
        assert_eq!(frames(&[b"data: a\n"]), vec![ev("a")]);
    }

    #[test]
    fn event_past_the_limit_is_an_error_not_memory() {
        let mut f = Framer::new(16);
        let mut out = Vec::new();
        assert!(f.feed(b"data: 0123456789\n", &mut out).is_ok());
        let err = f.feed(b"data: 0123456789\n", &mut out).unwrap_err();
        assert!(matches!(err, SseError::EventTooLarge { limit: 16, .. }));
        let mut f = Framer::new(16);
        let err = f.feed(&[b'x'; 17], &mut out).unwrap_err();
        assert!(matches!(err, SseError::EventTooLarge { .. }));
    }
}
