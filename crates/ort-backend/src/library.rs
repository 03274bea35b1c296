//! Finding and loading ONNX Runtime's shared library, once per process.
//!
//! Where people have it, in order: `ORT_DYLIB_PATH` (ort's own variable:
//! when set, nothing else is tried), the `onnxruntime` Python wheel (PyPI's
//! wheel carries the C API library as `onnxruntime/capi/
//! libonnxruntime.so.<version>`), then the system's library folders. The
//! error lists every place tried.

use crate::OrtError;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The loaded runtime: where it came from and its version.
#[derive(Clone)]
pub struct Runtime {
    pub library: PathBuf,
    /// From the library's file name (`libonnxruntime.so.1.32.0`), or
    /// `unknown`.
    pub version: String,
    /// How it was found (`ORT_DYLIB_PATH`, `python3's onnxruntime`, `system`).
    pub found_by: String,
    pub environment: ort::environment::Environment,
}

/// Loads the runtime on first use; later calls return the same one (ONNX
/// Runtime can be loaded once per process).
pub fn runtime() -> Result<&'static Runtime, OrtError> {
    static RUNTIME: OnceLock<Result<Runtime, OrtError>> = OnceLock::new();
    RUNTIME.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Runtime, OrtError> {
    let candidates = candidates();
    let mut tried = Vec::new();
    for (found_by, path) in candidates {
        if !path.is_file() {
            tried.push(format!("{} ({found_by}): no such file", path.display()));
            continue;
        }
        let environment = ort::init_from(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| b.build().map_err(|e| e.to_string()));
        match environment {
            Ok(environment) => {
                return Ok(Runtime {
                    version: version_of(&path),
                    library: path,
                    found_by,
                    environment,
                })
            }
            Err(reason) => {
                // ORT_DYLIB_PATH is the user's explicit choice: its failure is
                // the answer, not a reason to load something else.
                if found_by == "ORT_DYLIB_PATH" {
                    return Err(OrtError::LoadLibrary { path, reason });
                }
                tried.push(format!("{} ({found_by}): {reason}", path.display()));
            }
        }
    }
    Err(OrtError::NoLibrary { tried })
}

/// Every place to look, in order, with how it was found.
fn candidates() -> Vec<(String, PathBuf)> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return vec![("ORT_DYLIB_PATH".into(), PathBuf::from(p))];
    }
    let mut out = Vec::new();
    for python in ["python3", "python"] {
        match python_wheel_library(python) {
            Some(path) => out.push((format!("{python}'s onnxruntime"), path)),
            None => out.push((
                format!("{python}'s onnxruntime"),
                PathBuf::from(format!("(`{python} -c 'import onnxruntime'` found none)")),
            )),
        }
    }
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/local/lib",
        "/usr/lib64",
        "/usr/lib",
    ] {
        out.push(("system".into(), newest_library_in(Path::new(dir))));
    }
    out
}

/// The library inside `python`'s installed onnxruntime package, if any.
fn python_wheel_library(python: &str) -> Option<PathBuf> {
    let output = Command::new(python)
        .args([
            "-c",
            "import os, onnxruntime; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let package = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let path = newest_library_in(&package.join("capi"));
    path.is_file().then_some(path)
}

/// `libonnxruntime.so.X.Y.Z` with the highest version in `dir`, else the
/// unversioned name (which may not exist).
fn newest_library_in(dir: &Path) -> PathBuf {
    let mut versioned: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so."))
        })
        .collect();
    versioned.sort_by_key(|p| version_key(&version_of(p)));
    versioned
        .pop()
        .unwrap_or_else(|| dir.join("libonnxruntime.so"))
}

fn version_of(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libonnxruntime.so."))
        .filter(|v| !v.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn version_key(version: &str) -> Vec<u64> {
    version.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_versioned_library_in_a_folder_is_chosen() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.32.0",
            "libonnxruntime.so.1.24.1",
            "libonnxruntime_providers_shared.so",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let chosen = newest_library_in(dir.path());
        assert_eq!(version_of(&chosen), "1.32.0");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            newest_library_in(empty.path()),
            empty.path().join("libonnxruntime.so")
        );
        assert_eq!(
            version_of(&empty.path().join("libonnxruntime.so")),
            "unknown"
        );
    }
}
