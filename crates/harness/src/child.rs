//! Running the measured command: found before anything starts, started with
//! the terminal left to it (stdin, stdout, stderr inherited), signals passed
//! on, and its exit status turned into ours.
//!
//! Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM and
//! SIGWINCH sent to joulebench are sent on to the command, so `kill`, `scancel`
//! and batch systems reach the job through the wrapper. One exception: a
//! signal raised by the terminal (Ctrl-C, Ctrl-\) already went to the whole
//! foreground process group, the command included; passing it on again would
//! deliver it twice, so it is only recorded. Catching them also keeps
//! joulebench alive long enough to write what it measured.
//!
//! The command's pid is only signalled while it has not been reaped: we wait
//! for its exit without reaping (`waitid(WNOWAIT)`), close the door to the
//! forwarder, then reap. A pid the kernel reused can never be hit.

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use signal_hook::consts::signal::{
    SIGALRM, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH,
};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::Cause;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const FORWARDED: [i32; 8] = [
    SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH,
];

/// Why a command cannot be run, with the shell's exit code for it.
#[derive(Debug)]
pub struct NotRunnable {
    pub message: String,
    /// 127: not found; 126: found but not executable.
    pub exit_code: u8,
}

/// The program's path: as given when it has a `/`, else the first
/// executable match on `PATH` (as the shell and `execvp` look).
pub fn resolve(program: &str) -> std::result::Result<PathBuf, NotRunnable> {
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.is_empty() {
        return Err(NotRunnable {
            message: "empty command name".into(),
            exit_code: 127,
        });
    }
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if !p.exists() {
            Err(NotRunnable {
                message: format!("{program}: no such file"),
                exit_code: 127,
            })
        } else if !executable(&p) {
            Err(NotRunnable {
                message: format!("{program}: not an executable file (check its permissions)"),
                exit_code: 126,
            })
        } else {
            Ok(p)
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(NotRunnable {
        message: format!("{program}: command not found (searched PATH)"),
        exit_code: 127,
    })
}

/// A signal that arrived while the command ran.
#[derive(Debug, Clone)]
pub struct SignalEvent {
    pub at_ns: u64,
    pub name: String,
    /// Sent on to the command (false: the terminal already sent it there).
    pub forwarded: bool,
    pub signal: i32,
}

impl SignalEvent {
    pub fn describe(&self, begin_ns: u64) -> String {
        format!(
            "{} at {:.3} s{}",
            self.name,
            self.at_ns.saturating_sub(begin_ns) as f64 * 1e-9,
            if self.forwarded {
                ", forwarded"
            } else {
                " from the terminal (the command got it directly)"
            }
        )
    }

    /// A signal that asks the job to stop.
    pub fn is_termination(&self) -> bool {
        matches!(self.signal, SIGINT | SIGTERM | SIGHUP | SIGQUIT)
    }
}

/// How the command ended.
pub struct Finished {
    pub status: ExitStatus,
    pub begin_ns: u64,
    pub end_ns: u64,
    pub signals: Vec<SignalEvent>,
}

impl Finished {
    /// The shell's convention: the exit status, or 128 + the signal number.
    pub fn exit_code(&self) -> u8 {
        exit_code(&self.status)
    }
}

pub fn exit_code(status: &ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(s)) => u8::try_from((128 + s).min(255)).unwrap_or(255),
        (None, None) => 1,
    }
}

/// Why a command could not be run or waited for.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("{0}: {1}")]
    Setup(&'static str, #[source] std::io::Error),
    #[error("starting {}: {source}", program.display())]
    Start {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("waiting for {}: {source}", program.display())]
    Wait {
        program: PathBuf,
        source: std::io::Error,
    },
}

/// The forwarder's view of the child: its pid while it may be signalled.
type Door = Arc<Mutex<Option<Pid>>>;

/// Runs `program` with `args` and `env`, forwarding signals, until it exits.
/// Times are on the run clock of `anchor`.
pub fn run(
    program: &Path,
    argv0: &str,
    args: &[String],
    env: &[(&str, &OsStr)],
    anchor: Instant,
) -> Result<Finished, ChildError> {
    // Catch signals before the child exists, so none is lost in between.
    let mut signals = SignalsInfo::<WithOrigin>::new(FORWARDED).map_err(|e| {
        ChildError::Setup(
            "installing the signal handlers that forward signals to the command",
            e,
        )
    })?;
    let handle = signals.handle();
    let door: Door = Arc::new(Mutex::new(None));
    let events = Arc::new(Mutex::new(Vec::new()));

    let mut cmd = Command::new(program);
    cmd.arg0(argv0).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let begin_ns = power::sampler::ns_since(anchor, Instant::now());
    let mut child = cmd.spawn().map_err(|e| ChildError::Start {
        program: program.to_path_buf(),
        source: e,
    })?;
    // Linux pids fit in an i32 (pid_max is at most 2^22).
    let pid = Pid::from_raw(child.id() as i32);
    if let Ok(mut d) = door.lock() {
        *d = Some(pid);
    }

    let forwarder = {
        let door = Arc::clone(&door);
        let events = Arc::clone(&events);
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for origin in signals.forever() {
                    let at_ns = power::sampler::ns_since(anchor, Instant::now());
                    let name = Signal::try_from(origin.signal)
                        .map_or_else(|_| format!("signal {}", origin.signal), |s| s.to_string());
                    let from_terminal = origin.cause == Cause::Kernel;
                    let mut forwarded = false;
                    if !from_terminal {
                        if let (Ok(d), Ok(sig)) = (door.lock(), Signal::try_from(origin.signal)) {
                            if let Some(pid) = *d {
                                forwarded = signal::kill(pid, sig).is_ok();
                            }
                        }
                    }
                    if let Ok(mut e) = events.lock() {
                        e.push(SignalEvent {
                            at_ns,
                            name,
                            forwarded,
                            signal: origin.signal,
                        });
                    }
                }
            })
            .map_err(|e| ChildError::Setup("starting the signal forwarder", e))?
    };

    // Wait for the exit without reaping, shut the door, then reap.
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::debug!("waitid: {e}; falling back to wait");
                break;
            }
        }
    }
    let end_ns = power::sampler::ns_since(anchor, Instant::now());
    if let Ok(mut d) = door.lock() {
        *d = None;
    }
    let status = child.wait().map_err(|e| ChildError::Wait {
        program: program.to_path_buf(),
        source: e,
    })?;
    handle.close();
    let _ = forwarder.join();
    let signals = events.lock().map(|e| e.clone()).unwrap_or_default();
    Ok(Finished {
        status,
        begin_ns,
        end_ns,
        signals,
    })
}

use std::os::unix::process::CommandExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path_or_refused_with_the_shells_codes() {
        assert!(resolve("sh").is_ok());
        let missing = resolve("joulebench-no-such-program").unwrap_err();
        assert_eq!(missing.exit_code, 127);
        assert!(
            missing.message.contains("command not found"),
            "{}",
            missing.message
        );
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("not-exec");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let refused = resolve(script.to_str().unwrap()).unwrap_err();
        assert_eq!(refused.exit_code, 126);
        let gone = resolve("/no/such/dir/prog").unwrap_err();
        assert_eq!(gone.exit_code, 127);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        let code = |c: &str| {
            let s = Command::new("sh").args(["-c", c]).status().unwrap();
            exit_code(&s)
        };
        assert_eq!(code("exit 0"), 0);
        assert_eq!(code("exit 3"), 3);
        assert_eq!(code("kill -TERM $$"), 128 + 15);
    }
}
