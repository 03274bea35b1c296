//! The optical-recognition handwritten digits data set (UCI), as scikit-learn
//! ships it: 1797 images of 8×8 pixels, each pixel a count 0..=16, labels
//! 0..=9. The file is scikit-learn's `digits.csv` (its `digits.csv.gz`
//! unpacked by `bench/training/fetch_digits.sh`): one image per line, 64
//! pixel values then the label, comma-separated.
//!
//! The train / held-out split is fixed and independent of the run's seed, so
//! every run is scored on the same images: every fifth image (index ≡ 4 mod
//! 5) is held out — 359 images, 1438 for training — which keeps the classes
//! balanced because the file interleaves them.

use crate::TrainingError;
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};

/// Image side, pixels.
pub const SIDE: usize = 8;
pub const PIXELS: usize = SIDE * SIDE;
pub const CLASSES: usize = 10;
/// Largest pixel value (a count of set bits in a 4×4 block of the scan).
pub const MAX_PIXEL: f32 = 16.0;
/// Images in scikit-learn's file.
pub const EXPECTED_IMAGES: usize = 1797;
/// SHA-256 of scikit-learn's `digits.csv` (unpacked), checked by the fetch script.
pub const SHA256: &str = "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8";
/// Every `HOLDOUT_EVERY`-th image is held out for evaluation.
pub const HOLDOUT_EVERY: usize = 5;

/// The data set, in file order.
#[derive(Debug, Clone)]
pub struct Digits {
    pub path: PathBuf,
    /// `len × 64` pixel values, 0..=16, row-major per image.
    pub pixels: Vec<f32>,
    pub labels: Vec<u32>,
}

/// Where the data set is looked for when no path is given: `$JOULEBENCH_DIGITS`,
/// else `${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}/digits/digits.csv`
/// (`workloads::datasets::digits::cached_digits_csv`; a relative
/// `.cache/joulebench/...` with neither variable set).
pub fn default_path() -> PathBuf {
    workloads::datasets::digits::cached_digits_csv()
        .unwrap_or_else(|| PathBuf::from(".cache/joulebench/digits/digits.csv"))
}

impl Digits {
    /// Reads and checks the whole file; a bad line is an error naming it.
    pub fn load(path: &Path) -> Result<Digits, TrainingError> {
        let file_err = |reason: String| TrainingError::DataFile {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| {
            file_err(if e.kind() == std::io::ErrorKind::NotFound {
                "not found; run bench/training/fetch_digits.sh (it takes the file from \
                 scikit-learn's wheel on PyPI) or give --data FILE"
                    .to_string()
            } else {
                e.to_string()
            })
        })?;
        if bytes.starts_with(&[0x1f, 0x8b]) {
            return Err(file_err(
                "gzip-compressed; unpack it first (gunzip -k), or run \
                 bench/training/fetch_digits.sh, which writes the plain CSV"
                    .into(),
            ));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            file_err(format!(
                "not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Digits::parse(path, &text)
    }

    /// Parses CSV text (`path` only names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Digits, TrainingError> {
        let line_err = |line: usize, reason: String| TrainingError::DataLine {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != PIXELS + 1 {
                return Err(line_err(
                    line_no,
                    format!(
                        "expected {} comma-separated values (64 pixels, then the label), found {}",
                        PIXELS + 1,
                        fields.len()
                    ),
                ));
            }
            for (col, field) in fields[..PIXELS].iter().enumerate() {
                let v: f32 = field.parse().map_err(|_| {
                    line_err(
                        line_no,
                        format!("pixel {} is '{field}', not a number", col + 1),
                    )
                })?;
                if !(0.0..=MAX_PIXEL).contains(&v) {
                    return Err(line_err(
                        line_no,
                        format!("pixel {} is {v}, outside 0..=16", col + 1),
                    ));
                }
                pixels.push(v);
            }
            let label_text = fields[PIXELS];
            let label: f64 = label_text.parse().map_err(|_| {
                line_err(
                    line_no,
                    format!("the label (value 65) is '{label_text}', not a number"),
                )
            })?;
            if label.fract() != 0.0 || !(0.0..CLASSES as f64).contains(&label) {
                return Err(line_err(
                    line_no,
                    format!("the label (value 65) is {label_text}, not a digit 0..=9"),
                ));
            }
            labels.push(label as u32);
        }
        if labels.is_empty() {
            return Err(TrainingError::DataFile {
                path: path.to_path_buf(),
                reason: "no images in the file".into(),
            });
        }
        Ok(Digits {
            path: path.to_path_buf(),
            pixels,
            labels,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The fixed split: (training indices, held-out indices).
    pub fn split(&self) -> (Vec<usize>, Vec<usize>) {
        (0..self.len()).partition(|i| i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1)
    }

    /// Images `indices` as a `[n, 1, 8, 8]` f32 tensor scaled to 0..=1, and
    /// their labels as a `[n]` u32 tensor, on `device`.
    pub fn batch(
        &self,
        indices: &[usize],
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let mut x = Vec::with_capacity(indices.len() * PIXELS);
        let mut y = Vec::with_capacity(indices.len());
        for &i in indices {
            x.extend(
                self.pixels[i * PIXELS..(i + 1) * PIXELS]
                    .iter()
                    .map(|p| p / MAX_PIXEL),
            );
            y.push(self.labels[i]);
        }
        let n = indices.len();
        Ok((
            Tensor::from_vec(x, (n, 1, SIDE, SIDE), device)?,
            Tensor::from_vec(y, n, device)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(label: &str) -> String {
        let mut f: Vec<String> = (0..64).map(|i| (i % 17).to_string()).collect();
        f.push(label.into());
        f.join(",")
    }

    #[test]
    fn parses_good_lines_and_skips_blank_ones() {
        let text = format!("{}\n\n{}\n", line("3"), line("9"));
        let d = Digits::parse(Path::new("d.csv"), &text).unwrap();
        assert_eq!(d.labels, [3, 9]);
        assert_eq!(d.pixels.len(), 128);
        let (x, y) = d.batch(&[1], &Device::Cpu).unwrap();
        assert_eq!(x.dims(), [1, 1, 8, 8]);
        assert_eq!(y.to_vec1::<u32>().unwrap(), [9]);
        let first: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(first[16], 16.0 / 16.0);
    }

    #[test]
    fn a_bad_line_is_named_with_file_and_line() {
        let short = "1,2,3";
        let err = Digits::parse(Path::new("x/d.csv"), &format!("{}\n{short}\n", line("1")))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x/d.csv:2: expected 65"), "{err}");

        let mut bad_pixel = line("1");
        bad_pixel.replace_range(0..1, "q");
        let err = Digits::parse(Path::new("d.csv"), &bad_pixel)
            .unwrap_err()
            .to_string();
        assert!(err.contains("d.csv:1: pixel 1 is 'q'"), "{err}");

        let err = Digits::parse(Path::new("d.csv"), &line("12"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a digit"), "{err}");

        let mut hot = line("1");
        hot.replace_range(0..1, "99");
        let err = Digits::parse(Path::new("d.csv"), &hot)
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside 0..=16"), "{err}");

        let err = Digits::parse(Path::new("d.csv"), "\n\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no images"), "{err}");
    }

    #[test]
    fn compressed_or_missing_files_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("digits.csv.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
        let err = Digits::load(&gz).unwrap_err().to_string();
        assert!(err.contains("gzip"), "{err}");
        let err = Digits::load(&dir.path().join("none.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("fetch_digits.sh"), "{err}");
    }

    #[test]
    fn the_split_is_fixed_and_disjoint() {
        let text: Vec<String> = (0..EXPECTED_IMAGES)
            .map(|i| line(&(i % 10).to_string()))
            .collect();
        let d = Digits::parse(Path::new("d.csv"), &text.join("\n")).unwrap();
        let (train, held) = d.split();
        assert_eq!((train.len(), held.len()), (1438, 359));
        assert!(held.iter().all(|i| i % 5 == 4));
        assert_eq!(train.len() + held.len(), d.len());
    }
}
