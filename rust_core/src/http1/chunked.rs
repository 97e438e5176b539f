//! The chunked transfer coding (RFC 9112 §7.1), decoded incrementally: bytes go in as the socket
//! delivers them, split anywhere; the chunks' data comes out. Chunk extensions and trailer fields are
//! read and dropped. Only CRLF ends a framing line (a bare LF stays part of the line), as in the Python
//! decoder this replaces on the stream path.

use std::fmt;

/// Longest framing line (chunk size with extensions, or a trailer field) accepted, without its CRLF.
pub const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    LineTooLong,
    BadSize,
    DataOverrun,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LineTooLong => "chunk framing line too long",
            Self::BadSize => "bad chunk size",
            Self::DataOverrun => "chunk data longer than its size",
        })
    }
}

impl std::error::Error for ChunkedError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data,
    DataEnd,
    Trailers,
    Done,
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    left: u64,
    line: Vec<u8>,
    excess: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self {
            state: State::Size,
            left: 0,
            line: Vec::new(),
            excess: 0,
        }
    }

    /// The terminating chunk and the trailer section's end were read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes received after the body's end (a connection out of step: never reuse it).
    pub fn excess(&self) -> usize {
        self.excess
    }

    /// Appends the data carried by `input` to `out`. After an error the decoder must not be used again.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => {
                    self.excess += input.len() - i;
                    return Ok(());
                }
                State::Data => {
                    let avail = input.len() - i;
                    let take = usize::try_from(self.left).map_or(avail, |left| left.min(avail));
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.left -= take as u64;
                    if self.left == 0 {
                        self.state = State::DataEnd;
                    }
                }
                State::Size | State::DataEnd | State::Trailers => {
                    let rest = &input[i..];
                    let Some(lf) = memchr::memchr(b'\n', rest) else {
                        self.push_line(rest)?;
                        return Ok(());
                    };
                    self.push_line(&rest[..=lf])?;
                    i += lf + 1;
                    if self.line.ends_with(b"\r\n") {
                        self.line.truncate(self.line.len() - 2);
                        self.end_line()?;
                        self.line.clear();
                    }
                }
            }
        }
        Ok(())
    }

    fn push_line(&mut self, bytes: &[u8]) -> Result<(), ChunkedError> {
        self.line.extend_from_slice(bytes);
        // Room for the CRLF that may follow: a line of exactly MAX_LINE bytes is accepted.
        if self.line.len() > MAX_LINE + 2 {
            return Err(ChunkedError::LineTooLong);
        }
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), ChunkedError> {
        if self.line.len() > MAX_LINE {
            return Err(ChunkedError::LineTooLong);
        }
        match self.state {
            State::Size => {
                let size = parse_size(&self.line)?;
                if size == 0 {
                    self.state = State::Trailers;
                } else {
                    self.left = size;
                    self.state = State::Data;
                }
            }
            State::DataEnd => {
                if !self.line.is_empty() {
                    return Err(ChunkedError::DataOverrun);
                }
                self.state = State::Size;
            }
            State::Trailers => {
                if self.line.is_empty() {
                    self.state = State::Done;
                }
            }
            State::Data | State::Done => unreachable!("no framing line in this state"),
        }
        Ok(())
    }
}

/// The hex chunk size before any `;extension`, surrounding whitespace allowed.
fn parse_size(line: &[u8]) -> Result<u64, ChunkedError> {
    let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 16 {
        return Err(ChunkedError::BadSize);
    }
    let mut size: u64 = 0;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(ChunkedError::BadSize),
        };
        size = (size << 4) | u64::from(d);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_split(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool, usize), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        for piece in wire.chunks(step.max(1)) {
            d.decode(piece, &mut out)?;
        }
        Ok((out, d.is_done(), d.excess()))
    }

    const WIRE: &[u8] = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n";

    #[test]
    fn decodes_in_any_split() {
        for step in 1..=WIRE.len() {
            let (out, done, excess) = decode_split(WIRE, step).unwrap();
            assert_eq!(out, b"hello world", "step {step}");
            assert!(done);
            assert_eq!(excess, 0);
        }
    }

    #[test]
    fn counts_bytes_after_the_end_and_waits_for_more() {
        let mut wire = WIRE.to_vec();
        wire.extend_from_slice(b"HTTP/1.1");
        assert_eq!(
            decode_split(&wire, 7).unwrap(),
            (b"hello world".to_vec(), true, 8)
        );
        let (out, done, _) = decode_split(&WIRE[..WIRE.len() - 2], 3).unwrap();
        assert_eq!(out, b"hello world");
        assert!(!done);
    }

    #[test]
    fn uppercase_hex_and_whitespace_sizes() {
        let wire = b"A \r\n0123456789\r\n 0\r\n\r\n";
        assert_eq!(decode_split(wire, 4).unwrap().0, b"0123456789");
    }

    #[test]
    fn refuses_invalid_framing() {
        assert_eq!(decode_split(b"zz\r\n", 2), Err(ChunkedError::BadSize));
        assert_eq!(decode_split(b"\r\n", 2), Err(ChunkedError::BadSize));
        assert_eq!(decode_split(b"-1\r\n", 2), Err(ChunkedError::BadSize));
        assert_eq!(
            decode_split(b"11111111111111111\r\n", 5),
            Err(ChunkedError::BadSize)
        );
        assert_eq!(
            decode_split(b"2\r\nabc\r\n", 3),
            Err(ChunkedError::DataOverrun)
        );
        let long = [b'1'; MAX_LINE + 3];
        assert_eq!(decode_split(&long, 1000), Err(ChunkedError::LineTooLong));
    }

    #[test]
    fn a_line_of_max_length_with_extensions_is_accepted() {
        let mut wire = b"3;".to_vec();
        wire.resize(MAX_LINE, b'x');
        wire.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
        assert_eq!(decode_split(&wire, 100).unwrap().0, b"abc");
    }

    #[test]
    fn a_bare_lf_does_not_end_a_line() {
        // "3\n" is not a size line: the LF stays in the line, which then holds no valid size.
        assert_eq!(decode_split(b"3\nabc\r\n", 1), Err(ChunkedError::BadSize));
    }
}
