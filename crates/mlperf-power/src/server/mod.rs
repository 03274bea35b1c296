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

mod config;
mod spl;
mod stages;

pub use config::PowerDevConfig;
pub use spl::spl_line;

use crate::analyzer::{self, Analyzer, AnalyzerConfig, AnalyzerError};
use crate::ntp;
use crate::protocol::{
    Command, LineConn, Mode, ProtocolError, SessionAction, Waits, FETCH_FILES, MAGIC_CLIENT,
    MAGIC_SERVER,
};
use crate::result_folder;
use crate::session_log::SessionLog;
use crate::summary::{unix_now_s, Summary};
use serde_json::json;
use stages::{Session, StageError, State};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    /// How long a client may take to send its greeting, and to end a line
    /// it began: a client that stalls or trickles bytes is disconnected.
    pub client_line_timeout: Duration,
    /// How long a client with no session open may stay silent. During a
    /// session there is no limit: the client runs the workload between two
    /// commands.
    pub client_idle_timeout: Duration,
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

/// A command's reply: the text sent back, or why it is refused (sent as
/// `Error: {refusal}`).
type Reply = Result<String, Refusal>;

/// Why the server refuses a command; the text follows `Error: ` in the reply.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("server clock: {0}")]
    Clock(ntp::NtpError),
    #[error("{file} is not in session {id}")]
    FileNotInSession { file: String, id: String },
    #[error("{file} is not a file a client may download")]
    NotDownloadable { file: String },
    #[error("unknown session {id} (download after `done`)")]
    DownloadUnknownSession { id: String },
    #[error("unknown session {id}")]
    CleanupUnknownSession { id: String },
    #[error("unknown session")]
    UnknownSession { id: String },
    #[error("session {id} already exists; retry in a second")]
    SessionExists { id: String },
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("`done` before the testing run finished (state {state:?})")]
    DoneTooEarly { state: State },
    #[error("writing the session's files: {0}")]
    WriteFiles(std::io::Error),
    #[error(transparent)]
    Stage(#[from] StageError),
}

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

    fn handle_connection(&mut self, stream: TcpStream, stop: &Arc<AtomicBool>) {
        let waits = Waits {
            line_start: Some(self.config.client_line_timeout),
            line_end: self.config.client_line_timeout,
        };
        let Ok(conn) = LineConn::new(stream, waits) else {
            return;
        };
        let mut conn = conn.watching(Arc::clone(stop));
        let mut c = Conn {
            summary: Some(self.new_summary()),
            log: SessionLog::new("ptd-server"),
        };
        c.log.info(format!("Connected {}", conn.peer()));
        let magic = match conn.recv() {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("no greeting: {e}");
                return;
            }
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
            conn.set_line_start_wait(match self.session {
                Some(_) => None,
                None => Some(self.config.client_idle_timeout),
            });
            let line = match conn.recv() {
                Ok(Some(l)) => l,
                Ok(None) => {
                    c.log.info("Connection closed");
                    break;
                }
                Err(ProtocolError::Stopped { .. }) => break,
                Err(e) => {
                    tracing::warn!("client {}: {e}", conn.peer());
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
        if stop.load(Ordering::SeqCst) {
            // serve() abandons the session, saying why.
            return;
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
                Err(e) => Err(Refusal::Clock(e)),
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
                    Err(Refusal::FileNotInSession { file, id })
                }
                Some((last, _)) if *last == id => Err(Refusal::NotDownloadable { file }),
                _ => Err(Refusal::DownloadUnknownSession { id }),
            },
            Command::Cleanup { id } => match self.last_session.take() {
                Some((last, dir)) if last == id => {
                    let _ = std::fs::remove_dir_all(&dir);
                    Ok("OK".into())
                }
                other => {
                    self.last_session = other;
                    Err(Refusal::CleanupUnknownSession { id })
                }
            },
        };
        Some(match reply {
            Ok(r) => r,
            Err(e) => {
                c.log.error(e.to_string());
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
            return Err(Refusal::SessionExists { id });
        }
        std::fs::create_dir_all(dir.join("power")).map_err(|source| Refusal::CreateDir {
            dir: dir.clone(),
            source,
        })?;
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
        let unknown = || Refusal::UnknownSession { id: id.to_string() };
        let Some(mut s) = self.session.take() else {
            return Err(unknown());
        };
        if s.id != id && id != "*" {
            self.session = Some(s);
            return Err(unknown());
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
            Ok(()) => {
                self.session = Some(s);
                Ok("OK".into())
            }
            // A command out of order leaves the session as it was.
            Err(e @ StageError::WrongState(_)) => {
                self.session = Some(s);
                Err(e.into())
            }
            Err(e) => {
                self.abandon(s, &e.to_string(), &mut c.log);
                Err(e.into())
            }
        }
    }
}
