//! `joulebench power-server`: the director, speaking power-dev's v3 protocol.
//!
//! One client at a time (as power-dev). A session walks
//! `new → start,ranging → stop,ranging → start,testing → stop,testing → done`,
//! and the server does to the analyzers exactly what power-dev's does, in the
//! same order, so `ptd_messages` reads the same to MLPerf's checker:
//!
//! - start ranging: start PTDaemon (`Hello`, `Identify`, `RR`), `SR,V,Auto`,
//!   `SR,A,Auto` twice, wait `settle`, `Go,1000,0,{session}_ranging`;
//! - stop ranging: wait `settle`, `Stop`, read the samples (`RL,*,*`/`RL`),
//!   `Uncertainty`, `Watts`; `ranging/spl.txt`; testing ranges from LOGFILE
//!   (max volts, 1.1 × max amps, capped per model);
//! - start testing: `SR,V,{v}`, `SR,A,{a}`, wait, `Go,1000,0,{session}_testing`;
//! - stop testing: wait, `Watts`, `Uncertainty`, `Stop`, samples,
//!   `Uncertainty`, `Watts`; `run_1/spl.txt`, `run_1/ptd_out.txt`;
//! - done: restore the initial ranges, stop PTDaemon, write `server.log`,
//!   hash the folder into `server.json`.
//!
//! A session's folder is `{session}.incomplete` until `done`; a session that
//! fails (PTDaemon exits or stops answering, the client disconnects, the
//! clock is off) keeps that name with `INCOMPLETE.txt` saying why, and the
//! client gets an `Error: ...` reply naming the cause.
//!
//! power-dev's protocol has no authentication. Listening on loopback (the
//! default) keeps it to this machine; beyond it, `token` makes the server
//! take no action for a client that has not sent `joulebench-token,{token}`
//! first — which power-dev's own client cannot send.

use crate::analyzer::{self, Analyzer, AnalyzerConfig, AnalyzerError};
use crate::ntp;
use crate::protocol::{
    Command, LineConn, Mode, SessionAction, FETCH_FILES, MAGIC_CLIENT, MAGIC_SERVER,
};
use crate::result_folder;
use crate::session_log::SessionLog;
use crate::summary::{unix_now_s, Summary};
use power::meter::ptd::{parse_sample_log, testing_ranges, TestingRanges};
use serde_json::json;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything the director needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// PTDaemon (or a wrapper running `joulebench ptd-serve`).
    pub ptd_path: PathBuf,
    pub analyzers: Vec<AnalyzerConfig>,
    /// NTP server checked at start-up and before each stage.
    pub ntp_server: String,
    pub listen: SocketAddr,
    /// Sessions and PTDaemon's log files go here.
    pub out_dir: PathBuf,
    /// A shared token clients must send first (see the module docs).
    pub token: Option<String>,
    /// Wait around each start and stop (power-dev: 10 s), so the analyzer
    /// settles and the samples bracket the load.
    pub settle: Duration,
    pub ptd_timeouts: power::meter::ptd::PtdTimeouts,
    /// How long PTDaemon may take to start listening (power-dev: 30 s).
    pub ptd_start_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("config {}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("start-up probe: {0}")]
    Probe(#[from] AnalyzerError),
    #[error("start-up clock check: {0}")]
    Ntp(#[from] ntp::NtpError),
}

/// Reads power-dev's `server.conf` (`[server] ntpServer, listen`, `[ptd] ptd,
/// analyzerCount`, `[analyzerN] ...`) into the fields it names; the rest of
/// [`ServerConfig`] is left to the caller.
pub struct PowerDevConfig {
    pub ptd_path: PathBuf,
    pub ntp_server: String,
    pub listen: Option<SocketAddr>,
    pub analyzers: Vec<AnalyzerConfig>,
    /// Options we read but do not act on, to tell the user.
    pub ignored: Vec<String>,
}

impl PowerDevConfig {
    pub fn parse(text: &str, path: &Path) -> Result<PowerDevConfig, ServerError> {
        let err = |message: String| ServerError::Config {
            path: path.to_path_buf(),
            message,
        };
        // (section, [(key, value, line)]), keys lower-cased as configparser does.
        type Section = (String, Vec<(String, String, usize)>);
        let mut sections: Vec<Section> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                sections.push((name.trim().to_ascii_lowercase(), Vec::new()));
                continue;
            }
            let Some((k, v)) = line.split_once([':', '=']) else {
                return Err(err(format!("line {}: `{line}` is not KEY: VALUE", n + 1)));
            };
            let Some(section) = sections.last_mut() else {
                return Err(err(format!("line {}: option outside a [section]", n + 1)));
            };
            section
                .1
                .push((k.trim().to_ascii_lowercase(), v.trim().to_string(), n + 1));
        }
        let get = |sec: &str, key: &str| -> Option<(String, usize)> {
            sections
                .iter()
                .filter(|(s, _)| s == sec)
                .flat_map(|(_, kv)| kv.iter())
                .find(|(k, _, _)| k == &key.to_ascii_lowercase())
                .map(|(_, v, n)| (v.clone(), *n))
        };
        let (ptd, _) = get("ptd", "ptd").ok_or_else(|| err("[ptd] ptd: PATH is missing".into()))?;
        let (ntp_server, _) = get("server", "ntpServer")
            .ok_or_else(|| err("[server] ntpServer is missing (power-dev requires it)".into()))?;
        let listen = match get("server", "listen") {
            None => None,
            Some((v, n)) => {
                let (host, port) = v
                    .split_once(' ')
                    .ok_or_else(|| err(format!("line {n}: listen is `ADDR PORT`, got `{v}`")))?;
                let ip: std::net::IpAddr = host
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("line {n}: `{host}` is not an IP address")))?;
                let port: u16 = port
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("line {n}: `{port}` is not a port")))?;
                Some(SocketAddr::new(ip, port))
            }
        };
        let count: usize = match get("ptd", "analyzerCount") {
            None => 1,
            Some((v, n)) => v
                .parse()
                .ok()
                .filter(|&c| c >= 1)
                .ok_or_else(|| err(format!("line {n}: analyzerCount `{v}`")))?,
        };
        let mut analyzers = Vec::new();
        for i in 1..=count {
            let sec = format!("analyzer{i}");
            let need =
                |key: &str| get(&sec, key).ok_or_else(|| err(format!("[{sec}] {key} is missing")));
            let (dt, n) = need("deviceType")?;
            let device_type = dt
                .parse()
                .map_err(|_| err(format!("line {n}: deviceType `{dt}` is not a number")))?;
            let network_port = match get(&sec, "networkPort") {
                None => 8888,
                Some((v, n)) => v
                    .parse()
                    .map_err(|_| err(format!("line {n}: networkPort `{v}` is not a port")))?,
            };
            let channel = match get(&sec, "channel") {
                None => None,
                Some((v, n)) => Some(
                    v.split(',')
                        .map(|c| c.trim().parse::<u32>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| err(format!("line {n}: channel `{v}`")))?,
                ),
            };
            let gpib_board = match get(&sec, "gpibBoard") {
                None => None,
                Some((v, n)) => Some(
                    v.parse()
                        .map_err(|_| err(format!("line {n}: gpibBoard `{v}`")))?,
                ),
            };
            analyzers.push(AnalyzerConfig {
                device_type,
                device_port: need("devicePort")?.0,
                network_port,
                interface_flag: get(&sec, "interfaceFlag").map(|v| v.0),
                channel,
                gpib_board,
                dc_flag: get(&sec, "dcFlag").map(|v| v.0),
            });
        }
        let mut ignored = Vec::new();
        if let Some((mode, _)) = get("server", "rangingMode") {
            if !mode.eq_ignore_ascii_case("AUTO") {
                ignored.push(format!(
                    "[server] rangingMode {mode} (joulebench ranges in AUTO)"
                ));
            }
        }
        Ok(PowerDevConfig {
            ptd_path: PathBuf::from(ptd),
            ntp_server,
            listen,
            analyzers,
            ignored,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Initial,
    Ranging,
    RangingDone,
    Testing,
    TestingDone,
}

struct Session {
    id: String,
    dir: PathBuf,
    state: State,
    analyzers: Vec<Analyzer>,
    ranges: Vec<Option<(String, String)>>,
    go_time: Option<Instant>,
    rehearsal: bool,
}

/// A server bound to its port, ready to serve.
pub struct Server {
    config: ServerConfig,
    listener: TcpListener,
    session: Option<Session>,
    last_session: Option<(String, PathBuf)>,
    stop_after_client: bool,
}

/// What one connection leaves behind.
struct Conn {
    summary: Option<Summary>,
    log: SessionLog,
}

type Reply = Result<String, String>;

impl Server {
    /// Checks the clock and the analyzers (a start-up probe: `Hello`,
    /// `Identify`, `RR`, then restore and stop), then binds.
    pub fn start(config: ServerConfig) -> Result<Server, ServerError> {
        std::fs::create_dir_all(&config.out_dir).map_err(|source| ServerError::Io {
            path: config.out_dir.clone(),
            source,
        })?;
        let reading = ntp::check(&config.ntp_server, Duration::from_secs(5))?;
        tracing::info!(
            "NTP {}: offset {:+.1} ms",
            config.ntp_server,
            reading.offset_s * 1000.0
        );
        for (i, a) in config.analyzers.iter().enumerate() {
            let probe_log = config.out_dir.join(format!("ptd_probe_{}.txt", i + 1));
            let mut probe = Analyzer::start(
                i + 1,
                a,
                &config.ptd_path,
                &analyzer::logfile_path(&config.out_dir, i + 1),
                &probe_log,
                config.ptd_timeouts,
                config.ptd_start_timeout,
            )?;
            tracing::info!("analyzer {}: {}", i + 1, probe.identify_reply);
            if let Some(e) = probe.terminate() {
                return Err(ServerError::Probe(e));
            }
        }
        let listener = TcpListener::bind(config.listen).map_err(|source| ServerError::Listen {
            addr: config.listen,
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
        if !config.listen.ip().is_loopback() && config.token.is_none() {
            tracing::warn!(
                "listening on {} beyond loopback without a token: anyone who can reach this port \
                 can start sessions (power-dev's protocol has no authentication)",
                config.listen
            );
        }
        Ok(Server {
            config,
            listener,
            session: None,
            last_session: None,
            stop_after_client: false,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients one at a time until `stop` is set or a client sent
    /// `stop` and disconnected.
    pub fn serve(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::SeqCst) {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    tracing::info!("connected {peer}");
                    self.handle_connection(stream, &stop);
                    if self.stop_after_client {
                        tracing::info!("stopping: the client asked for it");
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => tracing::warn!("accept failed: {e}"),
            }
        }
        if let Some(s) = self.session.take() {
            let mut log = SessionLog::new("ptd-server");
            self.abandon(s, "the server was stopped during the session", &mut log);
        }
    }

    fn handle_connection(&mut self, stream: TcpStream, stop: &AtomicBool) {
        let Ok(mut conn) = LineConn::new(stream, None) else {
            return;
        };
        let mut c = Conn {
            summary: Some(self.new_summary()),
            log: SessionLog::new("ptd-server"),
        };
        c.log.info(format!("Connected {}", conn.peer()));
        let magic = match conn.recv() {
            Ok(Some(m)) => m,
            _ => return,
        };
        let t = unix_now_s();
        if let Some(s) = c.summary.as_mut() {
            s.message(&magic, t, MAGIC_SERVER, unix_now_s());
        }
        if conn.send(MAGIC_SERVER).is_err() {
            return;
        }
        if magic != MAGIC_CLIENT {
            c.log.error(format!(
                "Handshake failed, expected {MAGIC_CLIENT:?}, got {magic:?}"
            ));
            return;
        }
        let mut authed = self.config.token.is_none();
        while !stop.load(Ordering::SeqCst) {
            let line = match conn.recv() {
                Ok(Some(l)) => l,
                Ok(None) => {
                    c.log.info("Connection closed");
                    break;
                }
                Err(e) => {
                    c.log.error(format!("Connection failed: {e}"));
                    break;
                }
            };
            let cmd_time = unix_now_s();
            let parsed = Command::parse(&line);
            if let Ok(Command::Token(t)) = &parsed {
                let ok = self.config.token.as_deref().is_none_or(|want| want == t);
                authed |= ok;
                let reply = if ok { "OK" } else { "Error: wrong token" };
                c.log
                    .info(format!("token {}", if ok { "accepted" } else { "refused" }));
                if conn.send(reply).is_err() {
                    break;
                }
                continue;
            }
            if !authed {
                c.log.warn(format!(
                    "refused {line:?}: this server requires a token (joulebench power-client \
                     --token-file); power-dev's own client cannot send one"
                ));
                if conn
                    .send("Error: this server requires a token (joulebench power-client --token-file)")
                    .is_err()
                {
                    break;
                }
                continue;
            }
            c.log.info(format!("Got command from the client {line:?}"));
            let reply = match parsed {
                Err(bad) => Some(format!("Error: {bad}")),
                Ok(cmd) => self.handle_cmd(cmd, &mut conn, &mut c),
            };
            let Some(reply) = reply else { continue };
            c.log.info(format!("Sending reply to client {reply:?}"));
            if let Some(s) = c.summary.as_mut() {
                s.message(&line, cmd_time, &reply, unix_now_s());
            }
            if conn.send(&reply).is_err() {
                break;
            }
        }
        if let Some(s) = self.session.take() {
            c.log.warn("Client connection closed unexpectedly");
            self.abandon(s, "the client disconnected before `done`", &mut c.log);
        }
    }

    fn new_summary(&self) -> Summary {
        let mut s = Summary::new("server");
        s.ptd_config = Some(analyzer::ptd_config(
            &self.config.analyzers,
            &self.config.ptd_path,
            &self.config.out_dir,
        ));
        s.joulebench
            .insert("settle_s".into(), json!(self.config.settle.as_secs_f64()));
        s
    }

    fn handle_cmd(&mut self, cmd: Command, conn: &mut LineConn, c: &mut Conn) -> Option<String> {
        let reply: Reply = match cmd {
            Command::Time => Ok(format!("{}", unix_now_s())),
            Command::SetNtp => match ntp::check(&self.config.ntp_server, Duration::from_secs(5)) {
                Ok(_) => Ok("OK".into()),
                Err(e) => Err(format!("server clock: {e}")),
            },
            Command::Stop => {
                c.log
                    .info("The server will be stopped after processing this client");
                self.stop_after_client = true;
                Ok("OK".into())
            }
            Command::Token(_) => Ok("OK".into()),
            Command::New { label, client_uuid } => self.new_session(&label, &client_uuid, c),
            Command::Session { id, action } => self.session_cmd(&id, action, c),
            Command::Download { id, file } => match &self.last_session {
                Some((last, dir)) if *last == id && FETCH_FILES.contains(&file.as_str()) => {
                    let path = dir.join(&file);
                    if path.is_file() {
                        if let Err(e) = conn.send_file(&path) {
                            c.log.error(format!("sending {file}: {e}"));
                        }
                        return None;
                    }
                    Err(format!("{file} is not in session {id}"))
                }
                Some((last, _)) if *last == id => {
                    Err(format!("{file} is not a file a client may download"))
                }
                _ => Err(format!("unknown session {id} (download after `done`)")),
            },
            Command::Cleanup { id } => match self.last_session.take() {
                Some((last, dir)) if last == id => {
                    let _ = std::fs::remove_dir_all(&dir);
                    Ok("OK".into())
                }
                other => {
                    self.last_session = other;
                    Err(format!("unknown session {id}"))
                }
            },
        };
        Some(match reply {
            Ok(r) => r,
            Err(e) => {
                c.log.error(&e);
                format!("Error: {e}")
            }
        })
    }

    fn new_session(&mut self, label: &str, client_uuid: &str, c: &mut Conn) -> Reply {
        if let Some(s) = self.session.take() {
            self.abandon(s, "replaced by a new session", &mut c.log);
        }
        let stamp = chrono::Local::now().format("%Y-%m-%d_%H-%M-%S").to_string();
        let id = if label.is_empty() {
            stamp
        } else {
            format!("{stamp}_{label}")
        };
        let dir = result_folder::incomplete_path(&self.config.out_dir, &id);
        if dir.exists() || self.config.out_dir.join(&id).exists() {
            return Err(format!("session {id} already exists; retry in a second"));
        }
        std::fs::create_dir_all(dir.join("power"))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let server_uuid = uuid::Uuid::new_v4().to_string();
        let summary = c.summary.get_or_insert_with(Summary::default);
        summary.client_uuid = Some(client_uuid.to_string());
        summary.server_uuid = Some(server_uuid.clone());
        summary.session_name = Some(id.clone());
        self.last_session = None;
        self.session = Some(Session {
            id: id.clone(),
            dir,
            state: State::Initial,
            analyzers: Vec::new(),
            ranges: vec![None; self.config.analyzers.len()],
            go_time: None,
            rehearsal: false,
        });
        c.log.info(format!("Session id is {id:?}"));
        Ok(format!("OK {id},{server_uuid}"))
    }

    fn session_cmd(&mut self, id: &str, action: SessionAction, c: &mut Conn) -> Reply {
        let Some(mut s) = self.session.take() else {
            return Err("unknown session".into());
        };
        if s.id != id && id != "*" {
            self.session = Some(s);
            return Err("unknown session".into());
        }
        let result = match action {
            SessionAction::Start(Mode::Ranging) => self.start_ranging(&mut s, c),
            SessionAction::Start(Mode::Testing) => self.start_testing(&mut s, c),
            SessionAction::StartTestingWithRanges { volts, amps } => {
                if s.state == State::RangingDone || s.state == State::Initial {
                    s.ranges = vec![Some((volts, amps)); self.config.analyzers.len()];
                }
                self.start_testing(&mut s, c)
            }
            SessionAction::Stop(Mode::Ranging) => self.stop_ranging(&mut s, c),
            SessionAction::Stop(Mode::Testing) => self.stop_testing(&mut s, c),
            SessionAction::Done => {
                return self.finish(s, c);
            }
        };
        match result {
            Ok(true) => {
                self.session = Some(s);
                Ok("OK".into())
            }
            Ok(false) => {
                let state = s.state;
                self.session = Some(s);
                Err(format!("command not valid in state {state:?}"))
            }
            Err(e) => {
                self.abandon(s, &e, &mut c.log);
                Err(e)
            }
        }
    }

    fn check_clock(&self, c: &mut Conn) -> Result<(), String> {
        match ntp::check(&self.config.ntp_server, Duration::from_secs(5)) {
            Ok(r) => {
                c.log.info(format!(
                    "NTP: offset = {:.3} s, delay = {:.3} s",
                    r.offset_s, r.delay_s
                ));
                Ok(())
            }
            Err(e) => Err(format!("server clock: {e}")),
        }
    }

    fn summary(c: &mut Conn) -> &mut Summary {
        c.summary.get_or_insert_with(Summary::default)
    }

    fn start_ranging(&mut self, s: &mut Session, c: &mut Conn) -> Result<bool, String> {
        match s.state {
            State::Ranging => return Ok(true),
            State::Initial => {}
            _ => return Ok(false),
        }
        self.check_clock(c)?;
        Self::summary(c).phase(Mode::Ranging, 0);
        let n = self.config.analyzers.len();
        let stdout_paths: Vec<PathBuf> = (1..=n)
            .map(|i| {
                if n == 1 {
                    s.dir.join("power/ptd_logs.txt")
                } else {
                    s.dir.join(format!("power/ptd_logs_analyzer_{i}.txt"))
                }
            })
            .collect();
        for (i, cfg) in self.config.analyzers.iter().enumerate() {
            c.log.info(format!(
                "Analyzer [{}] is running PTDaemon: {:?}",
                i + 1,
                cfg.command(
                    &self.config.ptd_path,
                    &analyzer::logfile_path(&self.config.out_dir, i + 1)
                )
            ));
            let a = Analyzer::start(
                i + 1,
                cfg,
                &self.config.ptd_path,
                &analyzer::logfile_path(&self.config.out_dir, i + 1),
                &stdout_paths[i],
                self.config.ptd_timeouts,
                self.config.ptd_start_timeout,
            )
            .map_err(|e| e.to_string())?;
            c.log.info(format!(
                "Analyzer [{}] identifies as {:?}",
                i + 1,
                a.identify_reply
            ));
            if a.identify_reply.contains("joulebench virtual analyzer") {
                let rehearsal = a.identify_reply.contains("REHEARSAL");
                s.rehearsal |= rehearsal;
                c.log.warn(if rehearsal {
                    "the analyzer is joulebench's virtual analyzer in REHEARSAL mode: this \
                     session is a rehearsal, not a measurement"
                } else {
                    "the analyzer is joulebench's virtual analyzer: readings come from a software \
                     meter, not a power analyzer"
                });
                let sm = Self::summary(c);
                sm.joulebench.insert("virtual_analyzer".into(), json!(true));
                if rehearsal {
                    sm.joulebench.insert("rehearsal".into(), json!(true));
                    sm.joulebench.insert(
                        "note".into(),
                        json!(
                            "REHEARSAL: not a measurement; readings come from a joulebench meter"
                        ),
                    );
                }
            }
            s.analyzers.push(a);
        }
        let e = |e: AnalyzerError| e.to_string();
        for a in &mut s.analyzers {
            a.cmd_ok("SR,V,Auto").map_err(e)?;
            a.cmd_ok("SR,A,Auto").map_err(e)?;
        }
        for a in &mut s.analyzers {
            a.cmd_ok("SR,A,Auto").map_err(e)?;
        }
        std::thread::sleep(self.config.settle);
        c.log.info("Starting ranging mode");
        let mark = format!("{}_ranging", s.id);
        for a in &mut s.analyzers {
            a.cmd_ok(&format!("Go,1000,0,{mark}")).map_err(e)?;
        }
        s.go_time = Some(Instant::now());
        s.state = State::Ranging;
        Self::summary(c).phase(Mode::Ranging, 1);
        Ok(true)
    }

    fn read_stage(
        &self,
        s: &mut Session,
        mode: Mode,
        c: &mut Conn,
    ) -> Result<Vec<(String, String)>, String> {
        let mark = format!("{}_{}", s.id, mode.as_str());
        let e = |e: AnalyzerError| e.to_string();
        let mut per_analyzer = Vec::new();
        let mut outs = Vec::new();
        for a in &mut s.analyzers {
            let (mut watts, mut unc) = (String::new(), String::new());
            if mode == Mode::Testing {
                watts = a.cmd("Watts").map_err(e)?;
                unc = a.cmd("Uncertainty").map_err(e)?;
            }
            a.cmd_ok("Stop").map_err(e)?;
            let lines = a.read_lines().map_err(e)?;
            a.cmd("Uncertainty").map_err(e)?;
            a.cmd("Watts").map_err(e)?;
            c.log
                .info(format!("read {} samples for {mark}", lines.len()));
            per_analyzer.push(lines.iter().map(|l| spl_line(l, &mark)).collect::<Vec<_>>());
            outs.push((watts, unc));
        }
        let dir = s.dir.join(mode.dir());
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut text = String::new();
        if s.rehearsal {
            text.push_str("# joulebench REHEARSAL: these samples come from a software meter, not a power analyzer\n");
        }
        for l in merge_analyzers(&per_analyzer) {
            text.push_str(&l);
            text.push('\n');
        }
        let spl = dir.join("spl.txt");
        result_folder::write_atomic(&spl, text.as_bytes())
            .map_err(|e| format!("{}: {e}", spl.display()))?;
        Ok(outs)
    }

    fn stop_ranging(&mut self, s: &mut Session, c: &mut Conn) -> Result<bool, String> {
        match s.state {
            State::RangingDone => return Ok(true),
            State::Ranging => {}
            _ => return Ok(false),
        }
        Self::summary(c).phase(Mode::Ranging, 2);
        std::thread::sleep(self.config.settle);
        self.read_stage(s, Mode::Ranging, c)?;
        let mark = format!("{}_ranging", s.id);
        for (i, cfg) in self.config.analyzers.iter().enumerate() {
            let path = analyzer::logfile_path(&self.config.out_dir, i + 1);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("analyzer {}: LOGFILE {}: {e}", i + 1, path.display()))?;
            let (samples, _) = parse_sample_log(&text);
            let cap = analyzer::max_current_for_device(cfg.device_type);
            let r: TestingRanges = match testing_ranges(&samples, &mark, cap) {
                Ok(r) => r,
                Err(err) => {
                    let short = s
                        .go_time
                        .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
                    return Err(if short {
                        format!("the ranging measurement ended too fast (less than 1 second), no PTDaemon logs generated for {:?}", s.id)
                    } else {
                        format!("analyzer {}: {err}", i + 1)
                    });
                }
            };
            if r.amps_capped {
                c.log.warn(format!(
                    "Analyzer [{}] current range capped at the model's {} A",
                    i + 1,
                    r.amps_a
                ));
            }
            let (v, a) = r.settings();
            c.log.info(format!(
                "Analyzer [{}] testing ranges: {} V, {} A (max {} V, 1.1 x max amps)",
                i + 1,
                v.to_command_value(),
                a.to_command_value(),
                r.volts_v
            ));
            s.ranges[i] = Some((v.to_command_value(), a.to_command_value()));
        }
        s.go_time = None;
        s.state = State::RangingDone;
        Self::summary(c).phase(Mode::Ranging, 3);
        Ok(true)
    }

    fn start_testing(&mut self, s: &mut Session, c: &mut Conn) -> Result<bool, String> {
        match s.state {
            State::Testing => return Ok(true),
            State::RangingDone => {}
            _ => return Ok(false),
        }
        self.check_clock(c)?;
        Self::summary(c).phase(Mode::Testing, 0);
        for (i, a) in s.analyzers.iter_mut().enumerate() {
            let Some((v, amps)) = s.ranges.get(i).cloned().flatten() else {
                return Err(format!("analyzer {}: no testing ranges", i + 1));
            };
            a.cmd_ok(&format!("SR,V,{v}"))
                .map_err(|e| format!("Error setting voltage range: {e}"))?;
            a.cmd_ok(&format!("SR,A,{amps}"))
                .map_err(|e| format!("Error setting current range: {e}"))?;
        }
        std::thread::sleep(self.config.settle);
        c.log.info("Starting testing mode");
        let mark = format!("{}_testing", s.id);
        for a in &mut s.analyzers {
            a.cmd_ok(&format!("Go,1000,0,{mark}"))
                .map_err(|e| e.to_string())?;
        }
        s.state = State::Testing;
        Self::summary(c).phase(Mode::Testing, 1);
        Ok(true)
    }

    fn stop_testing(&mut self, s: &mut Session, c: &mut Conn) -> Result<bool, String> {
        match s.state {
            State::TestingDone => return Ok(true),
            State::Testing => {}
            _ => return Ok(false),
        }
        Self::summary(c).phase(Mode::Testing, 2);
        std::thread::sleep(self.config.settle);
        let outs = self.read_stage(s, Mode::Testing, c)?;
        let mut text = String::new();
        if s.rehearsal {
            text.push_str("# joulebench REHEARSAL: not a measurement\n");
        }
        for (i, (w, u)) in outs.iter().enumerate() {
            text.push_str(&format!(
                "Analyzer {}:\nPower: {w} \nUncertainty: {u}\n",
                i + 1
            ));
        }
        let path = s.dir.join("run_1/ptd_out.txt");
        result_folder::write_atomic(&path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        s.state = State::TestingDone;
        Self::summary(c).phase(Mode::Testing, 3);
        Ok(true)
    }

    /// Stops the analyzers and collects their transcripts.
    fn stop_analyzers(s: &mut Session, log: &mut SessionLog) -> Vec<(String, String)> {
        let mut ptd_messages = Vec::new();
        for (i, a) in s.analyzers.iter_mut().enumerate() {
            if let Some(e) = a.terminate() {
                log.error(format!("Analyzer [{}]: restoring ranges: {e}", i + 1));
            } else {
                log.info(format!(
                    "Analyzer [{}] set initial values for Amps {} and Volts {}",
                    i + 1,
                    a.initial_amps,
                    a.initial_volts
                ));
            }
            ptd_messages.extend(
                a.transcript()
                    .iter()
                    .map(|x| (x.command.clone(), x.reply.clone())),
            );
        }
        let n = s.analyzers.len();
        s.analyzers.clear();
        if n > 1 {
            let mut all = String::new();
            for i in 1..=n {
                let p = s.dir.join(format!("power/ptd_logs_analyzer_{i}.txt"));
                all.push_str(&format!("Analyzer {i}\n"));
                all.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
            let _ = std::fs::write(s.dir.join("power/ptd_logs.txt"), all);
        }
        ptd_messages
    }

    fn finish(&mut self, mut s: Session, c: &mut Conn) -> Reply {
        if s.state != State::TestingDone {
            let state = s.state;
            self.session = Some(s);
            return Err(format!(
                "`done` before the testing run finished (state {state:?})"
            ));
        }
        let ptd_messages = Self::stop_analyzers(&mut s, &mut c.log);
        let mut summary = c.summary.take().unwrap_or_default();
        summary.ptd_messages = Some(ptd_messages);
        let mut write = || -> std::io::Result<PathBuf> {
            c.log.write(&s.dir.join("power/server.log"))?;
            summary.results = crate::summary::hash_dir(&s.dir)?;
            summary.save(&s.dir.join("power/server.json"))?;
            if s.rehearsal {
                result_folder::write_atomic(
                    &s.dir.join(result_folder::REHEARSAL_FILE),
                    b"REHEARSAL: this session ran on joulebench's virtual analyzer in rehearsal mode; \
                      it is not a measurement and must not be submitted.\n",
                )?;
            }
            result_folder::finish(&s.dir)
        };
        match write() {
            Ok(done) => {
                self.last_session = Some((s.id.clone(), done));
                Ok("OK".into())
            }
            Err(e) => {
                let reason = format!("writing the session's files: {e}");
                let _ = result_folder::mark_incomplete(&s.dir, &reason);
                Err(reason)
            }
        }
    }

    fn abandon(&mut self, mut s: Session, reason: &str, log: &mut SessionLog) {
        log.error(format!("session {} abandoned: {reason}", s.id));
        let ptd_messages = Self::stop_analyzers(&mut s, log);
        let _ = log.write(&s.dir.join("power/server.log"));
        let mut summary = Summary::new("server");
        summary.session_name = Some(s.id.clone());
        summary.ptd_messages = Some(ptd_messages);
        summary
            .joulebench
            .insert("incomplete".into(), json!(reason));
        let _ = summary.save(&s.dir.join("power/server.json"));
        let _ = result_folder::mark_incomplete(&s.dir, reason);
    }
}

/// A sample line for `spl.txt`: PTDaemon's `RL` line with the stage's mark
/// (kept when the line has one, inserted after the totals when it has not,
/// as power-dev does).
pub fn spl_line(raw: &str, mark: &str) -> String {
    let raw = raw.trim_end();
    if raw.split(',').any(|f| f == "Mark") {
        return raw.to_string();
    }
    let fields: Vec<&str> = raw.split(',').collect();
    if fields.len() < 10 {
        return format!("{raw},Mark,{mark}");
    }
    let (head, tail) = fields.split_at(10);
    let mut out = head.join(",");
    out.push_str(&format!(",Mark,{mark}"));
    for (i, group) in tail.chunks(8).enumerate() {
        out.push_str(&format!(",Ch{},{}", i + 1, group.join(",")));
    }
    out
}

/// One analyzer: its lines. Several: power-dev's merged form (total watts
/// first, each analyzer's line after).
fn merge_analyzers(per: &[Vec<String>]) -> Vec<String> {
    if per.len() == 1 {
        return per[0].clone();
    }
    let rows = per.iter().map(Vec::len).min().unwrap_or(0);
    (0..rows)
        .map(|r| {
            let first: Vec<&str> = per[0][r].split(',').collect();
            let total: f64 = per
                .iter()
                .filter_map(|lines| lines[r].split(',').nth(3)?.parse::<f64>().ok())
                .filter(|w| *w != -1.0)
                .map(f64::abs)
                .sum();
            let mark = first
                .iter()
                .position(|f| *f == "Mark")
                .and_then(|i| first.get(i + 1))
                .copied()
                .unwrap_or("");
            let mut line = format!(
                "Time,{},Watts,{total:.6},Volts,-1.000000,Amps,-1.000000,PF,-1.000000,Mark,{mark}",
                first.get(1).copied().unwrap_or("")
            );
            for (i, lines) in per.iter().enumerate() {
                line.push_str(&format!(",Analyzer{},{}", i + 1, lines[r]));
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rl_lines_get_the_stage_mark() {
        let with = "Time,11-24-2026 10:00:00.000,Watts,1.000000,Volts,2.000000,Amps,3.000000,PF,0.5,Mark,x_ranging";
        assert_eq!(spl_line(with, "x_ranging"), with);
        let without = "Time,11-24-2026 10:00:00.000,Watts,1.0,Volts,2.0,Amps,3.0,PF,0.5";
        assert_eq!(spl_line(without, "m"), format!("{without},Mark,m"));
        let multi = "Time,t,Watts,3,Volts,-1,Amps,-1,PF,-1,Watts,1,Volts,2,Amps,3,PF,4,Watts,2,Volts,2,Amps,3,PF,4";
        assert_eq!(
            spl_line(multi, "m"),
            "Time,t,Watts,3,Volts,-1,Amps,-1,PF,-1,Mark,m,Ch1,Watts,1,Volts,2,Amps,3,PF,4,Ch2,Watts,2,Volts,2,Amps,3,PF,4"
        );
    }

    #[test]
    fn power_devs_config_file_reads() {
        let text = "[server]\nntpServer: 127.0.0.1\nlisten: 127.0.0.1 4951\n\n[ptd]\nptd: /opt/ptd-wrapper\n\
                    analyzerCount: 1\n\n[analyzer1]\ninterfaceFlag: -y\ndeviceType: 49\ndevicePort: /dev/usbtmc0\n\
                    networkPort: 8888\n";
        let c = PowerDevConfig::parse(text, Path::new("server.conf")).unwrap();
        assert_eq!(c.ptd_path, PathBuf::from("/opt/ptd-wrapper"));
        assert_eq!(c.ntp_server, "127.0.0.1");
        assert_eq!(c.listen, Some("127.0.0.1:4951".parse().unwrap()));
        assert_eq!(c.analyzers[0].device_type, 49);
        assert_eq!(c.analyzers[0].interface_flag.as_deref(), Some("-y"));
        let e = PowerDevConfig::parse("[ptd]\nptd: x\n", Path::new("s.conf"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("ntpServer"), "{e}");
        let e = PowerDevConfig::parse(
            "[server]\nntpServer: x\n[ptd]\nptd: x\n[analyzer1]\ndeviceType: WT\n",
            Path::new("s.conf"),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("deviceType `WT`"), "{e}");
    }
}
