//! `mlperf_log_accuracy.json`: the responses to score, in LoadGen's layout
//! (`[`, one `{ "seq_id" : …, "qsl_idx" : …, "data" : "HEX" }` per line, `]`),
//! with the data as upper-case hex as LoadGen writes it.

use crate::response::LoggedResponse;
use std::io::{self, Write};

/// Writes the accuracy log. `token_counts`: whether to add LoadGen's
/// `token_count` field (runs that measure token latencies).
pub fn write(
    out: &mut impl Write,
    responses: &[LoggedResponse],
    token_counts: bool,
) -> io::Result<()> {
    out.write_all(b"[")?;
    let mut hex = String::new();
    for (i, r) in responses.iter().enumerate() {
        out.write_all(if i == 0 { b"\n{ " } else { b",\n{ " })?;
        hex.clear();
        for b in &r.data {
            hex.push(nibble(b >> 4));
            hex.push(nibble(b & 0x0f));
        }
        write!(
            out,
            "\"seq_id\" : {}, \"qsl_idx\" : {}, \"data\" : \"{hex}\"",
            r.seq_id, r.qsl_idx
        )?;
        if token_counts {
            write!(out, ", \"token_count\" : {}", r.n_tokens)?;
        }
        out.write_all(b" }")?;
    }
    out.write_all(b"\n]\n")
}

fn nibble(v: u8) -> char {
    char::from(if v < 10 { b'0' + v } else { b'A' + v - 10 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_log_is_loadgens() {
        let mut out = Vec::new();
        write(&mut out, &[], false).unwrap();
        assert_eq!(out, b"[\n]\n");
    }

    #[test]
    fn entries_are_json_with_upper_hex() {
        let responses = vec![
            LoggedResponse {
                seq_id: 0,
                qsl_idx: 7,
                data: vec![0xab, 0x01],
                n_tokens: 0,
            },
            LoggedResponse {
                seq_id: 1,
                qsl_idx: 3,
                data: vec![],
                n_tokens: 0,
            },
        ];
        let mut out = Vec::new();
        write(&mut out, &responses, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"data\" : \"AB01\""));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0]["qsl_idx"], 7);
        assert_eq!(parsed[1]["seq_id"], 1);
    }
}
