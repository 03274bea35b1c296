//! The marks channel: a FIFO whose path the measured command finds in
//! `JOULEBENCH_MARKS`, read by one thread that stamps each line on the run
//! clock as it arrives (the protocol is in `report::phases`).
//!
//! Why a FIFO: any program can write a line to a path (`echo train >
//! "$JOULEBENCH_MARKS"`, `open(path, "w")` in Python) with no client
//! library, and lines up to `PIPE_BUF` (4 KiB) from several writers never
//! interleave. The reader opens it read-write, so it never sees end-of-file
//! between writers and a writer's `open` never blocks while we measure.
//!
//! The FIFO lives in a private folder under `$TMPDIR` (FIFOs are local
//! objects, so a shared cluster filesystem would not help), and is removed
//! when measuring ends; a late writer then gets "no such file" instead of
//! blocking forever. To stop, we write a line carrying a token only we know
//! through the same FIFO: everything written before it has been read.

use nix::sys::stat::Mode;
use report::phases::Mark;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Instant;

/// Why phase marks are unavailable (the command then runs unmarked).
#[derive(Debug, thiserror::Error)]
pub enum MarksError {
    #[error("{doing} {}: {source}", path.display())]
    Io {
        doing: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The environment variable that names the marks FIFO.
pub const ENV: &str = "JOULEBENCH_MARKS";

pub struct Marks {
    dir: PathBuf,
    path: PathBuf,
    stop_line: String,
    reader: Option<JoinHandle<Vec<Mark>>>,
}

impl Marks {
    /// Creates the FIFO and starts reading it.
    pub fn start(anchor: Instant) -> Result<Marks, MarksError> {
        let base = std::env::var_os("TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let token = format!("{}-{now_ns}", std::process::id());
        let dir = base.join(format!("joulebench-marks-{token}"));
        std::fs::create_dir(&dir).map_err(|e| MarksError::Io {
            doing: "creating the marks folder",
            path: dir.clone(),
            source: e,
        })?;
        let path = dir.join("marks");
        nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR).map_err(|e| MarksError::Io {
            doing: "creating the marks FIFO",
            path: path.clone(),
            source: e.into(),
        })?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| MarksError::Io {
                doing: "opening the marks FIFO",
                path: path.clone(),
                source: e,
            })?;
        let stop_line = format!("\u{0}joulebench-stop-{token}");
        let stop = stop_line.clone();
        let reader = std::thread::Builder::new()
            .name("marks".into())
            .spawn(move || read_marks(file, anchor, &stop))
            .map_err(|e| MarksError::Io {
                doing: "starting the marks reader",
                path: dir.clone(),
                source: e,
            })?;
        Ok(Marks {
            dir,
            path,
            stop_line,
            reader: Some(reader),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what is left, stops, removes the FIFO; returns every mark.
    pub fn stop(mut self) -> Vec<Mark> {
        self.finish()
    }

    fn finish(&mut self) -> Vec<Mark> {
        let Some(reader) = self.reader.take() else {
            return Vec::new();
        };
        let sent = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(format!("{}\n", self.stop_line).as_bytes()));
        let marks = match sent {
            Ok(()) => reader.join().unwrap_or_default(),
            Err(e) => {
                // Cannot happen while the reader holds the FIFO open; if it
                // does, the marks read so far are lost rather than hang.
                tracing::warn!("stopping the marks reader: {e}");
                Vec::new()
            }
        };
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
        marks
    }
}

impl Drop for Marks {
    fn drop(&mut self) {
        self.finish();
    }
}

fn read_marks(file: std::fs::File, anchor: Instant, stop: &str) -> Vec<Mark> {
    let mut marks = Vec::new();
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let t_ns = power::sampler::ns_since(anchor, Instant::now());
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                if line == stop {
                    break;
                }
                marks.push(Mark {
                    t_ns,
                    line: line.to_string(),
                });
            }
        }
    }
    marks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_written_by_separate_writers_arrive_in_order_with_rising_stamps() {
        let anchor = Instant::now();
        let marks = Marks::start(anchor).unwrap();
        for name in ["load", "train", "eval"] {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(marks.path())
                .unwrap();
            writeln!(f, "{name}").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let path = marks.path().to_path_buf();
        let got = marks.stop();
        let lines: Vec<&str> = got.iter().map(|m| m.line.as_str()).collect();
        assert_eq!(lines, ["load", "train", "eval"]);
        // Stamped when read: rising, but a loaded machine may read two lines
        // closer together than they were written.
        assert!(got.windows(2).all(|w| w[1].t_ns >= w[0].t_ns), "{got:?}");
        assert!(!path.exists(), "the FIFO is removed");
    }
}
