//! SPEC PTDaemon over TCP: the wall-power analyzer MLPerf Power requires.
//!
//! PTDaemon drives one power analyzer (a Yokogawa WT310 and the like) and
//! answers a line-based text protocol: one command per line, one reply line
//! (or, for `RL`, a header line and then the sample lines). The facts this file
//! follows are in `shared/reference/ptd-protocol.md`; the replies that MLPerf's
//! tooling compares verbatim (`Hello, PTDaemon here!`, `Range V changed`, ...)
//! are checked verbatim here too, so talking to something that is not PTDaemon
//! fails at once instead of producing numbers of unknown meaning.
//!
//! Three layers, each usable alone:
//! - [`PtdClient`]: the connection and one method per command. Every read has
//!   a deadline, so a daemon that stops answering gives a
//!   [`PtdError::Timeout`] naming the command, never a hang. After a timeout,
//!   a dropped connection or an over-long line the byte stream can no longer
//!   be trusted to be in step, so the client refuses further commands
//!   ([`PtdError::Broken`]) rather than pairing a late reply with the wrong
//!   command.
//! - Parsing ([`parse_sample_line`], [`parse_ranges_reply`],
//!   [`parse_identify_reply`]) as plain functions, used for `RL` replies and
//!   for PTDaemon's own log file alike.
//!
//! MLPerf Power's ranging → testing rule (which ranges the testing run
//! fixes from what the ranging run saw) is MLPerf's policy, not PTDaemon's
//! protocol: it lives in `mlperf_power::ranging`.
//!
//! [`PtdMeter`] puts the client behind the [`Meter`] trait. The client is
//! shared (`Arc<Mutex<_>>`) because PTDaemon serves one connection: the run
//! orchestrator sends `Go`/`Stop`/`SR` on the same connection the sampler
//! thread reads samples from.

mod client;
mod lines;
mod meter;

pub use client::{PtdClient, PtdExchange, PtdGreeting, SharedPtdClient};
pub use lines::{
    format_sample_line, parse_identify_reply, parse_ranges_reply, parse_sample_line,
    parse_sample_log, AutoRange, ChannelSample, PtdIdentity, PtdSample, RangeQuantity,
    RangeSetting, Ranges,
};
pub use meter::{to_meter_error, PtdMeter};

use super::MeterError;
use std::time::Duration;

/// PTDaemon's exact answer to `Hello`.
pub const HELLO_REPLY: &str = "Hello, PTDaemon here!";
/// Sampling interval MLPerf uses in `Go,1000,0,{mark}` (one sample a second).
pub const SAMPLE_INTERVAL_MS: u32 = 1000;
/// Longest reply line accepted; a longer one means the peer is not PTDaemon.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most sample lines accepted in one `RL` reply.
const MAX_RL_SAMPLES: usize = 1_000_000;

/// What went wrong talking to PTDaemon. Each message names the command.
#[derive(Debug, thiserror::Error)]
pub enum PtdError {
    #[error("{addr}: cannot connect: {reason}")]
    Connect { addr: String, reason: String },
    #[error("no reply to `{command}` within {timeout_ms} ms; is PTDaemon busy or hung?")]
    Timeout { command: String, timeout_ms: u128 },
    #[error("PTDaemon closed the connection while answering `{command}`")]
    Closed { command: String },
    #[error("I/O error on `{command}`: {source}")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("PTDaemon rejected `{command}`: {reply}")]
    Daemon { command: String, reply: String },
    #[error("unexpected reply to `{command}`: {reply:?} ({reason})")]
    Unexpected {
        command: String,
        reply: String,
        reason: String,
    },
    #[error("malformed line from PTDaemon: {line:?}: {reason}")]
    Malformed { line: String, reason: String },
    #[error("connection unusable after an earlier failure ({reason}); reconnect")]
    Broken { reason: String },
    #[error("invalid argument: range {range} is not a positive number")]
    InvalidRange { range: f64 },
    #[error(
        "invalid argument: mark `{mark}` must be non-empty and use only letters, digits, `_`, `-`, `.`"
    )]
    InvalidMark { mark: String },
    #[error("invalid argument: command {command:?} must be one non-empty line")]
    InvalidCommand { command: String },
}

/// How long to wait for the daemon. PTDaemon answers most commands at once,
/// but a range change makes the analyzer re-range, which can take seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PtdTimeouts {
    pub connect: Duration,
    pub reply: Duration,
}

impl Default for PtdTimeouts {
    fn default() -> Self {
        PtdTimeouts {
            connect: Duration::from_secs(5),
            reply: Duration::from_secs(10),
        }
    }
}

/// Parses a `ptd://HOST:PORT` address (the form the CLI's `--power` takes).
/// The port is required: it is whatever PTDaemon was started with (`-p`).
pub fn parse_ptd_url(url: &str) -> Result<(String, u16), MeterError> {
    let config = |reason: String| MeterError::Config {
        meter: "ptd".into(),
        reason,
    };
    let rest = url.strip_prefix("ptd://").ok_or_else(|| {
        config(format!(
            "`{url}` is not a PTDaemon address; write ptd://HOST:PORT"
        ))
    })?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
        config(format!(
            "`{url}` has no port; write ptd://HOST:PORT with the port PTDaemon listens on (its -p)"
        ))
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(config(format!("`{url}` has no host")));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| config(format!("`{url}`: port `{port}` is not a number 1-65535")))?;
    if port == 0 {
        return Err(config(format!("`{url}`: port 0 is not a PTDaemon port")));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptd_urls_need_host_and_port() {
        assert_eq!(
            parse_ptd_url("ptd://analyzer:8888").unwrap(),
            ("analyzer".to_string(), 8888)
        );
        assert_eq!(
            parse_ptd_url("ptd://[::1]:4950/").unwrap(),
            ("::1".to_string(), 4950)
        );
        for bad in [
            "analyzer:8888",
            "ptd://analyzer",
            "ptd://:8888",
            "ptd://h:0",
            "ptd://h:99999",
        ] {
            assert!(
                matches!(parse_ptd_url(bad), Err(MeterError::Config { .. })),
                "{bad}"
            );
        }
    }
}
