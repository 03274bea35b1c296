//! `joulebench ptd-serve`: the virtual analyzer as a drop-in PTDaemon.
//!
//! It takes PTDaemon's own command line
//! (`-l LOGFILE -p PORT [-b N] [-c CH] [dcFlag] [interfaceFlag] DEVICE_TYPE DEVICE_PORT`),
//! so power-dev's director can start it where it would start PTDaemon. Like
//! PTDaemon it stays in the foreground, serves one connection at a time
//! (through [`LineConn`], cutting off a client that stalls mid-line, sends
//! an endless line, or sits silent with no measurement running: see
//! [`DaemonConfig`]; a measurement a client leaves running is stopped when
//! it goes),
//! appends every sample to LOGFILE, prints timestamped status lines on stdout
//! (they become the director's `ptd_logs.txt`) and ends cleanly when asked
//! (SIGTERM: the caller sets the stop flag).
//!
//! stdout carries what SPEC's PTDaemon prints on its console, each line
//! prefixed `MM-DD-YYYY HH:MM:SS.fff: ` (UTC): `Go with mark '…'` and
//! `Completed test`, `Response to client sent: …` for every reply (the first
//! line of a multi-line one), `WARNING: Uncertainty …` for each sample above
//! the limit, and in a rehearsal `Uncertainty checking for Yokogawa… is
//! activated` at start-up (MLPerf's checker looks for these). On top of
//! PTDaemon's lines it prints `Sample logged: …`, one line per sample: power-dev's
//! director tees our stdout into a Python-buffered file (4 KiB) and reads it
//! back before that buffer is flushed, so the ranging lines reach its
//! `ptd_logs.txt` only once some 4 KiB more have been printed after them.
//!
//! Two threads: the sampler reads the [`PowerSource`] every `read_period`
//! and, while a measurement runs, turns each interval's mean into one sample
//! (an analyzer integrates over its interval too, so averaging the samples
//! gives the source's mean); the main thread answers commands. Both go
//! through one lock around the [`VirtualAnalyzer`], the log file and stdout.

use crate::line_conn::{LineConn, ProtocolError, Waits};
use crate::meter_source::PowerSource;
use crate::virtual_analyzer::{Electrical, Identity, VirtualAnalyzer};
use mlperf_time::Timestamp;
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "PTDaemon command line: {0}; expected -l LOGFILE -p PORT [-b N] [-c CH] [flags] DEVICE_TYPE DEVICE_PORT"
    )]
    Usage(UsageError),
    #[error("LOGFILE {}: {source}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the sampler: {source}")]
    SamplerSpawn {
        #[source]
        source: std::io::Error,
    },
    #[error("the sampler thread panicked")]
    SamplerPanicked,
}

/// What is wrong with PTDaemon's command line ([`DaemonError::Usage`] adds
/// the expected form).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("{flag} needs a value")]
    MissingValue { flag: &'static str },
    #[error("-p {value}: not a port 1-65535")]
    BadPort { value: String },
    #[error("-b {value}: not a board number")]
    BadBoard { value: String },
    #[error("no -l LOGFILE")]
    NoLogfile,
    #[error("no -p PORT")]
    NoPort,
    #[error(
        "{} positional arguments ({}), expected DEVICE_TYPE DEVICE_PORT",
        positional.len(),
        positional.join(" ")
    )]
    Positional { positional: Vec<String> },
    #[error("DEVICE_TYPE `{value}` is not a number")]
    BadDeviceType { value: String },
}

/// PTDaemon's command line, as power-dev's director writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtdCommandLine {
    pub logfile: PathBuf,
    pub port: u16,
    pub gpib_board: Option<u32>,
    pub channels: Option<String>,
    /// Other flags (dcFlag, interfaceFlag), kept as given.
    pub flags: Vec<String>,
    pub device_type: u32,
    pub device_port: String,
}

impl PtdCommandLine {
    pub fn parse(args: &[String]) -> Result<PtdCommandLine, DaemonError> {
        let usage = DaemonError::Usage;
        let mut logfile = None;
        let mut port = None;
        let mut gpib_board = None;
        let mut channels = None;
        let mut flags = Vec::new();
        let mut positional = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |flag: &'static str| {
                it.next()
                    .cloned()
                    .ok_or(usage(UsageError::MissingValue { flag }))
            };
            match a.as_str() {
                "-l" => logfile = Some(PathBuf::from(value("-l")?)),
                "-p" => {
                    let v = value("-p")?;
                    port = Some(
                        v.parse::<u16>()
                            .ok()
                            .filter(|&p| p != 0)
                            .ok_or_else(|| usage(UsageError::BadPort { value: v.clone() }))?,
                    );
                }
                "-b" => {
                    let v = value("-b")?;
                    gpib_board = Some(
                        v.parse()
                            .map_err(|_| usage(UsageError::BadBoard { value: v.clone() }))?,
                    );
                }
                "-c" => channels = Some(value("-c")?),
                f if f.starts_with('-') && f.len() > 1 && positional.is_empty() => {
                    flags.push(f.to_string())
                }
                p => positional.push(p.to_string()),
            }
        }
        let logfile = logfile.ok_or(usage(UsageError::NoLogfile))?;
        let port = port.ok_or(usage(UsageError::NoPort))?;
        let [device_type, device_port] = positional.as_slice() else {
            return Err(usage(UsageError::Positional { positional }));
        };
        let device_type = device_type.parse().map_err(|_| {
            usage(UsageError::BadDeviceType {
                value: device_type.clone(),
            })
        })?;
        Ok(PtdCommandLine {
            logfile,
            port,
            gpib_board,
            channels,
            flags,
            device_type,
            device_port: device_port.clone(),
        })
    }
}

/// Everything the daemon needs besides the meter.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub command_line: PtdCommandLine,
    /// Address to listen on (loopback unless the user names one).
    pub bind: IpAddr,
    pub identity: Identity,
    /// Volts assumed when the meter reports none.
    pub assumed_volts: f64,
    /// Power factor assumed when the meter reports none.
    pub assumed_power_factor: f64,
    /// How often the meter is read.
    pub read_period: Duration,
    /// How long a client may take to end a line it began, and to take each
    /// reply: one that stalls, trickles bytes or does not read is
    /// disconnected.
    pub client_line_timeout: Duration,
    /// How long a client may stay silent while no measurement runs before
    /// it is disconnected, so that it cannot hold the daemon (one client at
    /// a time) for ever. While a measurement runs there is no limit: the
    /// director is silent through the workload.
    pub client_idle_timeout: Duration,
}

struct Shared {
    analyzer: VirtualAnalyzer,
    log: std::fs::File,
    log_path: PathBuf,
    out: Box<dyn Write + Send>,
}

impl Shared {
    fn flush_status(&mut self) {
        for s in self.analyzer.take_status() {
            let _ = writeln!(self.out, "{}: {s}", Timestamp::now());
        }
        let _ = self.out.flush();
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves until `stop` is set. Status lines go to `out` (stdout in the CLI).
pub fn serve(
    config: DaemonConfig,
    source: Box<dyn PowerSource>,
    stop: Arc<AtomicBool>,
    out: Box<dyn Write + Send>,
) -> Result<(), DaemonError> {
    let cl = &config.command_line;
    let log_err = |source| DaemonError::Log {
        path: cl.logfile.clone(),
        source,
    };
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cl.logfile)
        .map_err(log_err)?;
    writeln!(
        log,
        "# {} (assumed when the meter gives none: {} V, power factor {}; amps = W / (V x PF))",
        config.identity.banner(),
        config.assumed_volts,
        config.assumed_power_factor
    )
    .map_err(log_err)?;
    let addr = SocketAddr::new(config.bind, cl.port);
    let listener =
        TcpListener::bind(addr).map_err(|source| DaemonError::Listen { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| DaemonError::Listen { addr, source })?;
    let mut analyzer = VirtualAnalyzer::new(config.identity.clone());
    analyzer.startup_status();
    let shared = Arc::new(Mutex::new(Shared {
        analyzer,
        log,
        log_path: cl.logfile.clone(),
        out,
    }));
    {
        let mut s = lock(&shared);
        if let Identity::Rehearsal { model, .. } = &config.identity {
            if model.device_type != cl.device_type {
                let _ = writeln!(
                    s.out,
                    "{}: note: DEVICE_TYPE {} on the command line, rehearsing {} (type {})",
                    Timestamp::now(),
                    cl.device_type,
                    model.name,
                    model.device_type
                );
            }
        }
        s.flush_status();
        let _ = writeln!(s.out, "{}: listening on {addr}", Timestamp::now());
        let _ = s.out.flush();
    }
    let sampler = {
        let shared = Arc::clone(&shared);
        let stop = Arc::clone(&stop);
        let config = config.clone();
        std::thread::Builder::new()
            .name("ptd-serve-sampler".into())
            .spawn(move || sample_loop(&config, source, &shared, &stop))
            .map_err(|source| DaemonError::SamplerSpawn { source })?
    };
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                tracing::info!(%peer, "ptd-serve: connection");
                if let Err(e) = serve_connection(stream, &config, &shared, &stop) {
                    tracing::warn!(%peer, "ptd-serve: connection ended: {e}");
                }
                // The next client starts afresh: a measurement this one left
                // running is stopped, its unread samples dropped.
                let mut s = lock(&shared);
                s.analyzer.client_gone();
                s.flush_status();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => tracing::warn!("ptd-serve: accept failed: {e}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    let sampler_result = sampler.join();
    let mut s = lock(&shared);
    let _ = writeln!(s.out, "{}: stopping (signal)", Timestamp::now());
    let _ = s.out.flush();
    let path = s.log_path.clone();
    s.log
        .flush()
        .map_err(|source| DaemonError::Log { path, source })?;
    match sampler_result {
        Ok(r) => r,
        Err(_) => Err(DaemonError::SamplerPanicked),
    }
}

/// Serves one client until it closes, misbehaves past a bound, or `stop`
/// is set. The waits are [`LineConn`]'s: a line once begun must end within
/// the line timeout (a client that stalls or trickles bytes is cut off),
/// lines are at most 64 KiB (an endless line costs nothing), a client with
/// no measurement running must send a line within the idle timeout, each
/// reply must go out within the line timeout, and the stop flag is looked
/// at while waiting.
fn serve_connection(
    stream: TcpStream,
    config: &DaemonConfig,
    shared: &Mutex<Shared>,
    stop: &Arc<AtomicBool>,
) -> Result<(), ProtocolError> {
    let waits = Waits {
        line_start: Some(config.client_idle_timeout),
        line_end: config.client_line_timeout,
    };
    let io = |source| ProtocolError::Io {
        peer: "client".into(),
        source,
    };
    stream.set_nonblocking(false).map_err(io)?;
    let mut conn = LineConn::new(stream, waits)
        .map_err(io)?
        .watching(Arc::clone(stop));
    loop {
        // The director is silent through the workload: no limit while a
        // measurement runs.
        let measuring = lock(shared).analyzer.interval_ms().is_some();
        conn.set_line_start_wait((!measuring).then_some(config.client_idle_timeout));
        let text = match conn.recv() {
            Ok(None) => return Ok(()),
            Ok(Some(line)) => line,
            // A whole line that is not UTF-8 is a command like any other
            // (PTDaemon answers it with an error).
            Err(ProtocolError::Malformed {
                line,
                in_step: true,
                ..
            }) => line,
            Err(e @ ProtocolError::Malformed { .. }) => {
                let _ = conn.send("Error: line too long");
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let replies = {
            let mut s = lock(shared);
            let r = s.analyzer.handle(text);
            s.flush_status();
            if let Some(first) = r.first() {
                let _ = writeln!(
                    s.out,
                    "{}: Response to client sent: {first}",
                    Timestamp::now()
                );
                let _ = s.out.flush();
            }
            r
        };
        if !replies.is_empty() {
            // One write for a whole reply (an `RL` answer has a line a sample).
            conn.send(&replies.join("\r\n"))?;
        }
    }
}

fn sample_loop(
    config: &DaemonConfig,
    mut source: Box<dyn PowerSource>,
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
) -> Result<(), DaemonError> {
    let mut sum = (0.0, 0.0, 0.0, 0.0, 0usize);
    let mut interval_start: Option<Instant> = None;
    let mut last_error: Option<String> = None;
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let reading = match source.read() {
            Ok(r) => {
                last_error = None;
                r
            }
            Err(e) => {
                // The same failure is printed once, not every read_period.
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    let mut s = lock(shared);
                    let _ = writeln!(s.out, "{}: ERROR: meter read failed: {e}", Timestamp::now());
                    let _ = s.out.flush();
                }
                last_error = Some(text);
                None
            }
        };
        let mut s = lock(shared);
        if let Some(r) = reading {
            s.analyzer.set_latest_watts(r.watts);
        }
        match s.analyzer.interval_ms() {
            None => {
                interval_start = None;
                sum = (0.0, 0.0, 0.0, 0.0, 0);
            }
            Some(ms) => {
                let start = *interval_start.get_or_insert_with(Instant::now);
                if let Some(r) = reading {
                    let volts = r.volts.unwrap_or(config.assumed_volts);
                    let pf = r.power_factor.unwrap_or(config.assumed_power_factor);
                    let amps = r.amps.unwrap_or(r.watts / (volts * pf));
                    sum.0 += r.watts;
                    sum.1 += volts;
                    sum.2 += amps;
                    sum.3 += pf;
                    sum.4 += 1;
                }
                if start.elapsed() >= Duration::from_millis(u64::from(ms)) {
                    interval_start = Some(start + Duration::from_millis(u64::from(ms)));
                    if sum.4 > 0 {
                        let n = sum.4 as f64;
                        let e = Electrical {
                            watts: sum.0 / n,
                            volts: sum.1 / n,
                            amps: sum.2 / n,
                            power_factor: sum.3 / n,
                        };
                        let now = Timestamp::now();
                        if let Some(line) = s.analyzer.record(e, now) {
                            let path = s.log_path.clone();
                            writeln!(s.log, "{line}")
                                .and_then(|_| s.log.flush())
                                .map_err(|source| DaemonError::Log { path, source })?;
                            let _ = writeln!(s.out, "{now}: Sample logged: {line}");
                        }
                    }
                    sum = (0.0, 0.0, 0.0, 0.0, 0);
                }
            }
        }
        s.flush_status();
        drop(s);
        next += config.read_period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn power_devs_command_lines_parse() {
        let c = PtdCommandLine::parse(&args("-l /tmp/log -p 8888 49 /dev/usbtmc0")).unwrap();
        assert_eq!(c.logfile, PathBuf::from("/tmp/log"));
        assert_eq!((c.port, c.device_type), (8888, 49));
        assert_eq!(c.device_port, "/dev/usbtmc0");
        let c = PtdCommandLine::parse(&args("-l L -p 8889 -b 0 -c 1,2 -D -g 77 COM1")).unwrap();
        assert_eq!(c.gpib_board, Some(0));
        assert_eq!(c.channels.as_deref(), Some("1,2"));
        assert_eq!(c.flags, ["-D", "-g"]);
        assert_eq!(c.device_type, 77);
    }

    #[test]
    fn bad_command_lines_say_what_is_missing() {
        for (line, want) in [
            ("-p 8888 49 x", "no -l"),
            ("-l L 49 x", "no -p"),
            ("-l L -p 0 49 x", "not a port"),
            ("-l L -p 8888 49", "1 positional"),
            ("-l L -p 8888 WT310 x", "not a number"),
            ("-l", "needs a value"),
        ] {
            let e = PtdCommandLine::parse(&args(line)).unwrap_err().to_string();
            assert!(e.contains(want), "{line}: {e}");
        }
        let e = PtdCommandLine::parse(&args("-l L -p 8888 a b c")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PTDaemon command line: 3 positional arguments (a b c), expected DEVICE_TYPE \
             DEVICE_PORT; expected -l LOGFILE -p PORT [-b N] [-c CH] [flags] DEVICE_TYPE DEVICE_PORT"
        );
    }
}
