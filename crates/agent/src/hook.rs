//! The hooks' side: `joulebench slurm prolog|epilog` build a message from
//! the environment slurmd gives them and send it to the agent. A hook never
//! fails the job: whatever goes wrong is said on stderr (slurmd's log) and
//! the hook exits 0, within about a second even when the agent is down.

use crate::protocol::{unix_ns, Event, HookMessage};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long a hook waits for the agent, in all.
pub const HOOK_TIMEOUT: Duration = Duration::from_millis(800);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HookError {
    #[error("{0} is not set: not run by slurmd as a Prolog/Epilog?")]
    Missing(&'static str),
    #[error("{var}={value}: {reason}")]
    Bad {
        var: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// The message for `event` from slurmd's environment (`get` reads a
/// variable): `SLURM_JOB_ID`, `SLURM_JOB_UID`, `SLURM_JOB_USER`, and the
/// GPUs from `SLURM_JOB_GPUS`, else `CUDA_VISIBLE_DEVICES`.
pub fn message_from_env(
    event: Event,
    get: impl Fn(&str) -> Option<String>,
) -> Result<HookMessage, HookError> {
    let number = |var: &'static str| -> Result<u64, HookError> {
        let value = get(var).ok_or(HookError::Missing(var))?;
        value.trim().parse().map_err(|_| HookError::Bad {
            var,
            value,
            reason: "not a number",
        })
    };
    let gpus = match get("SLURM_JOB_GPUS").or_else(|| get("CUDA_VISIBLE_DEVICES")) {
        None => Vec::new(),
        Some(list) if list.trim().is_empty() => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|g| g.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| HookError::Bad {
                var: "SLURM_JOB_GPUS",
                value: list.clone(),
                reason: "expected GPU indices like 0,1",
            })?,
    };
    Ok(HookMessage {
        event,
        job_id: number("SLURM_JOB_ID")?,
        uid: u32::try_from(number("SLURM_JOB_UID")?).map_err(|_| HookError::Bad {
            var: "SLURM_JOB_UID",
            value: get("SLURM_JOB_UID").unwrap_or_default(),
            reason: "not a uid",
        })?,
        gpus,
        user: get("SLURM_JOB_USER"),
        // "4" or "4(x2)": the CPUs on each of the job's nodes.
        cpus: get("SLURM_JOB_CPUS_PER_NODE").and_then(|v| {
            v.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        }),
        sent_unix_ns: unix_ns(),
    })
}

/// Why a message got no `ok`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// No agent there, or it did not answer in time: the message can be
    /// spooled for it.
    #[error("{0}")]
    Unreachable(String),
    /// The agent answered `error: …`.
    #[error("the agent refused: {0}")]
    Refused(String),
}

/// Sends `message` to the agent at `socket`; its reply line.
pub fn send(socket: &Path, message: &HookMessage) -> Result<String, SendError> {
    exchange(socket, &message.to_line())
}

/// Every node's record of `job_id`, asked of the agent's query socket.
pub fn query(socket: &Path, job_id: u64) -> Result<Vec<crate::record::JobNodeRecord>, String> {
    let line = format!("{{\"job_id\":{job_id}}}\n");
    let reply = exchange(socket, &line).map_err(|e| e.to_string())?;
    serde_json::from_str(reply.strip_prefix("ok ").unwrap_or(&reply))
        .map_err(|e| format!("the agent's answer is not a list of records: {e}"))
}

/// The jobs running on the node (root only), asked of the query socket.
pub fn open_jobs(socket: &Path) -> Result<Vec<crate::daemon::OpenJobInfo>, String> {
    let reply = exchange(socket, "{\"open_jobs\":true}\n").map_err(|e| e.to_string())?;
    serde_json::from_str(reply.strip_prefix("ok ").unwrap_or(&reply))
        .map_err(|e| format!("the agent's answer is not a list of jobs: {e}"))
}

/// One line out, one line back.
fn exchange(socket: &Path, line: &str) -> Result<String, SendError> {
    use SendError::Unreachable;
    let stream = UnixStream::connect(socket).map_err(|e| {
        Unreachable(format!(
            "the agent is not answering at {} ({e})",
            socket.display()
        ))
    })?;
    stream
        .set_write_timeout(Some(HOOK_TIMEOUT))
        .and_then(|_| stream.set_read_timeout(Some(HOOK_TIMEOUT)))
        .map_err(|e| Unreachable(e.to_string()))?;
    (&stream)
        .write_all(line.as_bytes())
        .map_err(|e| Unreachable(format!("sending to the agent: {e}")))?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .map_err(|e| Unreachable(format!("waiting for the agent: {e}")))?;
    let reply = reply.trim().to_string();
    match reply.strip_prefix("error: ") {
        Some(e) => Err(SendError::Refused(e.to_string())),
        None if reply.is_empty() => Err(Unreachable("the agent closed the connection".into())),
        None => Ok(reply),
    }
}

/// `SLURM_JOB_STDOUT` as slurmd gives it to the Epilog: the pattern, with
/// `%j` and the like unexpanded (Slurm 22.05). Expands what the Epilog's
/// environment can: `%j`/`%J` (job id), `%u` (user), `%N` (node), `%%`;
/// `None` for a pattern with other codes (array or step ids, the job name).
pub fn expand_output_path(pattern: &str, get: impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Slurm allows a width between % and the letter (%5j): not handled.
        match chars.next()? {
            'j' | 'J' => out.push_str(&get("SLURM_JOB_ID")?),
            'u' => out.push_str(&get("SLURM_JOB_USER")?),
            'N' => out.push_str(&get("SLURMD_NODENAME")?),
            '%' => out.push('%'),
            _ => return None,
        }
    }
    Some(out)
}

/// Appends the agent's summary (its reply to the Epilog) to the job's
/// output file, which slurmd names in `SLURM_JOB_STDOUT` for batch jobs,
/// written as the job's user; `var` reads the Epilog's environment.
pub fn append_summary(reply: &str, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    let Some(pattern) = var("SLURM_JOB_STDOUT") else {
        return Ok(()); // an interactive job: its output is a terminal
    };
    let summary: crate::record::JobSummary = reply
        .strip_prefix("ok ")
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or("the agent's reply holds no summary")?;
    let path = expand_output_path(&pattern, &var)
        .ok_or_else(|| format!("cannot expand the output file name {pattern}"))?;
    let id = |k: &str| -> Result<u32, String> {
        var(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{k} is not set"))
    };
    let nodes = var("SLURM_JOB_NUM_NODES")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    append_as_user(
        &path,
        id("SLURM_JOB_UID")?,
        id("SLURM_JOB_GID")?,
        &summary.line(nodes),
    )
}

/// How long appending the summary may take (a FIFO as the output file
/// would block an open for ever).
pub const APPEND_TIMEOUT: Duration = Duration::from_millis(500);

/// Appends `line` to `path` as `uid`/`gid`, never as root: a user who
/// points their output file at a root-owned file gets a permission error,
/// not a corrupted file.
pub fn append_as_user(path: &str, uid: u32, gid: u32, line: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    if uid == 0 {
        return Err("the job ran as root: not writing its output file as root".into());
    }
    let mut child = Command::new("/bin/sh")
        .args(["-c", "cat >> \"$1\"", "sh", path])
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the writer: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(format!("{line}\n").as_bytes());
    }
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(_)) => {
                let mut why = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut why);
                }
                return Err(format!("appending to {path} as uid {uid}: {}", why.trim()));
            }
            Ok(None) if started.elapsed() > APPEND_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "appending to {path} took over {APPEND_TIMEOUT:?}; gave up"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The id of group `name`, for `--records-group`.
pub fn group_id(name: &str) -> Result<u32, String> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(format!("no group named {name}")),
        Err(e) => Err(format!("looking up group {name}: {e}")),
    }
}

/// Makes `command` start in a session of its own, so that it outlives the
/// hook that started it (slurmctld waits for a hook's process group).
pub fn in_own_session(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe, the only call between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_environment_makes_the_message() {
        let env: HashMap<&str, &str> = [
            ("SLURM_JOB_ID", "77"),
            ("SLURM_JOB_UID", "1000"),
            ("SLURM_JOB_USER", "ada"),
            ("CUDA_VISIBLE_DEVICES", "1,3"),
        ]
        .into();
        let get = |k: &str| env.get(k).map(|v| v.to_string());
        let m = message_from_env(Event::Start, get).unwrap();
        assert_eq!((m.job_id, m.uid, m.gpus.clone()), (77, 1000, vec![1, 3]));
        let missing = message_from_env(Event::End, |_| None).unwrap_err();
        assert_eq!(missing, HookError::Missing("SLURM_JOB_ID"));
        let bad = message_from_env(Event::End, |k| (k == "SLURM_JOB_ID").then(|| "x".into()));
        assert!(matches!(bad, Err(HookError::Bad { .. })));
    }

    #[test]
    fn output_patterns_expand_what_the_epilog_knows() {
        let env: HashMap<&str, &str> = [
            ("SLURM_JOB_ID", "9"),
            ("SLURM_JOB_USER", "ada"),
            ("SLURMD_NODENAME", "jbn1"),
        ]
        .into();
        let get = |k: &str| env.get(k).map(|v| v.to_string());
        assert_eq!(
            expand_output_path("/home/%u/out-%j.%N.txt", get).as_deref(),
            Some("/home/ada/out-9.jbn1.txt")
        );
        assert_eq!(expand_output_path("slurm-%A_%a.out", get), None);
        assert_eq!(expand_output_path("100%%", get).as_deref(), Some("100%"));
    }

    #[test]
    fn an_absent_agent_is_an_error_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let m = message_from_env(Event::Start, |k| match k {
            "SLURM_JOB_ID" => Some("1".into()),
            "SLURM_JOB_UID" => Some("0".into()),
            _ => None,
        })
        .unwrap();
        let started = std::time::Instant::now();
        let err = send(&dir.path().join("none.sock"), &m).unwrap_err();
        assert!(
            matches!(&err, SendError::Unreachable(e) if e.contains("not answering")),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
