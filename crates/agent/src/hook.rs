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
        sent_unix_ns: unix_ns(),
    })
}

/// Sends `message` to the agent at `socket`; its reply line.
pub fn send(socket: &Path, message: &HookMessage) -> Result<String, String> {
    let stream = UnixStream::connect(socket)
        .map_err(|e| format!("the agent is not answering at {} ({e})", socket.display()))?;
    stream
        .set_write_timeout(Some(HOOK_TIMEOUT))
        .and_then(|_| stream.set_read_timeout(Some(HOOK_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    (&stream)
        .write_all(message.to_line().as_bytes())
        .map_err(|e| format!("sending to the agent: {e}"))?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .map_err(|e| format!("waiting for the agent: {e}"))?;
    let reply = reply.trim().to_string();
    match reply.strip_prefix("error: ") {
        Some(e) => Err(format!("the agent refused: {e}")),
        None if reply.is_empty() => Err("the agent closed the connection".into()),
        None => Ok(reply),
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
        assert!(err.contains("not answering"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
