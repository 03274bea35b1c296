//! Samples from NumPy files: a folder (or an `.npz` archive, `np.savez`)
//! holding `<input name>.npy` for each of the model's inputs, each an array whose first dimension is the
//! sample and whose other dimensions are one sample's shape (what
//! `np.save(f"{name}.npy", batch_of_all_samples)` writes). Every sample is
//! read into memory once.
//!
//! The `.npy` format (version 1 to 3): the magic `\x93NUMPY`, two version
//! bytes, the header's length (2 bytes little-endian in version 1, 4 after),
//! then a Python dict literal with `descr` (e.g. `'<f4'`), `fortran_order`
//! and `shape`, then the data.

use crate::model_io::ModelIo;
use crate::samples::{write_each, SampleSource};
use crate::OrtError;
use loadgen::qsl::QslError;
use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use ort::value::TensorElementType;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The most header bytes read: NumPy pads headers to 64 bytes; a longer
/// one is not an array this tool wrote.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// One array's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// NumPy's type string without the byte order (`f4`, `i8`, `b1`).
    pub kind: String,
    pub shape: Vec<usize>,
    /// Where the data starts.
    pub data_offset: usize,
}

/// Reads an `.npy` header; errors say what is wrong with it.
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a NumPy .npy file (no \\x93NUMPY magic)".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => {
            return Err(format!(
                ".npy version {v} is not one joulebench reads (1 to 3)"
            ))
        }
    };
    if len > MAX_HEADER_BYTES || start + len > bytes.len() {
        return Err(format!("a header of {len} bytes does not fit the file"));
    }
    let header = std::str::from_utf8(&bytes[start..start + len])
        .map_err(|_| "the header is not text".to_string())?;
    let descr = dict_value(header, "descr")
        .and_then(quoted)
        .ok_or("the header has no 'descr' string")?;
    let kind = match descr.as_bytes().first() {
        Some(b'<') | Some(b'|') => descr[1..].to_string(),
        Some(b'>') => return Err(format!("big-endian data ({descr}) is not supported")),
        _ => descr.to_string(),
    };
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported: save a C-ordered copy".into());
    }
    let shape_text = dict_value(header, "shape").ok_or("the header has no 'shape'")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("the shape is not a tuple")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("shape entry `{s}` is not a size"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NpyHeader {
        kind,
        shape,
        data_offset: start + len,
    })
}

/// The text after `'key':` in a Python dict literal, up to the end.
fn dict_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

/// The quoted string at the start of `text` (`'<f4', ...` → `<f4`).
fn quoted(text: &str) -> Option<&str> {
    let quote = text.chars().next().filter(|&c| c == '\'' || c == '"')?;
    let rest = &text[1..];
    rest.find(quote).map(|end| &rest[..end])
}

/// One `.npy` file of an `.npz` archive. `np.savez` stores them
/// uncompressed; a compressed entry (`np.savez_compressed`) is an error
/// that says so.
fn read_entry(zip: &mut zip::ZipArchive<std::fs::File>, name: &str) -> Result<Vec<u8>, String> {
    let compressed = |e: &dyn std::fmt::Display| {
        let text = e.to_string();
        if text.contains("compression method") {
            format!("{name} is compressed ({text}): save with np.savez, not np.savez_compressed")
        } else {
            format!("{name}: {text}")
        }
    };
    let mut entry = zip.by_name(name).map_err(|e| compressed(&e))?;
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(|e| compressed(&e))?;
    Ok(bytes)
}

/// NumPy's type string for an ONNX element type.
fn numpy_kind(t: TensorElementType) -> Option<&'static str> {
    Some(match t {
        TensorElementType::Float32 => "f4",
        TensorElementType::Float64 => "f8",
        TensorElementType::Float16 => "f2",
        TensorElementType::Int8 => "i1",
        TensorElementType::Uint8 => "u1",
        TensorElementType::Int16 => "i2",
        TensorElementType::Uint16 => "u2",
        TensorElementType::Int32 => "i4",
        TensorElementType::Uint32 => "u4",
        TensorElementType::Int64 => "i8",
        TensorElementType::Uint64 => "u8",
        TensorElementType::Bool => "b1",
        _ => return None,
    })
}

/// Every input's samples, from a folder of `.npy` files.
pub struct NpyFolder {
    dir: PathBuf,
    /// Per input: all samples' bytes, one after another.
    data: Vec<Vec<u8>>,
    /// Per input: one sample's bytes.
    sample_bytes: Vec<usize>,
    total: usize,
    performance: usize,
}

impl NpyFolder {
    pub fn open(dir: &Path, io: &ModelIo, performance: usize) -> Result<NpyFolder, OrtError> {
        let mut data = Vec::new();
        let mut sample_bytes = Vec::new();
        let mut total: Option<(usize, String)> = None;
        // An .npz (np.savez) holds the same files in a zip archive.
        let mut archive = if dir.is_file() {
            let file = std::fs::File::open(dir).map_err(|e| OrtError::Model {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
            Some(zip::ZipArchive::new(file).map_err(|e| OrtError::Model {
                path: dir.to_path_buf(),
                reason: format!("not an .npz (zip) archive: {e}"),
            })?)
        } else {
            None
        };
        for (i, spec) in io.inputs.iter().enumerate() {
            let entry = format!("{}.npy", spec.name);
            let path = dir.join(&entry);
            let err = |reason: String| OrtError::Model {
                path: path.clone(),
                reason,
            };
            let bytes = match &mut archive {
                Some(zip) => read_entry(zip, &entry),
                None => std::fs::read(&path).map_err(|e| e.to_string()),
            }
            .map_err(|e| {
                err(format!(
                    "{e} (input `{}` needs its samples here)",
                    spec.name
                ))
            })?;
            let header = parse_header(&bytes).map_err(err)?;
            let want = numpy_kind(spec.element).unwrap_or("?");
            if header.kind != want {
                return Err(err(format!(
                    "holds '{}' data; input {} takes '{want}'",
                    header.kind,
                    spec.describe()
                )));
            }
            let Some((&count, sample_shape)) = header.shape.split_first() else {
                return Err(err(
                    "a scalar: the first dimension must count the samples".into()
                ));
            };
            if sample_shape != io.sample_shapes[i].as_slice() {
                return Err(err(format!(
                    "samples of shape {sample_shape:?}; input {} takes {:?} per sample",
                    spec.describe(),
                    io.sample_shapes[i]
                )));
            }
            match &total {
                Some((n, first)) if *n != count => {
                    return Err(err(format!("{count} samples, but {first} has {n}")))
                }
                None => total = Some((count, path.display().to_string())),
                _ => {}
            }
            let per_sample = io.sample_bytes(i);
            let body = &bytes[header.data_offset..];
            // A hostile count must not overflow the product.
            if count.checked_mul(per_sample) != Some(body.len()) {
                return Err(err(format!(
                    "{} data bytes, expected {count} samples × {per_sample}",
                    body.len()
                )));
            }
            data.push(body.to_vec());
            sample_bytes.push(per_sample);
        }
        let total = total.map_or(0, |(n, _)| n);
        if total == 0 {
            return Err(OrtError::Model {
                path: dir.to_path_buf(),
                reason: "no samples".into(),
            });
        }
        Ok(NpyFolder {
            dir: dir.to_path_buf(),
            data,
            sample_bytes,
            total,
            performance: performance.min(total),
        })
    }
}

impl SampleSource for NpyFolder {
    fn write_input(
        &self,
        indices: &[QuerySampleIndex],
        input: usize,
        dst: &mut [u8],
    ) -> Result<(), QuerySampleIndex> {
        let n = self.sample_bytes[input];
        write_each(indices, dst, |index| {
            self.data[input].get(index * n..(index + 1) * n)
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} ({} samples from .npy files)",
            self.dir.display(),
            self.total
        )
    }
}

impl QuerySampleLibrary for NpyFolder {
    fn name(&self) -> &str {
        "npy-folder"
    }
    fn total_sample_count(&self) -> usize {
        self.total
    }
    fn performance_sample_count(&self) -> usize {
        self.performance
    }
    // Everything is in memory from the start.
    fn load_samples_to_ram(&self, _samples: &[QuerySampleIndex]) -> Result<(), QslError> {
        Ok(())
    }
    fn unload_samples_from_ram(&self, _samples: &[QuerySampleIndex]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn numpys_own_header_reads() {
        let bytes = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 16), }",
            &[0; 192],
        );
        let h = parse_header(&bytes).unwrap();
        assert_eq!(h.kind, "f4");
        assert_eq!(h.shape, vec![3, 16]);
        assert_eq!(h.data_offset, bytes.len() - 192);
        let one = npy(
            "{'descr': '|b1', 'fortran_order': False, 'shape': (5,), }",
            &[1; 5],
        );
        assert_eq!(parse_header(&one).unwrap().shape, vec![5]);
    }

    #[test]
    fn bad_headers_say_what_is_wrong() {
        assert!(parse_header(b"PK\x03\x04 zip")
            .unwrap_err()
            .contains("magic"));
        let big = npy(
            "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }",
            &[0; 4],
        );
        assert!(parse_header(&big).unwrap_err().contains("big-endian"));
        let fortran = npy(
            "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }",
            &[0; 4],
        );
        assert!(parse_header(&fortran).unwrap_err().contains("Fortran"));
        let mut cut = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
            &[],
        );
        cut.truncate(20);
        assert!(parse_header(&cut).unwrap_err().contains("does not fit"));
    }
}
