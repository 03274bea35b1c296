//! The connection to PTDaemon and one method per command.

use super::lines::{
    parse_identify_reply, parse_ranges_reply, parse_sample_line, PtdIdentity, PtdSample,
    RangeQuantity, RangeSetting, Ranges,
};
use super::{
    PtdError, PtdTimeouts, HELLO_REPLY, MAX_LINE_BYTES, MAX_RL_SAMPLES, SAMPLE_INTERVAL_MS,
};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A connection to PTDaemon. Not thread-safe by itself; share it as
/// [`SharedPtdClient`].
#[derive(Debug)]
pub struct PtdClient {
    addr: String,
    reader: BufReader<TcpStream>,
    timeouts: PtdTimeouts,
    broken: Option<String>,
    /// The sample-reading command this daemon accepted (`RL,*,*`, `RL` or
    /// `DC-RL`), learnt on first use.
    rl_command: Option<&'static str>,
    /// Every exchange since [`PtdClient::record_transcript`], when recording.
    transcript: Option<Vec<PtdExchange>>,
}

/// One command and the one reply line it got, as MLPerf's server records them
/// (`ptd_messages` in `server.json`). For `RL` the reply is the header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtdExchange {
    pub command: String,
    pub reply: String,
}

/// A client shared by the meter's sampling thread and the run orchestrator.
pub type SharedPtdClient = Arc<Mutex<PtdClient>>;

/// What [`PtdClient::start_session`] learnt, in PTDaemon's required order.
#[derive(Debug, Clone, PartialEq)]
pub struct PtdGreeting {
    pub identity: PtdIdentity,
    /// The ranges before we changed anything: restore them when done.
    pub initial_ranges: Ranges,
}

impl PtdClient {
    /// Opens a TCP connection; sends nothing.
    pub fn connect(host: &str, port: u16, timeouts: PtdTimeouts) -> Result<PtdClient, PtdError> {
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let connect_err = |reason: String| PtdError::Connect {
            addr: addr.clone(),
            reason,
        };
        let candidates: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| connect_err(format!("cannot resolve host: {e}")))?
            .collect();
        if candidates.is_empty() {
            return Err(connect_err("host resolves to no address".into()));
        }
        let mut last = String::new();
        for sock in candidates {
            match TcpStream::connect_timeout(&sock, timeouts.connect) {
                Ok(stream) => {
                    let io = |e: std::io::Error| connect_err(e.to_string());
                    stream.set_nodelay(true).map_err(io)?;
                    stream.set_write_timeout(Some(timeouts.reply)).map_err(io)?;
                    return Ok(PtdClient {
                        addr,
                        reader: BufReader::new(stream),
                        timeouts,
                        broken: None,
                        rl_command: None,
                        transcript: None,
                    });
                }
                Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
                    last = format!("no answer within {} ms", timeouts.connect.as_millis());
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(connect_err(last))
    }

    /// The address this client talks to, as `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The session opening MLPerf's checker expects: `Hello`, `Identify`, then
    /// `RR` as the third command.
    pub fn start_session(&mut self) -> Result<PtdGreeting, PtdError> {
        self.hello()?;
        let identity = self.identify()?;
        let initial_ranges = self.read_ranges()?;
        Ok(PtdGreeting {
            identity,
            initial_ranges,
        })
    }

    /// `Hello`; fails unless the peer answers exactly as PTDaemon does.
    pub fn hello(&mut self) -> Result<(), PtdError> {
        let reply = self.request("Hello")?;
        expect_exact("Hello", &reply, HELLO_REPLY)
    }

    /// `Identify`.
    pub fn identify(&mut self) -> Result<PtdIdentity, PtdError> {
        let reply = self.request("Identify")?;
        reject_error("Identify", &reply)?;
        parse_identify_reply(&reply)
    }

    /// `RR`: the analyzer's current ranges.
    pub fn read_ranges(&mut self) -> Result<Ranges, PtdError> {
        let reply = self.request("RR")?;
        reject_error("RR", &reply)?;
        parse_ranges_reply(&reply)
    }

    /// `SR,V,...` or `SR,A,...`. Any reply but the exact
    /// `Range V changed` / `Range A changed` is an error.
    pub fn set_range(
        &mut self,
        quantity: RangeQuantity,
        setting: RangeSetting,
    ) -> Result<(), PtdError> {
        if let RangeSetting::Fixed(v) = setting {
            if !(v.is_finite() && v > 0.0) {
                return Err(PtdError::InvalidRange { range: v });
            }
        }
        let letter = quantity.letter();
        let command = format!("SR,{letter},{}", setting.to_command_value());
        let reply = self.request(&command)?;
        if reply.contains("Error") {
            return Err(PtdError::Daemon { command, reply });
        }
        expect_exact(&command, &reply, &format!("Range {letter} changed"))
    }

    /// Auto-ranging for both voltage and current, as MLPerf's ranging run
    /// sets it (`SR,V,Auto`, then `SR,A,Auto`).
    pub fn set_auto_ranges(&mut self) -> Result<(), PtdError> {
        self.set_range(RangeQuantity::Volts, RangeSetting::Auto)?;
        self.set_range(RangeQuantity::Amps, RangeSetting::Auto)
    }

    /// Fixed voltage and current ranges (MLPerf's testing run; which ones is
    /// `mlperf_power::ranging`'s rule).
    pub fn set_fixed_ranges(&mut self, volts_v: f64, amps_a: f64) -> Result<(), PtdError> {
        self.set_range(RangeQuantity::Volts, RangeSetting::Fixed(volts_v))?;
        self.set_range(RangeQuantity::Amps, RangeSetting::Fixed(amps_a))
    }

    /// `Go,1000,0,{mark}`: start logging one sample a second, tagged `mark`.
    /// The mark may hold letters, digits, `_`, `-` and `.` only, so it cannot
    /// break the comma-separated log format.
    pub fn go(&mut self, mark: &str) -> Result<(), PtdError> {
        let mark_ok = !mark.is_empty()
            && mark
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !mark_ok {
            return Err(PtdError::InvalidMark { mark: mark.into() });
        }
        let command = format!("Go,{SAMPLE_INTERVAL_MS},0,{mark}");
        let reply = self.request(&command)?;
        reject_error(&command, &reply)?;
        if reply.starts_with("Starting untimed measurement") {
            Ok(())
        } else {
            Err(PtdError::Unexpected {
                command,
                reply,
                reason: "expected `Starting untimed measurement, ...`".into(),
            })
        }
    }

    /// `Stop`. Returns `false` when nothing was running (PTDaemon's
    /// `Error: no measurement to stop`), which is harmless when cleaning up.
    pub fn stop(&mut self) -> Result<bool, PtdError> {
        let reply = self.request("Stop")?;
        if reply == "Stopping untimed measurement" {
            Ok(true)
        } else if reply.starts_with("Error") && reply.contains("no measurement to stop") {
            Ok(false)
        } else {
            reject_error("Stop", &reply)?;
            Err(PtdError::Unexpected {
                command: "Stop".into(),
                reply,
                reason: "expected `Stopping untimed measurement`".into(),
            })
        }
    }

    /// `Watts`: the latest power reading, in watts.
    pub fn watts(&mut self) -> Result<f64, PtdError> {
        let reply = self.request("Watts")?;
        reject_error("Watts", &reply)?;
        let text = reply.strip_prefix("Watts,").unwrap_or(&reply).trim();
        text.parse::<f64>()
            .ok()
            .filter(|w| w.is_finite())
            .ok_or_else(|| PtdError::Unexpected {
                command: "Watts".into(),
                reply: reply.clone(),
                reason: "not a number of watts".into(),
            })
    }

    /// `Uncertainty`: the reply as sent, and the last comma-separated field
    /// read as a number where it is one. Our reference does not pin this
    /// reply's layout, so the raw text is always kept.
    pub fn uncertainty(&mut self) -> Result<(String, Option<f64>), PtdError> {
        let reply = self.request("Uncertainty")?;
        reject_error("Uncertainty", &reply)?;
        let value = reply
            .rsplit(',')
            .next()
            .map(|f| f.trim().trim_end_matches('%'))
            .and_then(|f| f.parse::<f64>().ok());
        Ok((reply, value))
    }

    /// Starts keeping every command and its reply line (see [`PtdExchange`]).
    pub fn record_transcript(&mut self) {
        self.transcript.get_or_insert_with(Vec::new);
    }

    /// The exchanges recorded so far; recording goes on.
    pub fn take_transcript(&mut self) -> Vec<PtdExchange> {
        self.transcript
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Reads the samples PTDaemon offers (`RL,*,*` for multichannel
    /// analyzers, falling back to `RL`, then `DC-RL`, the way MLPerf's
    /// server does). The accepted command is remembered for later calls.
    pub fn read_samples(&mut self) -> Result<Vec<PtdSample>, PtdError> {
        let lines = self.read_sample_lines()?;
        lines.iter().map(|l| parse_sample_line(l)).collect()
    }

    /// Like [`Self::read_samples`], but the sample lines as PTDaemon sent
    /// them, unparsed (for a server that stores them verbatim).
    pub fn read_sample_lines(&mut self) -> Result<Vec<String>, PtdError> {
        let mut command: &'static str = self.rl_command.unwrap_or("RL,*,*");
        loop {
            let header = self.request(command)?;
            let next = if header.contains("Unknown command") && command != "DC-RL" {
                Some("DC-RL")
            } else if command == "RL,*,*" && header.contains("Invalid number of parameters") {
                Some("RL")
            } else {
                None
            };
            if let Some(next) = next {
                if self.rl_command.is_none() {
                    command = next;
                    continue;
                }
            }
            reject_error(command, &header)?;
            let count = parse_rl_header(&header).ok_or_else(|| PtdError::Unexpected {
                command: command.to_string(),
                reply: header.clone(),
                reason: "expected `Last N samples`".into(),
            })?;
            if count > MAX_RL_SAMPLES {
                self.broken = Some(format!("`{command}` announced {count} samples"));
                return Err(PtdError::Unexpected {
                    command: command.to_string(),
                    reply: header,
                    reason: format!("more than {MAX_RL_SAMPLES} samples announced"),
                });
            }
            // Read every announced line before judging any, so one bad line
            // does not leave the rest queued up as replies to later commands.
            let deadline = Instant::now() + self.timeouts.reply;
            let mut lines = Vec::with_capacity(count);
            for _ in 0..count {
                lines.push(self.read_line(command, deadline)?);
            }
            self.rl_command = Some(command);
            return Ok(lines);
        }
    }

    /// Sends one command and returns its one reply line (without `\r\n`).
    /// `Error...` replies are returned as text; the typed methods above turn
    /// them into [`PtdError::Daemon`].
    pub fn request(&mut self, command: &str) -> Result<String, PtdError> {
        if let Some(reason) = &self.broken {
            return Err(PtdError::Broken {
                reason: reason.clone(),
            });
        }
        if command.is_empty() || command.contains(['\r', '\n']) {
            return Err(PtdError::InvalidCommand {
                command: command.into(),
            });
        }
        let deadline = Instant::now() + self.timeouts.reply;
        let line = format!("{command}\r\n");
        if let Err(e) = self.reader.get_mut().write_all(line.as_bytes()) {
            return Err(self.fail(command, e));
        }
        tracing::trace!(target: "ptd", command, "sent");
        let reply = self.read_line(command, deadline)?;
        tracing::trace!(target: "ptd", command, reply = reply.as_str(), "reply");
        if let Some(t) = self.transcript.as_mut() {
            t.push(PtdExchange {
                command: command.to_string(),
                reply: reply.clone(),
            });
        }
        Ok(reply)
    }

    fn fail(&mut self, command: &str, e: std::io::Error) -> PtdError {
        let err = match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => PtdError::Timeout {
                command: command.to_string(),
                timeout_ms: self.timeouts.reply.as_millis(),
            },
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => PtdError::Closed {
                command: command.to_string(),
            },
            _ => PtdError::Io {
                command: command.to_string(),
                source: e,
            },
        };
        self.broken = Some(err.to_string());
        err
    }

    /// Reads one line, giving up at `deadline` however slowly bytes arrive.
    fn read_line(&mut self, command: &str, deadline: Instant) -> Result<String, PtdError> {
        let mut line: Vec<u8> = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.fail(command, ErrorKind::TimedOut.into()));
            }
            if let Err(e) = self.reader.get_ref().set_read_timeout(Some(remaining)) {
                return Err(self.fail(command, e));
            }
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail(command, e)),
            };
            if chunk.is_empty() {
                return Err(self.fail(command, ErrorKind::UnexpectedEof.into()));
            }
            let (taken, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    line.extend_from_slice(&chunk[..pos]);
                    (pos + 1, true)
                }
                None => {
                    line.extend_from_slice(chunk);
                    (chunk.len(), false)
                }
            };
            self.reader.consume(taken);
            if line.len() > MAX_LINE_BYTES {
                let err = PtdError::Malformed {
                    line: String::from_utf8_lossy(&line[..80]).into_owned(),
                    reason: format!("reply line longer than {MAX_LINE_BYTES} bytes"),
                };
                self.broken = Some(err.to_string());
                return Err(err);
            }
            if done {
                break;
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8(line).map_err(|e| PtdError::Malformed {
            line: String::from_utf8_lossy(e.as_bytes()).into_owned(),
            reason: "reply is not UTF-8 text".into(),
        })
    }
}

fn parse_rl_header(header: &str) -> Option<usize> {
    let rest = header.trim().strip_prefix("Last ")?;
    let (n, word) = rest.split_once(' ')?;
    matches!(word.trim(), "samples" | "sample").then_some(())?;
    n.parse().ok()
}

fn reject_error(command: &str, reply: &str) -> Result<(), PtdError> {
    if reply.starts_with("Error") {
        Err(PtdError::Daemon {
            command: command.to_string(),
            reply: reply.to_string(),
        })
    } else {
        Ok(())
    }
}

fn expect_exact(command: &str, reply: &str, expected: &str) -> Result<(), PtdError> {
    if reply == expected {
        return Ok(());
    }
    reject_error(command, reply)?;
    Err(PtdError::Unexpected {
        command: command.to_string(),
        reply: reply.to_string(),
        reason: format!("expected exactly `{expected}`"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rl_header_counts_samples() {
        assert_eq!(parse_rl_header("Last 3 samples"), Some(3));
        assert_eq!(parse_rl_header("Last 1 sample"), Some(1));
        assert_eq!(parse_rl_header("Last 0 samples"), Some(0));
        assert_eq!(parse_rl_header("Last x samples"), None);
        assert_eq!(parse_rl_header("Time,..."), None);
    }
}
