//! Writes scikit-learn's real 8×8 handwritten digits as an image folder in
//! ImageNet validation layout (`digit_NNNNN.png` + `val_map.txt`), for the
//! image-folder data set and `joulebench accuracy --kind top1`.
//!
//! ```text
//! bench/data/fetch_digits.sh
//! cargo run -p workloads --example digits_to_folder -- [DIGITS_CSV] OUT_DIR
//! ```
//!
//! DIGITS_CSV defaults to the cache the fetch script fills.

use std::path::PathBuf;
use std::process::ExitCode;
use workloads::datasets::digits::{cached_digits_csv, read_digits_csv, write_image_folder};

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let (csv, out) = match args.as_slice() {
        [out] => match cached_digits_csv() {
            Some(csv) => (csv, out.clone()),
            None => {
                eprintln!(
                    "error: no HOME or JOULEBENCH_CACHE to find the digits in; give DIGITS_CSV"
                );
                return ExitCode::from(2);
            }
        },
        [csv, out] => (csv.clone(), out.clone()),
        _ => {
            eprintln!("usage: digits_to_folder [DIGITS_CSV] OUT_DIR (fetch with bench/data/fetch_digits.sh)");
            return ExitCode::from(2);
        }
    };
    let digits = match read_digits_csv(&csv) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e} (fetch it with bench/data/fetch_digits.sh)");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = write_image_folder(&digits, &out) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    println!(
        "{} digits written to {} (labels in val_map.txt)",
        digits.len(),
        out.display()
    );
    ExitCode::SUCCESS
}
