//! Every file joulebench writes whole (results, logs written at the end,
//! received files, weights) goes through here: the bytes go to a uniquely
//! named temp file in the same folder, are synced, and the temp file is
//! renamed over the target, then the folder is synced. A crash or Ctrl-C
//! leaves either the old file or the new one, never half of one, and no
//! reader sees a file being written. A writer dropped before `commit` leaves
//! nothing behind.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("writing {}: {source}", path.display())]
pub struct AtomicWriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl From<AtomicWriteError> for std::io::Error {
    /// For callers that report plain I/O errors; the message keeps the path.
    fn from(e: AtomicWriteError) -> Self {
        std::io::Error::new(e.source.kind(), e.to_string())
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes).map_err(|e| file.error(e))?;
    file.commit()
}

/// Writes `bytes` to `path` atomically, readable and writable by the owner
/// only (0600) from the first byte: records other users must not read.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    let mut file = AtomicFile::create_with_mode(path, 0o600)?;
    file.write_all(bytes).map_err(|e| file.error(e))?;
    file.commit()
}

/// Writes `path` atomically through `save`, for libraries that only save to
/// a path (model weights): `save` writes the temp file at the path it is given.
pub fn write_with(
    path: &Path,
    save: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), AtomicWriteError> {
    let file = AtomicFile::create(path)?;
    save(file.tmp.path()).map_err(|e| file.error(e))?;
    file.commit()
}

/// A file written in pieces (a streamed transfer) that appears at its path
/// only when committed.
pub struct AtomicFile {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl AtomicFile {
    /// A temp file beside `path`, creating the folder if needed.
    pub fn create(path: &Path) -> Result<AtomicFile, AtomicWriteError> {
        // A temporary file is private (0600); the file it becomes is an
        // ordinary one, readable as the umask allows (0644 usually), like a
        // file written in place.
        Self::create_with_mode(path, 0o666)
    }

    /// The same, with the file's permission bits (before the umask) on Unix.
    pub fn create_with_mode(path: &Path, mode: u32) -> Result<AtomicFile, AtomicWriteError> {
        let error = |source| AtomicWriteError {
            path: path.to_path_buf(),
            source,
        };
        let folder = folder_of(path);
        std::fs::create_dir_all(folder).map_err(error)?;
        let name = path
            .file_name()
            .map(|n| format!(".{}.", n.to_string_lossy()))
            .unwrap_or_else(|| ".".into());
        let mut builder = tempfile::Builder::new();
        builder.prefix(&name).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(mode));
        }
        #[cfg(not(unix))]
        let _ = mode;
        let tmp = builder.tempfile_in(folder).map_err(error)?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An I/O error of this file, naming its path.
    pub fn error(&self, source: std::io::Error) -> AtomicWriteError {
        AtomicWriteError {
            path: self.path.clone(),
            source,
        }
    }

    /// Syncs the bytes, renames the temp file over the target and syncs the
    /// folder, so the new name survives a power cut too.
    pub fn commit(mut self) -> Result<(), AtomicWriteError> {
        self.tmp.flush().map_err(|e| self.error(e))?;
        self.tmp.as_file().sync_all().map_err(|e| self.error(e))?;
        let path = self.path;
        self.tmp.persist(&path).map_err(|e| AtomicWriteError {
            path: path.clone(),
            source: e.error,
        })?;
        // A folder cannot be opened for syncing everywhere; the file itself is
        // already safe, so this is best effort.
        if let Ok(folder) = std::fs::File::open(folder_of(&path)) {
            let _ = folder.sync_all();
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tmp.flush()
    }
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_file_appears_whole_and_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        write(&path, b"old").unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["result.json"]);
    }

    #[test]
    fn nothing_appears_until_commit_and_nothing_stays_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/log.txt");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"half").unwrap();
        assert!(!path.exists(), "visible before commit");
        drop(f);
        assert!(names(&dir.path().join("sub")).is_empty(), "temp file left");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"whole").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_as_readable_as_one_written_in_place() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let atomic = dir.path().join("atomic");
        write(&atomic, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&atomic), mode(&plain));
    }

    #[cfg(unix)]
    #[test]
    fn a_private_file_is_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        write_private(&path, b"{}").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let err = write(&dir.path().join("file/inside"), b"x").unwrap_err();
        assert!(err.to_string().contains("file/inside"), "{err}");
    }
}
