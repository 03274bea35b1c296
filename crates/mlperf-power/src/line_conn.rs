//! One TCP connection speaking power-dev's line protocol, with bounds on
//! everything a peer can make us wait for or hold: how long a line may take
//! to begin and to end, how long a write may block, how long a line and a
//! transferred file may be, and a stop flag looked at while waiting.
//!
//! The peer may be anyone who can reach the port (the protocol has no
//! authentication), so a peer that stalls mid-line, trickles a byte at a
//! time, sends an endless line or never reads what we send gets an error
//! within these bounds, never a hang.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest line accepted; a longer one is a protocol error.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Largest chunk accepted in a file transfer.
const MAX_CHUNK_BYTES: usize = 64 * 1024 * 1024;
/// Largest file accepted in a transfer: the files a session offers are
/// logs of a few MB even for runs of hours.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// How often a wait looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("{peer}: {source}")]
    Io {
        peer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{peer}: no line within {:.1} s", waited.as_secs_f64())]
    Timeout { peer: String, waited: Duration },
    #[error(
        "{peer}: sent {bytes} bytes of a line ({start:?}) and no line end within {:.1} s",
        waited.as_secs_f64()
    )]
    Stalled {
        peer: String,
        bytes: usize,
        /// The line's first bytes, as text.
        start: String,
        waited: Duration,
    },
    #[error("{peer}: stopped while waiting for the peer")]
    Stopped { peer: String },
    #[error("{peer}: disconnected")]
    Disconnected { peer: String },
    #[error("{peer}: malformed line {line:?}: {reason}")]
    Malformed {
        peer: String,
        line: String,
        reason: String,
        /// The whole line was read, so the next one can be (a line that is
        /// not UTF-8, say); false when the stream is out of step (a line
        /// too long, a file transfer cut short) and the connection must
        /// close.
        in_step: bool,
    },
    #[error("{}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How long a connection waits on its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// For a line to begin. `None` waits for ever: a server whose client is
    /// running a workload between two commands.
    pub line_start: Option<Duration>,
    /// For a line, once begun, to end (and for each chunk of a file to
    /// arrive, and each write to go out): a peer that stalls mid-line or
    /// trickles bytes is cut off after this.
    pub line_end: Duration,
}

impl Waits {
    /// A client waiting for replies: each must begin and end within `reply`.
    pub fn replies_within(reply: Duration) -> Waits {
        Waits {
            line_start: Some(reply),
            line_end: reply,
        }
    }
}

/// One TCP connection speaking the line protocol.
pub struct LineConn {
    reader: BufReader<TcpStream>,
    peer: String,
    waits: Waits,
    stop: Option<Arc<AtomicBool>>,
}

impl LineConn {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream, waits: Waits) -> std::io::Result<LineConn> {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "peer".into());
        stream.set_nodelay(true)?;
        Ok(LineConn {
            reader: BufReader::new(stream),
            peer,
            waits,
            stop: None,
        })
    }

    /// Makes every wait end with [`ProtocolError::Stopped`] soon after `stop`
    /// is set (a server asked to exit while its client is silent).
    pub fn watching(mut self, stop: Arc<AtomicBool>) -> LineConn {
        self.stop = Some(stop);
        self
    }

    /// Changes how long a line may take to begin (a server waits longer
    /// while a session is open).
    pub fn set_line_start_wait(&mut self, wait: Option<Duration>) {
        self.waits.line_start = wait;
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    fn io(&self, source: std::io::Error) -> ProtocolError {
        match source.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => ProtocolError::Timeout {
                peer: self.peer.clone(),
                waited: self.waits.line_end,
            },
            ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe => ProtocolError::Disconnected {
                peer: self.peer.clone(),
            },
            _ => ProtocolError::Io {
                peer: self.peer.clone(),
                source,
            },
        }
    }

    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Sends one line (`\r\n` appended).
    pub fn send(&mut self, line: &str) -> Result<(), ProtocolError> {
        self.write_all(format!("{line}\r\n").as_bytes())
    }

    /// Writes all of `bytes` within `line_end` (a peer that does not read
    /// is cut off), looking at the stop flag meanwhile.
    fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), ProtocolError> {
        let deadline = Instant::now() + self.waits.line_end;
        while !bytes.is_empty() {
            if self.stopped() {
                return Err(ProtocolError::Stopped {
                    peer: self.peer.clone(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.io(ErrorKind::TimedOut.into()));
            }
            let wait = if self.stop.is_some() {
                left.min(STOP_POLL)
            } else {
                left
            };
            self.reader
                .get_ref()
                .set_write_timeout(Some(wait))
                .map_err(|e| self.io(e))?;
            match self.reader.get_mut().write(bytes) {
                Ok(0) => return Err(self.io(ErrorKind::WriteZero.into())),
                Ok(n) => bytes = &bytes[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(())
    }

    /// Fills the read buffer, waiting at most until `deadline` (for ever
    /// when `None`) and looking at the stop flag meanwhile. `Ok(false)`
    /// when the deadline passed.
    fn fill(&mut self, deadline: Option<Instant>) -> Result<bool, ProtocolError> {
        if !self.reader.buffer().is_empty() {
            return Ok(true);
        }
        loop {
            // Also between reads that succeed: a peer trickling a byte at a
            // time must not keep a stop waiting until the line deadline.
            if self.stopped() {
                return Err(ProtocolError::Stopped {
                    peer: self.peer.clone(),
                });
            }
            let now = Instant::now();
            let left = deadline.map(|d| d.saturating_duration_since(now));
            if left.is_some_and(|l| l.is_zero()) {
                return Ok(false);
            }
            let wait = match (left, &self.stop) {
                (Some(l), Some(_)) => Some(l.min(STOP_POLL)),
                (Some(l), None) => Some(l),
                (None, Some(_)) => Some(STOP_POLL),
                (None, None) => None,
            };
            self.reader
                .get_ref()
                .set_read_timeout(wait)
                .map_err(|e| self.io(e))?;
            match self.reader.fill_buf() {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if self.stopped() {
                        return Err(ProtocolError::Stopped {
                            peer: self.peer.clone(),
                        });
                    }
                }
                Err(e) => return Err(self.io(e)),
            }
        }
    }

    /// Receives one line without its `\r\n` (a bare `\n` is accepted, as
    /// power-dev does). `Ok(None)` when the peer closed the connection
    /// between lines.
    pub fn recv(&mut self) -> Result<Option<String>, ProtocolError> {
        let started = Instant::now();
        let mut line = Vec::new();
        let mut began: Option<Instant> = None;
        loop {
            let deadline = match began {
                None => self.waits.line_start.map(|w| started + w),
                Some(t) => Some(t + self.waits.line_end),
            };
            if !self.fill(deadline)? {
                return Err(match began {
                    None => ProtocolError::Timeout {
                        peer: self.peer.clone(),
                        waited: self.waits.line_start.unwrap_or_default(),
                    },
                    Some(_) => ProtocolError::Stalled {
                        peer: self.peer.clone(),
                        bytes: line.len(),
                        start: String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned(),
                        waited: self.waits.line_end,
                    },
                });
            }
            let chunk = self.reader.buffer();
            if chunk.is_empty() {
                if line.is_empty() {
                    return Ok(None);
                }
                return Err(ProtocolError::Disconnected {
                    peer: self.peer.clone(),
                });
            }
            began.get_or_insert_with(Instant::now);
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
                return Err(ProtocolError::Malformed {
                    peer: self.peer.clone(),
                    line: String::from_utf8_lossy(&line[..80]).into_owned(),
                    reason: format!("line longer than {MAX_LINE_BYTES} bytes"),
                    in_step: false,
                });
            }
            if done {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return String::from_utf8(line)
                    .map(Some)
                    .map_err(|e| ProtocolError::Malformed {
                        peer: self.peer.clone(),
                        line: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                        reason: "not UTF-8 text".into(),
                        in_step: true,
                    });
            }
        }
    }

    /// Sends a line and returns the reply line; a closed connection is an error.
    pub fn command(&mut self, line: &str) -> Result<String, ProtocolError> {
        self.send(line)?;
        self.recv()?.ok_or_else(|| ProtocolError::Disconnected {
            peer: self.peer.clone(),
        })
    }

    /// Sends a file as chunks: `{len}\r\n{bytes}` ..., then `0\r\n`.
    pub fn send_file(&mut self, path: &Path) -> Result<(), ProtocolError> {
        let file_err = |source| ProtocolError::File {
            path: path.to_path_buf(),
            source,
        };
        let mut f = std::fs::File::open(path).map_err(file_err)?;
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(file_err)?;
            self.send(&n.to_string())?;
            if n == 0 {
                return Ok(());
            }
            self.write_all(&buf[..n])?;
        }
    }

    /// Reads exactly `buf.len()` bytes of a chunk, all within `line_end`.
    fn read_chunk(&mut self, buf: &mut [u8]) -> Result<(), ProtocolError> {
        let deadline = Instant::now() + self.waits.line_end;
        let mut got = 0;
        while got < buf.len() {
            if !self.fill(Some(deadline))? {
                return Err(ProtocolError::Stalled {
                    peer: self.peer.clone(),
                    bytes: got,
                    start: format!("a chunk of {} bytes", buf.len()),
                    waited: self.waits.line_end,
                });
            }
            let n = self.reader.buffer().len().min(buf.len() - got);
            if n == 0 {
                return Err(ProtocolError::Disconnected {
                    peer: self.peer.clone(),
                });
            }
            buf[got..got + n].copy_from_slice(&self.reader.buffer()[..n]);
            self.reader.consume(n);
            got += n;
        }
        Ok(())
    }

    /// Receives a file sent by [`Self::send_file`] into `dest` (it appears
    /// there only when complete: `atomic_file`). A first line that is not a chunk
    /// length (a server's `Error...`) is returned as `Err(Malformed)` with
    /// the line, and nothing is written.
    pub fn recv_file(&mut self, dest: &Path) -> Result<u64, ProtocolError> {
        let file_err = |e: atomic_file::AtomicWriteError| ProtocolError::File {
            path: e.path,
            source: e.source,
        };
        let mut out: Option<atomic_file::AtomicFile> = None;
        let mut total: u64 = 0;
        loop {
            let line = self.recv()?.ok_or_else(|| ProtocolError::Disconnected {
                peer: self.peer.clone(),
            })?;
            let malformed = |reason: String| ProtocolError::Malformed {
                peer: self.peer.clone(),
                line: line.clone(),
                reason,
                in_step: false,
            };
            let len: usize = line
                .trim()
                .parse()
                .map_err(|_| malformed("expected a chunk length".into()))?;
            if len > MAX_CHUNK_BYTES {
                return Err(malformed(format!(
                    "chunk larger than {MAX_CHUNK_BYTES} bytes"
                )));
            }
            if total + len as u64 > MAX_FILE_BYTES {
                return Err(malformed(format!(
                    "file larger than {MAX_FILE_BYTES} bytes (after {total})"
                )));
            }
            let f = match out.take() {
                Some(f) => f,
                None => atomic_file::AtomicFile::create(dest).map_err(file_err)?,
            };
            if len == 0 {
                f.commit().map_err(file_err)?;
                return Ok(total);
            }
            let mut f = f;
            // In pieces of at most 1 MiB: a peer announcing a large chunk
            // and sending little costs no large allocation.
            let mut piece = vec![0u8; len.min(1 << 20)];
            let mut left = len;
            while left > 0 {
                let piece = &mut piece[..left.min(1 << 20)];
                self.read_chunk(piece)?;
                f.write_all(piece).map_err(|e| file_err(f.error(e)))?;
                left -= piece.len();
            }
            out = Some(f);
            total += len as u64;
        }
    }
}
