//! `mlperf_log_accuracy.json`: the responses to score, in LoadGen's layout
//! (`[`, one `{ "seq_id" : …, "qsl_idx" : …, "data" : "HEX" }` per line, `]`),
//! with the data as upper-case hex as LoadGen writes it.

use crate::response::LoggedResponse;
use std::io::{self, Write};

/// The token fields LoadGen adds when a run measures token latencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFields {
    /// No token latencies: `seq_id`, `qsl_idx`, `data`.
    None,
    /// Offline: `token_count` too.
    Count,
    /// The other scenarios: `token_data` (the first token's bytes, as the
    /// SUT reported them) and `token_count`.
    FirstTokenAndCount,
}

/// Writes the accuracy log.
pub fn write(
    out: &mut impl Write,
    responses: &[LoggedResponse],
    tokens: TokenFields,
) -> io::Result<()> {
    out.write_all(b"[")?;
    for (i, r) in responses.iter().enumerate() {
        out.write_all(if i == 0 { b"\n{ " } else { b",\n{ " })?;
        write!(
            out,
            "\"seq_id\" : {}, \"qsl_idx\" : {}, \"data\" : \"{}\"",
            r.seq_id,
            r.qsl_idx,
            hex(&r.data)
        )?;
        match tokens {
            TokenFields::None => {}
            TokenFields::Count => write!(out, ", \"token_count\" : {}", r.n_tokens)?,
            TokenFields::FirstTokenAndCount => write!(
                out,
                ", \"token_data\" : \"{}\", \"token_count\" : {}",
                hex(r.first_token.as_deref().unwrap_or_default()),
                r.n_tokens
            )?,
        }
        out.write_all(b" }")?;
    }
    out.write_all(b"\n]\n")
}

fn hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push(nibble(b >> 4));
        hex.push(nibble(b & 0x0f));
    }
    hex
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
        write(&mut out, &[], TokenFields::None).unwrap();
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
                first_token: None,
            },
            LoggedResponse {
                seq_id: 1,
                qsl_idx: 3,
                data: vec![],
                n_tokens: 0,
                first_token: None,
            },
        ];
        let mut out = Vec::new();
        write(&mut out, &responses, TokenFields::None).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"data\" : \"AB01\""));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0]["qsl_idx"], 7);
        assert_eq!(parsed[1]["seq_id"], 1);
    }

    #[test]
    fn token_fields_follow_the_scenario() {
        let responses = vec![LoggedResponse {
            seq_id: 4,
            qsl_idx: 2,
            data: vec![1, 2],
            n_tokens: 9,
            first_token: Some(vec![0x2b]),
        }];
        let mut out = Vec::new();
        write(&mut out, &responses, TokenFields::FirstTokenAndCount).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "[\n{ \"seq_id\" : 4, \"qsl_idx\" : 2, \"data\" : \"0102\", \"token_data\" : \"2B\", \"token_count\" : 9 }\n]\n"
        );
    }
}
