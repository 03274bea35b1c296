//! `client.json` / `server.json`: what each side saw of a session.
//!
//! Both files share one layout (power-dev's "summary"): the two uuids, the
//! session name, every message with its send and receive times, the four
//! phase timestamps of each stage, the sha1 of every result file, and the
//! sha1 of the tool's own sources. MLPerf's checker compares the two files
//! with each other and with the folder, so the field names and shapes here
//! are exactly power-dev's. `sources` holds the sha1 of *our* binary: it
//! never matches power-dev's released files, and is not meant to.
//!
//! Fields of our own live under `joulebench` (tool, version, rehearsal), a
//! key the checker does not read.

use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as Python's `time.time()`.
pub fn unix_now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds on a monotonic clock (from the first call in this process).
pub fn monotonic_s() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// One command and its reply, with the times each was sent or received.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub cmd: String,
    pub cmd_time: f64,
    pub reply: String,
    pub reply_time: f64,
}

/// What one side of a session writes to its json file.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub session_name: Option<String>,
    pub client_uuid: Option<String>,
    pub server_uuid: Option<String>,
    pub messages: Vec<Message>,
    /// PTDaemon commands and replies (server only).
    pub ptd_messages: Option<Vec<(String, String)>>,
    /// The analyzer configuration (server only).
    pub ptd_config: Option<Value>,
    pub results: BTreeMap<String, String>,
    ranging: Vec<[f64; 2]>,
    testing: Vec<[f64; 2]>,
    /// Our own fields, under the `joulebench` key.
    pub joulebench: Map<String, Value>,
}

impl Summary {
    pub fn new(role: &str) -> Summary {
        let mut joulebench = Map::new();
        joulebench.insert("tool".into(), json!(format!("joulebench power-{role}")));
        joulebench.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        Summary {
            joulebench,
            ..Summary::default()
        }
    }

    pub fn message(&mut self, cmd: &str, cmd_time: f64, reply: &str, reply_time: f64) {
        self.messages.push(Message {
            cmd: cmd.to_string(),
            cmd_time,
            reply: reply.to_string(),
            reply_time,
        });
    }

    /// Records phase `n` (0 before start, 1 after start, 2 before stop,
    /// 3 after stop) of a stage, now.
    pub fn phase(&mut self, mode: crate::protocol::Mode, n: usize) {
        let list = match mode {
            crate::protocol::Mode::Ranging => &mut self.ranging,
            crate::protocol::Mode::Testing => &mut self.testing,
        };
        let pair = [unix_now_s(), monotonic_s()];
        if list.len() == n {
            list.push(pair);
        } else if list.len() > n {
            list[n] = pair;
        }
    }

    pub fn phases(&self, mode: crate::protocol::Mode) -> &[[f64; 2]] {
        match mode {
            crate::protocol::Mode::Ranging => &self.ranging,
            crate::protocol::Mode::Testing => &self.testing,
        }
    }

    pub fn to_json(&self) -> Value {
        let messages: Vec<Value> = self
            .messages
            .iter()
            .map(|m| {
                json!({"cmd": m.cmd, "cmd_time": m.cmd_time, "reply": m.reply, "reply_time": m.reply_time})
            })
            .collect();
        let mut v = json!({
            "version": "1.0",
            "timezone": timezone_offset_s(),
            "modules": {},
            "sources": own_sources(),
            "messages": messages,
            "uuid": {"client": self.client_uuid, "server": self.server_uuid},
            "session_name": self.session_name,
            "results": self.results,
            "phases": {"ranging": self.ranging, "testing": self.testing},
            "joulebench": self.joulebench,
        });
        if let Some(p) = &self.ptd_messages {
            let list: Vec<Value> = p
                .iter()
                .map(|(c, r)| json!({"cmd": c, "reply": r}))
                .collect();
            v["ptd_messages"] = Value::Array(list);
        }
        if let Some(c) = &self.ptd_config {
            v["ptd_config"] = c.clone();
        }
        v
    }

    /// Writes the json file (temp file + rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json()).map_err(std::io::Error::other)?;
        Ok(atomic_file::write(path, text.as_bytes())?)
    }
}

/// Seconds to add to local time to get UTC (Python's `-tm_gmtoff`).
pub fn timezone_offset_s() -> i64 {
    -i64::from(chrono::Local::now().offset().local_minus_utc())
}

/// `{"joulebench": sha1 of the running executable}`: honest about what ran.
/// Hashed once per process, streamed (a debug build is tens of MB).
fn own_sources() -> Value {
    static DIGEST: OnceLock<String> = OnceLock::new();
    let digest = DIGEST.get_or_init(|| {
        let hash = |path: std::path::PathBuf| -> std::io::Result<String> {
            let mut h = Sha1::new();
            std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
            Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
        };
        std::env::current_exe()
            .and_then(hash)
            .unwrap_or_else(|_| "unknown".into())
    });
    json!({ "joulebench-executable": digest })
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// sha1 of every file under `dir`, keyed by its `/`-separated relative path
/// (as power-dev's and the checker's `hash_dir`).
pub fn hash_dir(dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .map_err(std::io::Error::other)?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(rel, sha1_hex(&std::fs::read(&path)?));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_the_standard_vectors() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn hash_dir_uses_slash_relative_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("power")).unwrap();
        std::fs::write(d.path().join("power/a.txt"), "abc").unwrap();
        std::fs::write(d.path().join("b.txt"), "").unwrap();
        let h = hash_dir(d.path()).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h["power/a.txt"], "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert!(h.contains_key("b.txt"));
    }

    #[test]
    fn phases_fill_in_order_and_json_has_the_checker_fields() {
        let mut s = Summary::new("client");
        s.phase(crate::protocol::Mode::Ranging, 0);
        s.phase(crate::protocol::Mode::Ranging, 1);
        s.phase(crate::protocol::Mode::Ranging, 3); // out of order: ignored
        assert_eq!(s.phases(crate::protocol::Mode::Ranging).len(), 2);
        let v = s.to_json();
        for key in [
            "version",
            "timezone",
            "modules",
            "sources",
            "messages",
            "uuid",
            "session_name",
            "results",
            "phases",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert!(v.get("debug").is_none());
    }
}
