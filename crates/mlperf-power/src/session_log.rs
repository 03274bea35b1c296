//! `client.log` / `server.log`: what one side did during a session, in
//! power-dev's log line format (`{name} {date} {time},{ms} [{LEVEL}] {message}`).
//!
//! Lines are kept in memory for the session and written once at its end
//! (the file is part of the hashed results, so it must not change after);
//! each line also goes to `tracing` so a user watching stderr sees it live.

use std::path::Path;

#[derive(Debug, Clone)]
pub struct SessionLog {
    name: String,
    lines: Vec<String>,
}

impl SessionLog {
    /// `name` is `client` or `ptd-server`, as power-dev names its logs.
    pub fn new(name: &str) -> SessionLog {
        SessionLog {
            name: name.to_string(),
            lines: Vec::new(),
        }
    }

    fn push(&mut self, level: &str, message: &str) {
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S,%3f");
        self.lines
            .push(format!("{} {now} [{level}] {message}", self.name));
    }

    pub fn info(&mut self, message: impl AsRef<str>) {
        tracing::info!(target: "mlperf_power", "{}", message.as_ref());
        self.push("INFO", message.as_ref());
    }

    pub fn warn(&mut self, message: impl AsRef<str>) {
        tracing::warn!(target: "mlperf_power", "{}", message.as_ref());
        self.push("WARNING", message.as_ref());
    }

    pub fn error(&mut self, message: impl AsRef<str>) {
        tracing::error!(target: "mlperf_power", "{}", message.as_ref());
        self.push("ERROR", message.as_ref());
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Writes every line, `\n`-terminated.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut text = self.lines.join("\n");
        text.push('\n');
        Ok(atomic_file::write(path, text.as_bytes())?)
    }
}
