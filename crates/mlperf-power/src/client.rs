//! `joulebench power-client`: the system-under-test side of MLPerf Power.
//!
//! The client runs the user's workload twice (ranging, then testing) while
//! the director measures, checks the clocks before each stage (its own
//! against NTP, and the server's through `time`: both must be within
//! [`ntp::MAX_OFFSET`]; it never sets the clock), finds the LoadGen logs of
//! each run, downloads the server's files and writes the result folder. The
//! order of commands is power-dev's, so `client.json` and `server.json` list
//! the same messages; `client.json` is written before `done`, as power-dev
//! writes it, because its `results` cover the folder as it is then.
//!
//! The folder is `{output}/{session}.incomplete` until every file is in; on
//! any failure it keeps that name and gets `INCOMPLETE.txt` with the reason.

use crate::loadgen_logs::{self, DETAIL_LOG, SUMMARY_LOG};
use crate::ntp;
use crate::protocol::{
    valid_label, Command, LineConn, Mode, ProtocolError, SessionAction, Waits, FETCH_FILES,
    MAGIC_CLIENT, MAGIC_SERVER, OPTIONAL_FETCH_FILES,
};
use crate::result_folder;
use crate::session_log::SessionLog;
use crate::summary::{unix_now_s, Summary};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `HOST:PORT` of the server.
    pub server: String,
    pub ntp_server: String,
    /// Shell command run for each stage.
    pub workload: String,
    /// Where the workload writes LoadGen's logs.
    pub loadgen_logs: PathBuf,
    /// The result folder goes under here.
    pub output: PathBuf,
    pub label: String,
    /// Ask the server to exit after this client.
    pub stop_server: bool,
    pub token: Option<String>,
    /// Longest wait for one reply (start and stop take `settle` and more).
    pub reply_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("label `{label}`: use letters, digits, `-` and `_` only")]
    BadLabel { label: String },
    #[error(
        "the output folder {} must not be the LoadGen logs folder {} or inside it",
        output.display(),
        loadgen_logs.display()
    )]
    OutputInsideLogs {
        output: PathBuf,
        loadgen_logs: PathBuf,
    },
    #[error("{} already exists", folder.display())]
    FolderExists { folder: PathBuf },
    #[error("cannot connect to the server {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("server: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("`{command}`: the server answered `{reply}`")]
    Refused { command: String, reply: String },
    #[error(
        "clock: this machine and the server differ by {offset_ms:.1} ms, at or above the \
         {bound_ms} ms bound; synchronise both clocks to {ntp_server} (joulebench never sets \
         the clock)"
    )]
    ClockOffset {
        offset_ms: f64,
        bound_ms: f64,
        ntp_server: String,
    },
    #[error("{0}")]
    Ntp(#[from] ntp::NtpError),
    #[error("the workload `{command}` failed ({status})")]
    Workload { command: String, status: String },
    #[error(
        "no {DETAIL_LOG} under {} has power_begin and power_end inside the {} run; make the \
         workload write LoadGen's logs there",
        dir.display(),
        mode.as_str()
    )]
    NoLoadgenLogs { dir: PathBuf, mode: Mode },
    #[error("the folder lacks {}", missing.join(", "))]
    FolderLacks { missing: Vec<&'static str> },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{reason}; the partial folder is {} (marked incomplete)", folder.display())]
    Incomplete { reason: String, folder: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    }
}

struct Client<'a> {
    cfg: &'a ClientConfig,
    conn: LineConn,
    summary: Summary,
    log: SessionLog,
}

impl Client<'_> {
    /// A recorded command (client.json's `messages`).
    fn command(&mut self, line: &str) -> Result<String, ClientError> {
        self.log
            .info(format!("Sending command to the server: {line:?}"));
        let t = unix_now_s();
        let reply = self.conn.command(line)?;
        let t2 = unix_now_s();
        self.log.info(format!("Got response: {reply:?}"));
        self.summary.message(line, t, &reply, t2);
        Ok(reply)
    }

    fn command_ok(&mut self, line: &str) -> Result<(), ClientError> {
        let reply = self.command(line)?;
        if reply != "OK" {
            return Err(ClientError::Refused {
                command: line.to_string(),
                reply,
            });
        }
        Ok(())
    }

    /// Our clock against NTP, then against the server's (`time`).
    fn sync_check(&mut self) -> Result<(), ClientError> {
        let r = ntp::check(&self.cfg.ntp_server, Duration::from_secs(5))?;
        self.log.info(format!(
            "NTP: offset = {:.3} s, delay = {:.3} s",
            r.offset_s, r.delay_s
        ));
        let t1 = unix_now_s();
        let reply = self.command("time")?;
        let t2 = unix_now_s();
        let server: f64 = reply.trim().parse().map_err(|_| ClientError::Refused {
            command: "time".into(),
            reply: reply.clone(),
        })?;
        let (dt1, dt2) = ((t1 - server) * 1000.0, (t2 - server) * 1000.0);
        self.log.info(format!(
            "The time difference between the client and the server is within range {dt1:.3} ms..{dt2:.3} ms"
        ));
        let bound = ntp::MAX_OFFSET.as_secs_f64() * 1000.0;
        if dt1.abs().max(dt2.abs()) >= bound {
            return Err(ClientError::ClockOffset {
                offset_ms: dt1.abs().max(dt2.abs()),
                bound_ms: bound,
                ntp_server: self.cfg.ntp_server.clone(),
            });
        }
        Ok(())
    }
}

fn check_paths(cfg: &ClientConfig) -> Result<(), ClientError> {
    if !valid_label(&cfg.label) {
        return Err(ClientError::BadLabel {
            label: cfg.label.clone(),
        });
    }
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (logs, out) = (abs(&cfg.loadgen_logs), abs(&cfg.output));
    if logs == out || out.starts_with(&logs) {
        return Err(ClientError::OutputInsideLogs {
            output: cfg.output.clone(),
            loadgen_logs: cfg.loadgen_logs.clone(),
        });
    }
    Ok(())
}

fn connect(cfg: &ClientConfig) -> Result<LineConn, ClientError> {
    let err = |reason: String| ClientError::Connect {
        addr: cfg.server.clone(),
        reason,
    };
    let addr = cfg
        .server
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("resolves to no address".into()))?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| err(e.to_string()))?;
    LineConn::new(stream, Waits::replies_within(cfg.reply_timeout)).map_err(|e| err(e.to_string()))
}

/// Runs the whole session; returns the finished result folder.
pub fn run(cfg: &ClientConfig) -> Result<PathBuf, ClientError> {
    check_paths(cfg)?;
    std::fs::create_dir_all(&cfg.output).map_err(io(&cfg.output))?;
    let conn = connect(cfg)?;
    let mut c = Client {
        cfg,
        conn,
        summary: Summary::new("client"),
        log: SessionLog::new("client"),
    };
    let magic = c.command(MAGIC_CLIENT)?;
    if magic != MAGIC_SERVER {
        return Err(ClientError::Refused {
            command: MAGIC_CLIENT.into(),
            reply: magic,
        });
    }
    if let Some(token) = &cfg.token {
        // Not recorded: the token must not land in client.json.
        let reply = c.conn.command(&Command::Token(token.clone()).to_line())?;
        if reply != "OK" {
            return Err(ClientError::Refused {
                command: "joulebench-token".into(),
                reply,
            });
        }
    }
    if cfg.stop_server {
        c.command_ok("stop")?;
    }
    c.sync_check()?;
    let client_uuid = uuid::Uuid::new_v4().to_string();
    let new = Command::New {
        label: cfg.label.clone(),
        client_uuid: client_uuid.clone(),
    }
    .to_line();
    let reply = c.command(&new)?;
    let (session, server_uuid) = reply
        .strip_prefix("OK ")
        .and_then(|r| r.split_once(','))
        .filter(|(s, u)| valid_label(s) && uuid::Uuid::parse_str(u).is_ok())
        .ok_or_else(|| ClientError::Refused {
            command: new.clone(),
            reply: reply.clone(),
        })?;
    let (session, server_uuid) = (session.to_string(), server_uuid.to_string());
    c.summary.client_uuid = Some(client_uuid);
    c.summary.server_uuid = Some(server_uuid);
    c.summary.session_name = Some(session.clone());
    c.log.info(format!("Session id is {session:?}"));
    let dir = result_folder::incomplete_path(&cfg.output, &session);
    if cfg.output.join(&session).exists() || dir.exists() {
        return Err(ClientError::FolderExists {
            folder: cfg.output.join(&session),
        });
    }
    std::fs::create_dir_all(dir.join("power")).map_err(io(&dir))?;
    match session_body(&mut c, &session, &dir) {
        Ok(()) => result_folder::finish(&dir).map_err(io(&dir)),
        Err(e) => {
            let reason = e.to_string();
            c.log.error(&reason);
            let _ = c.log.write(&dir.join("power/client.log"));
            let _ = result_folder::mark_incomplete(&dir, &reason);
            Err(ClientError::Incomplete {
                reason,
                folder: dir,
            })
        }
    }
}

fn session_body(c: &mut Client, session: &str, dir: &Path) -> Result<(), ClientError> {
    for mode in [Mode::Ranging, Mode::Testing] {
        c.log
            .info(format!("Running workload in {} mode", mode.as_str()));
        c.sync_check()?;
        let id = session.to_string();
        c.summary.phase(mode, 0);
        c.command_ok(
            &Command::Session {
                id: id.clone(),
                action: SessionAction::Start(mode),
            }
            .to_line(),
        )?;
        c.summary.phase(mode, 1);
        c.log
            .info(format!("Running the workload {:?}", c.cfg.workload));
        let start = unix_now_s();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&c.cfg.workload)
            .env("JOULEBENCH_POWER_STAGE", mode.as_str())
            .status()
            .map_err(|e| ClientError::Workload {
                command: c.cfg.workload.clone(),
                status: e.to_string(),
            })?;
        let end = unix_now_s();
        c.summary.phase(mode, 2);
        if !status.success() {
            return Err(ClientError::Workload {
                command: c.cfg.workload.clone(),
                status: status.to_string(),
            });
        }
        c.command_ok(
            &Command::Session {
                id,
                action: SessionAction::Stop(mode),
            }
            .to_line(),
        )?;
        c.summary.phase(mode, 3);
        let logs = loadgen_logs::find(&c.cfg.loadgen_logs, start, end)
            .map_err(io(&c.cfg.loadgen_logs))?
            .ok_or_else(|| ClientError::NoLoadgenLogs {
                dir: c.cfg.loadgen_logs.clone(),
                mode,
            })?;
        let out = dir.join(mode.dir());
        c.log.info(format!(
            "Copying loadgen logs from {:?} to {:?}",
            logs.display().to_string(),
            out.display().to_string()
        ));
        std::fs::create_dir_all(&out).map_err(io(&out))?;
        for f in [DETAIL_LOG, SUMMARY_LOG] {
            let from = logs.join(f);
            std::fs::copy(&from, out.join(f)).map_err(io(&from))?;
        }
    }
    c.log.info("Done runs");
    c.log
        .write(&dir.join("power/client.log"))
        .map_err(io(dir))?;
    c.summary.results = crate::summary::hash_dir(dir).map_err(io(dir))?;
    let client_json = dir.join("power/client.json");
    c.summary.save(&client_json).map_err(io(&client_json))?;
    // client.json as written now is final (its messages end before `done`,
    // as power-dev's); only our own key may be added to it below.
    let mut saved = c.summary.clone();
    c.command_ok(
        &Command::Session {
            id: session.to_string(),
            action: SessionAction::Done,
        }
        .to_line(),
    )?;
    for f in FETCH_FILES {
        let line = Command::Download {
            id: session.to_string(),
            file: f.to_string(),
        }
        .to_line();
        c.conn.send(&line)?;
        match c.conn.recv_file(&dir.join(f)) {
            Ok(_) => {}
            Err(ProtocolError::Malformed { line, .. }) if OPTIONAL_FETCH_FILES.contains(&f) => {
                tracing::warn!("the server does not offer {f}: {line}");
            }
            Err(ProtocolError::Malformed { line, .. }) => {
                return Err(ClientError::Refused {
                    command: format!("download,{session},{f}"),
                    reply: line,
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    c.command_ok(
        &Command::Cleanup {
            id: session.to_string(),
        }
        .to_line(),
    )?;
    let missing = result_folder::missing_files(dir);
    if !missing.is_empty() {
        return Err(ClientError::FolderLacks { missing });
    }
    // A rehearsal says so in our files too (client.json is not hashed).
    let server_json = std::fs::read_to_string(dir.join("power/server.json")).unwrap_or_default();
    let rehearsal = serde_json::from_str::<serde_json::Value>(&server_json)
        .ok()
        .and_then(|v| v["joulebench"]["rehearsal"].as_bool())
        .unwrap_or(false);
    if rehearsal {
        saved
            .joulebench
            .insert("rehearsal".into(), serde_json::json!(true));
        saved.joulebench.insert(
            "note".into(),
            serde_json::json!(
                "REHEARSAL: not a measurement; the server ran joulebench's virtual analyzer"
            ),
        );
        saved.save(&client_json).map_err(io(&client_json))?;
        atomic_file::write(
            &dir.join(result_folder::REHEARSAL_FILE),
            b"REHEARSAL: this session ran on joulebench's virtual analyzer in rehearsal mode; \
              it is not a measurement and must not be submitted.\n",
        )
        .map_err(|e| io(dir)(e.into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed variants keep the words the stringly-typed ones had.
    #[test]
    fn errors_keep_their_wording() {
        let clock = ClientError::ClockOffset {
            offset_ms: 1234.56,
            bound_ms: 1000.0,
            ntp_server: "time.example".into(),
        };
        assert_eq!(
            clock.to_string(),
            "clock: this machine and the server differ by 1234.6 ms, at or above the 1000 ms \
             bound; synchronise both clocks to time.example (joulebench never sets the clock)"
        );
        let logs = ClientError::NoLoadgenLogs {
            dir: "logs".into(),
            mode: Mode::Testing,
        };
        assert_eq!(
            logs.to_string(),
            "no mlperf_log_detail.txt under logs has power_begin and power_end inside the \
             testing run; make the workload write LoadGen's logs there"
        );
        let lacks = ClientError::FolderLacks {
            missing: vec!["a", "b"],
        };
        assert_eq!(lacks.to_string(), "the folder lacks a, b");
        let label = ClientError::BadLabel {
            label: "a b".into(),
        };
        assert_eq!(
            label.to_string(),
            "label `a b`: use letters, digits, `-` and `_` only"
        );
    }
}
