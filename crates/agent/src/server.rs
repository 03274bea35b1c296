//! The agent's sockets: the hooks' (root only) and the users' questions
//! (`joulebench job`, the exporter's list of running jobs), served from one
//! thread that sleeps in poll(2) between them and the agent's readings.

use crate::daemon::{Agent, AgentConfig, AgentError};
use crate::protocol::{unix_ns, HookMessage, MAX_LINE_BYTES};
use power::meter::Meter;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs the agent on the node's own meters until `stop` is set.
pub fn serve(config: AgentConfig, stop: &AtomicBool) -> Result<(), AgentError> {
    serve_with(config, Vec::new(), stop)
}

/// Runs the agent until `stop` is set, with `extra` meters besides the
/// node's own (a BMC's): polls every interval, answers hooks.
pub fn serve_with(
    config: AgentConfig,
    extra: Vec<Box<dyn Meter>>,
    stop: &AtomicBool,
) -> Result<(), AgentError> {
    let socket = config.socket.clone();
    let query_socket = config.query_socket.clone();
    let interval = config.interval;
    let mut agent = Agent::open(config, extra)?;
    for reason in &agent.unusable {
        tracing::info!("not metered: {reason}");
    }
    let hooks = listen(&socket, 0o600)?;
    let queries = match &query_socket {
        Some(path) => Some(listen(path, 0o666)?),
        None => None,
    };
    let mut next_poll = Instant::now() + interval;
    while !stop.load(Ordering::Relaxed) {
        // Sleep in poll(2) until a hook or a question arrives or the next
        // reading is due (at most STOP_CHECK, to notice `stop`): no busy loop
        // on a node that runs this all the time.
        let wait = next_poll
            .saturating_duration_since(Instant::now())
            .min(STOP_CHECK);
        wait_readable(&hooks, queries.as_ref(), wait);
        match hooks.accept() {
            Ok((stream, _)) => answer(&mut agent, stream),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => tracing::warn!("accepting a hook: {e}"),
        }
        if let Some(queries) = &queries {
            match queries.accept() {
                Ok((stream, _)) => answer_query(&agent, stream),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => tracing::warn!("accepting a query: {e}"),
            }
        }
        if Instant::now() >= next_poll {
            if let Err(e) = agent.tick() {
                tracing::error!("saving the journal: {e}");
            }
            next_poll += interval;
        }
    }
    agent.tick()?;
    let _ = std::fs::remove_file(&socket);
    if let Some(path) = &query_socket {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The longest the agent sleeps before looking at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// Blocks until either listener has a connection waiting, or `wait` passed.
fn wait_readable(hooks: &UnixListener, queries: Option<&UnixListener>, wait: Duration) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = vec![PollFd::new(hooks.as_fd(), PollFlags::POLLIN)];
    if let Some(q) = queries {
        fds.push(PollFd::new(q.as_fd(), PollFlags::POLLIN));
    }
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    // EINTR (a signal: perhaps the stop) and errors alike return to the loop.
    let _ = poll(&mut fds, PollTimeout::from(ms));
}

/// A listening socket at `path` with permission bits `mode`.
fn listen(path: &std::path::Path, mode: u32) -> Result<UnixListener, AgentError> {
    let io = |source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    Ok(listener)
}

/// A user's question: `{"job_id": N}`; the answer, `ok [records]`.
fn answer_query(agent: &Agent, stream: UnixStream) {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let reply = (|| {
        stream
            .set_nonblocking(false)
            .and_then(|_| stream.set_read_timeout(Some(Duration::from_secs(1))))
            .map_err(|e| e.to_string())?;
        let uid = getsockopt(&stream, PeerCredentials)
            .map_err(|e| format!("peer credentials: {e}"))?
            .uid();
        let mut line = String::new();
        BufReader::new((&stream).take(MAX_LINE_BYTES as u64))
            .read_line(&mut line)
            .map_err(|e| format!("reading the question: {e}"))?;
        let question: JobQuery =
            serde_json::from_str(line.trim()).map_err(|e| format!("not a job query: {e}"))?;
        match question {
            JobQuery {
                job_id: Some(job_id),
                open_jobs: None,
            } => {
                let records = agent.records_for(job_id, uid)?;
                serde_json::to_string(&records).map_err(|e| e.to_string())
            }
            JobQuery {
                job_id: None,
                open_jobs: Some(true),
            } => {
                // Who runs what where is for root (the exporter), not users.
                if uid != 0 && uid != nix::unistd::geteuid().as_raw() {
                    return Err("only root may list the node's jobs".into());
                }
                let jobs: Vec<OpenJobInfo> = agent
                    .journal()
                    .jobs
                    .values()
                    .map(|j| OpenJobInfo {
                        job_id: j.job_id,
                        uid: j.uid,
                        user: j.user.clone(),
                        gpus: j.gpus.clone(),
                        started_unix_ns: j.started_unix_ns,
                    })
                    .collect();
                serde_json::to_string(&jobs).map_err(|e| e.to_string())
            }
            _ => Err("ask for one of job_id or open_jobs".into()),
        }
    })();
    let line = match reply {
        Ok(json) => format!("ok {json}"),
        Err(e) => format!("error: {e}"),
    };
    let _ = (&stream).write_all(format!("{line}\n").as_bytes());
}

/// What `joulebench job` (`job_id`) or the exporter (`open_jobs`) asks.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_jobs: Option<bool>,
}

/// A job running on the node, as the exporter labels with it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenJobInfo {
    pub job_id: u64,
    pub uid: u32,
    pub user: Option<String>,
    pub gpus: Vec<u32>,
    pub started_unix_ns: u64,
}

/// Who may talk to the agent: root (the hooks run as root under slurmd)
/// and the agent's own user.
fn allowed(stream: &UnixStream) -> Result<(), String> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let cred = getsockopt(stream, PeerCredentials).map_err(|e| format!("peer credentials: {e}"))?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == 0 || cred.uid() == me {
        Ok(())
    } else {
        Err(format!(
            "uid {} may not talk to the agent (root only)",
            cred.uid()
        ))
    }
}

fn answer(agent: &mut Agent, stream: UnixStream) {
    let reply = (|| {
        stream
            .set_nonblocking(false)
            .and_then(|_| stream.set_read_timeout(Some(Duration::from_secs(1))))
            .map_err(|e| e.to_string())?;
        allowed(&stream)?;
        let mut line = String::new();
        BufReader::new((&stream).take(MAX_LINE_BYTES as u64))
            .read_line(&mut line)
            .map_err(|e| format!("reading the message: {e}"))?;
        let message = HookMessage::parse(&line, unix_ns()).map_err(|e| e.to_string())?;
        agent.handle(&message)
    })();
    let line = match reply {
        Ok(ok) => ok,
        Err(e) => {
            tracing::warn!("hook refused: {e}");
            format!("error: {e}")
        }
    };
    let _ = (&stream).write_all(format!("{line}\n").as_bytes());
}
