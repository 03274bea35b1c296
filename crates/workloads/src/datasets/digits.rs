//! The real 8×8 handwritten digits that scikit-learn ships
//! (`sklearn/datasets/data/digits.csv.gz`: 1797 images, the test part of
//! UCI's "optdigits"), turned into an image folder in ImageNet validation
//! layout so that the image-folder QSL and the top-1 scorer run on real
//! data. `bench/data/fetch_digits.sh` fetches the file into a cache outside
//! the repository; `cargo run -p workloads --example digits_to_folder`
//! converts it.
//!
//! CSV rows: 64 pixel values (row-major, 0 = background … 16 = full ink)
//! then the class, 0–9. Each image is written as an 8-bit grey PNG with
//! `round(value × 255 / 16)`, which keeps the 17 levels distinct (they are
//! about 16 grey levels apart), so `round(grey × 16 / 255)` recovers them.

use super::labels::VAL_MAP;
use super::DatasetError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where `bench/data/fetch_digits.sh` puts the CSV:
/// `${JOULEBENCH_CACHE:-$HOME/.cache/joulebench}/digits/digits.csv`, unless
/// `$JOULEBENCH_DIGITS` names the file (as the training crate reads it).
pub fn cached_digits_csv() -> Option<PathBuf> {
    if let Some(file) = std::env::var_os("JOULEBENCH_DIGITS").filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(file));
    }
    Some(super::cache_dir()?.join("digits/digits.csv"))
}

/// Side of a digit image, px.
pub const DIGIT_SIDE_PX: usize = 8;
/// The darkest value in the data.
pub const DIGIT_MAX_VALUE: u8 = 16;

/// One handwritten digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digit {
    /// 0..=16 per pixel, row-major.
    pub values: [u8; DIGIT_SIDE_PX * DIGIT_SIDE_PX],
    /// 0..=9.
    pub class: u8,
}

impl Digit {
    /// The image as 8-bit grey levels.
    pub fn grey_levels(&self) -> [u8; DIGIT_SIDE_PX * DIGIT_SIDE_PX] {
        self.values.map(|v| {
            ((u32::from(v) * 255 + u32::from(DIGIT_MAX_VALUE) / 2) / u32::from(DIGIT_MAX_VALUE))
                as u8
        })
    }
}

/// Reads scikit-learn's `digits.csv` (gunzipped).
pub fn read_digits_csv(path: &Path) -> Result<Vec<Digit>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::file(path, e))?;
    let mut digits = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| DatasetError::line(path, number + 1, reason);
        // Values are integers, written as `5` or `5.0` depending on the release.
        let fields: Vec<u8> = line
            .split(',')
            .map(|f| {
                let v: f64 = f
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("`{f}` is not a number")))?;
                if v.fract() != 0.0 || !(0.0..=f64::from(DIGIT_MAX_VALUE)).contains(&v) {
                    return Err(bad(format!("`{f}` is not an integer from 0 to 16")));
                }
                Ok(v as u8)
            })
            .collect::<Result<_, _>>()?;
        let pixels = DIGIT_SIDE_PX * DIGIT_SIDE_PX;
        if fields.len() != pixels + 1 {
            return Err(bad(format!(
                "expected {pixels} pixel values and a class, found {} fields",
                fields.len()
            )));
        }
        let class = fields[pixels];
        if class > 9 {
            return Err(bad(format!("class {class} is not a digit")));
        }
        let mut values = [0u8; DIGIT_SIDE_PX * DIGIT_SIDE_PX];
        values.copy_from_slice(&fields[..pixels]);
        digits.push(Digit { values, class });
    }
    if digits.is_empty() {
        return Err(DatasetError::file(path, "no digits"));
    }
    Ok(digits)
}

/// Writes `digit_NNNNN.png` files and `val_map.txt` into `out` (created if
/// needed): an image folder in ImageNet validation layout, labels = classes.
pub fn write_image_folder(digits: &[Digit], out: &Path) -> Result<(), DatasetError> {
    std::fs::create_dir_all(out).map_err(|e| DatasetError::file(out, e))?;
    let mut val_map = String::new();
    for (i, digit) in digits.iter().enumerate() {
        let name = format!("digit_{i:05}.png");
        let path = out.join(&name);
        let side = DIGIT_SIDE_PX as u32;
        let image = image::GrayImage::from_raw(side, side, digit.grey_levels().to_vec()).ok_or(
            DatasetError::DigitSize {
                index: i,
                levels: digit.grey_levels().len(),
                side: DIGIT_SIDE_PX,
            },
        )?;
        image
            .save_with_format(&path, image::ImageFormat::Png)
            .map_err(|e| DatasetError::file(&path, e))?;
        val_map.push_str(&format!("{name} {}\n", digit.class));
    }
    let labels = out.join(VAL_MAP);
    std::fs::File::create(&labels)
        .and_then(|mut f| f.write_all(val_map.as_bytes()))
        .map_err(|e| DatasetError::file(&labels, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_levels_keep_the_17_values_apart() {
        let mut d = Digit {
            values: [0; 64],
            class: 3,
        };
        for (i, v) in d.values.iter_mut().enumerate() {
            *v = (i % 17) as u8;
        }
        let grey = d.grey_levels();
        assert_eq!(grey[16], 255);
        assert_eq!(grey[1], 16); // 255/16 = 15.94 → 16
        for (g, v) in grey.iter().zip(d.values) {
            assert_eq!(((u32::from(*g) * 16 + 127) / 255) as u8, v);
        }
    }

    #[test]
    fn csv_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("digits.csv");
        let good = vec!["0"; 64].join(",");
        std::fs::write(&path, format!("{good},7\n{good},12\n")).unwrap();
        let e = read_digits_csv(&path).unwrap_err().to_string();
        assert!(e.ends_with("digits.csv:2: class 12 is not a digit"), "{e}");
        std::fs::write(&path, format!("{good}\n")).unwrap();
        let e = read_digits_csv(&path).unwrap_err().to_string();
        assert!(e.contains(":1: expected 64 pixel values"), "{e}");
        std::fs::write(&path, format!("{good},7.0\n")).unwrap();
        assert_eq!(read_digits_csv(&path).unwrap()[0].class, 7);
    }
}
