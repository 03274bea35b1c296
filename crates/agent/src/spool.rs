//! Hook messages kept for an agent that was not there to take them.
//!
//! A job that starts or ends while its node's agent is down (restarting,
//! upgraded, crashed) would get no record, or one missing its start. So a
//! hook that cannot reach the agent writes its message here (root only,
//! `<job>.<event>.json`), and the agent, back, settles each at the time the
//! hook sent it: the counters kept counting meanwhile, so the figures at
//! that moment lie between the agent's last reading before it went down and
//! its first after; they are interpolated and the record says so.
//!
//! Only the agent's own user may have written a spooled message: the folder
//! must be the agent's and writable by no one else, and so must each file
//! (else anyone could end someone else's job early). Spooled messages are
//! old by design, so the age check of live messages does not apply.

use crate::protocol::{Event, HookMessage};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where hooks and agent keep them unless told otherwise.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/joulebench/spool";

fn file_name(message: &HookMessage) -> String {
    let event = match message.event {
        Event::Start => "start",
        Event::End => "end",
    };
    format!("{}.{event}.json", message.job_id)
}

/// Keeps `message` for the agent (the hook's side). Returns where.
pub fn keep(dir: &Path, message: &HookMessage) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(file_name(message));
    atomic_file::write_private(&path, message.to_line().as_bytes()).map_err(|e| e.to_string())?;
    Ok(path)
}

/// A spooled message, with its file (removed once settled).
#[derive(Debug)]
pub struct Spooled {
    pub path: PathBuf,
    pub message: HookMessage,
}

/// Every message in `dir`, oldest first (the agent's side). Files that are
/// not the agent's own, or not messages, are left where they are and
/// reported in `refused`.
pub fn take(dir: &Path, refused: &mut Vec<String>) -> Vec<Spooled> {
    let me = nix::unistd::geteuid().as_raw();
    let Ok(meta) = std::fs::metadata(dir) else {
        return Vec::new(); // nothing was ever spooled
    };
    if meta.uid() != me || meta.mode() & 0o022 != 0 {
        refused.push(format!(
            "{}: not read: it must be owned by uid {me} and writable by no one else",
            dir.display()
        ));
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let checked = std::fs::symlink_metadata(&path)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                if !m.is_file() || m.uid() != me || m.mode() & 0o022 != 0 {
                    Err(format!("not a file of uid {me} writable by it alone"))
                } else {
                    std::fs::read_to_string(&path).map_err(|e| e.to_string())
                }
            })
            .and_then(|text| {
                serde_json::from_str::<HookMessage>(text.trim()).map_err(|e| e.to_string())
            });
        match checked {
            Ok(message) => out.push(Spooled { path, message }),
            Err(e) => refused.push(format!("{}: {e}", path.display())),
        }
    }
    out.sort_by_key(|s| (s.message.sent_unix_ns, s.message.event == Event::End));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(job_id: u64, event: Event, sent_unix_ns: u64) -> HookMessage {
        HookMessage {
            event,
            job_id,
            uid: 1000,
            gpus: vec![],
            user: None,
            cpus: Some(2),
            sent_unix_ns,
        }
    }

    #[test]
    fn kept_messages_come_back_oldest_first_and_strangers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        keep(&spool, &message(7, Event::End, 30)).unwrap();
        keep(&spool, &message(8, Event::Start, 10)).unwrap();
        keep(&spool, &message(7, Event::Start, 20)).unwrap();
        assert_eq!(
            std::fs::metadata(&spool).unwrap().mode() & 0o777,
            0o700,
            "the folder is the agent's alone"
        );
        std::fs::write(spool.join("junk.json"), "{").unwrap();
        let mut refused = Vec::new();
        let got: Vec<(u64, Event)> = take(&spool, &mut refused)
            .into_iter()
            .map(|s| (s.message.job_id, s.message.event))
            .collect();
        assert_eq!(
            got,
            vec![(8, Event::Start), (7, Event::Start), (7, Event::End)]
        );
        assert_eq!(refused.len(), 1, "{refused:?}");
        // A folder others may write to is not read at all.
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut refused = Vec::new();
        assert!(take(&spool, &mut refused).is_empty());
        assert!(
            refused[0].contains("writable by no one else"),
            "{refused:?}"
        );
    }
}
