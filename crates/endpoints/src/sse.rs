//! Server-sent events, decoded incrementally as chunks arrive (WHATWG HTML
//! "event stream" rules, the subset OpenAI-style servers use): lines end
//! in LF, CRLF or CR; `data:` lines (one leading space dropped) accumulate
//! until a blank line dispatches the event; comments (`:`) and the other
//! fields are ignored. Chunks may split anywhere, even inside a UTF-8
//! character: only whole lines are decoded.

/// The longest event accepted; a server that never ends a line would
/// otherwise grow the buffer without bound.
pub const MAX_EVENT_BYTES: usize = 8 << 20;

#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// `data` of the event being assembled.
    data: Vec<u8>,
    has_data: bool,
    /// The previous chunk ended in CR: a following LF belongs to it.
    after_cr: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event longer than {MAX_EVENT_BYTES} bytes")]
    TooLong,
    #[error("an event's data is not UTF-8")]
    NotUtf8,
}

impl SseDecoder {
    /// Feeds `chunk`; returns the data of every event it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<String>, SseError> {
        let mut events = Vec::new();
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    if let Some(event) = self.end_line()? {
                        events.push(event);
                    }
                }
                _ => {
                    if self.line.len() + self.data.len() >= MAX_EVENT_BYTES {
                        return Err(SseError::TooLong);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(events)
    }

    /// Whether bytes of an unfinished event are buffered (a stream that
    /// ends here was cut).
    pub fn pending(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn end_line(&mut self) -> Result<Option<String>, SseError> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if !self.has_data {
                return Ok(None);
            }
            self.has_data = false;
            let data = std::mem::take(&mut self.data);
            return String::from_utf8(data)
                .map(Some)
                .map_err(|_| SseError::NotUtf8);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return Ok(None), // a comment
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line[..], &[][..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_decode_the_same() {
        let stream = "data: {\"a\":1}\n\n: keep-alive\r\n\r\nevent: x\ndata: é1\ndata:two\r\n\r\ndata: [DONE]\r\r";
        let whole = SseDecoder::default().feed(stream.as_bytes()).unwrap();
        assert_eq!(whole, ["{\"a\":1}", "é1\ntwo", "[DONE]"]);
        for split in 0..stream.len() {
            let (a, b) = stream.as_bytes().split_at(split);
            let mut d = SseDecoder::default();
            let mut got = d.feed(a).unwrap();
            got.extend(d.feed(b).unwrap());
            assert_eq!(got, whole, "split at {split}");
            assert!(!d.pending());
        }
    }

    #[test]
    fn an_unfinished_event_is_pending() {
        let mut d = SseDecoder::default();
        assert!(d.feed(b"data: {\"partial\"").unwrap().is_empty());
        assert!(d.pending());
    }

    #[test]
    fn a_line_without_end_is_refused_not_buffered_forever() {
        let mut d = SseDecoder::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(d.feed(&big), Err(SseError::TooLong));
    }
}
