//! A minimal Server-Sent Events decoder (the parts model providers use): `event:` and
//! `data:` fields, multi-line data, comments, `\n` or `\r\n` line ends, and lines split
//! across network chunks at any byte.

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseDecoder {
    /// Feeds bytes; complete events are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = std::str::from_utf8(line)
                .map_err(|e| format!("the event stream is not UTF-8: {e}"))?
                .to_string();
            start = end + 1;
            self.line(&line, out);
        }
        self.buf.drain(..start);
        Ok(())
    }

    /// The stream ended: dispatches what a final blank line would have.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), String> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = std::str::from_utf8(&rest)
                .map_err(|e| format!("the event stream is not UTF-8: {e}"))?
                .trim_end_matches('\r')
                .to_string();
            self.line(&line, out);
        }
        self.line("", out);
        Ok(())
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if !self.data.is_empty() {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: self.data.join("\n"),
                });
            }
            self.event = None;
            self.data.clear();
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => self.data.push(value.to_string()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut out).expect("decodes");
        }
        d.finish(&mut out).expect("finishes");
        out
    }

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let text = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: comment\n\ndata: x\ndata: y\n\nevent: ping\ndata: {}\n\ndata: \u{e9}t\u{e9}\n\n";
        let whole = decode(&[text.as_bytes()]);
        assert_eq!(
            whole,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "x\ny".into()
                },
                SseEvent {
                    event: Some("ping".into()),
                    data: "{}".into()
                },
                SseEvent {
                    event: None,
                    data: "\u{e9}t\u{e9}".into()
                },
            ]
        );
        let bytes = text.as_bytes();
        for cut in 1..bytes.len() {
            assert_eq!(
                decode(&[&bytes[..cut], &bytes[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode(&singles), whole);
    }

    #[test]
    fn a_last_event_without_blank_line_is_kept() {
        assert_eq!(
            decode(&[b"data: [DONE]"]),
            vec![SseEvent {
                event: None,
                data: "[DONE]".into()
            }]
        );
    }
}
