//! What the Prolog and Epilog hooks tell the agent: one JSON line, answered
//! with one line (`ok …` or `error: …`).

use serde::{Deserialize, Serialize};

/// A job's start or end on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookMessage {
    pub event: Event,
    pub job_id: u64,
    /// The job owner's uid (`SLURM_JOB_UID`).
    pub uid: u32,
    /// The GPUs the job was given on this node (`SLURM_JOB_GPUS`, else
    /// `CUDA_VISIBLE_DEVICES`): device indices.
    #[serde(default)]
    pub gpus: Vec<u32>,
    /// The job owner's name, for the summary the Epilog writes.
    #[serde(default)]
    pub user: Option<String>,
    /// CPUs allocated to the job on this node (`SLURM_JOB_CPUS_PER_NODE`),
    /// for splitting idle energy on a shared node.
    #[serde(default)]
    pub cpus: Option<u32>,
    /// When the hook sent it, ns since the Unix epoch (a stale message is
    /// refused).
    pub sent_unix_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Start,
    End,
}

/// Longest line the agent reads: a message is a few hundred bytes.
pub const MAX_LINE_BYTES: usize = 4096;

/// How old a message may be when it arrives (a replayed one is older).
pub const MAX_AGE_NS: u64 = 60_000_000_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("not a hook message: {0}")]
    Malformed(String),
    #[error(
        "the message is {age_s:.0} s old (sent {sent_unix_ns}); replayed or the clocks differ"
    )]
    Stale { sent_unix_ns: u64, age_s: f64 },
}

impl HookMessage {
    /// Parses one line and checks its age against `now_unix_ns`.
    pub fn parse(line: &str, now_unix_ns: u64) -> Result<HookMessage, MessageError> {
        let message: HookMessage = serde_json::from_str(line.trim())
            .map_err(|e| MessageError::Malformed(e.to_string()))?;
        if message.job_id == 0 {
            return Err(MessageError::Malformed("job_id 0".into()));
        }
        let age = now_unix_ns.abs_diff(message.sent_unix_ns);
        if age > MAX_AGE_NS {
            return Err(MessageError::Stale {
                sent_unix_ns: message.sent_unix_ns,
                age_s: age as f64 / 1e9,
            });
        }
        Ok(message)
    }

    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a hook message serialises");
        line.push('\n');
        line
    }
}

/// Now, ns since the Unix epoch.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_ones_are_refused() {
        let m = HookMessage {
            event: Event::Start,
            job_id: 42,
            uid: 1000,
            gpus: vec![1],
            user: Some("ada".into()),
            cpus: Some(2),
            sent_unix_ns: 1_000_000_000_000,
        };
        let now = m.sent_unix_ns + 1;
        assert_eq!(HookMessage::parse(&m.to_line(), now), Ok(m.clone()));
        assert!(matches!(
            HookMessage::parse(&m.to_line(), now + 2 * MAX_AGE_NS),
            Err(MessageError::Stale { .. })
        ));
        for bad in [
            "",
            "{}",
            "not json",
            r#"{"event":"start","job_id":0,"uid":1,"sent_unix_ns":1}"#,
            r#"{"event":"stop","job_id":1,"uid":1,"sent_unix_ns":1}"#,
            r#"{"event":"start","job_id":1,"uid":1,"sent_unix_ns":1,"extra":2}"#,
        ] {
            assert!(
                matches!(HookMessage::parse(bad, 1), Err(MessageError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
