//! The ImageNet validation label file, `val_map.txt`: one `FILENAME LABEL`
//! per line, the layout MLPerf's ImageNet reference reads. Sample index
//! (`qsl_idx`) N is the N-th entry, so the file's order is the data set's.
//!
//! As in MLPerf (`re.split(r"\s+", line.strip())`), fields are separated by
//! any whitespace, and a file name therefore holds none. Blank lines are
//! skipped (MLPerf would stop on them); anything else that is not exactly a
//! name and a non-negative integer is an error naming the file and line.

use super::DatasetError;
use std::path::Path;

/// The file name MLPerf's ImageNet layout uses for the labels.
pub const VAL_MAP: &str = "val_map.txt";

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelEntry {
    /// Path relative to the data set folder, as written in the file.
    pub file: String,
    /// Class index (0-based for MLPerf's ResNet-50 v1.5 and torchvision).
    pub label: u32,
    /// Line in the label file (1-based), to point at it in errors.
    pub line: usize,
}

/// Reads a label file.
pub fn read_val_map(path: &Path) -> Result<Vec<LabelEntry>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::file(path, e))?;
    parse_val_map(&text, path)
}

/// Parses label-file text; `path` only names the file in errors.
pub fn parse_val_map(text: &str, path: &Path) -> Result<Vec<LabelEntry>, DatasetError> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line_no = number + 1;
        let mut fields = line.split_whitespace();
        let (file, label) = match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) => continue,
            (Some(file), Some(label), None) => (file, label),
            _ => {
                return Err(DatasetError::line(
                    path,
                    line_no,
                    format!("expected `FILENAME LABEL`, found `{}`", line.trim()),
                ))
            }
        };
        let label: u32 = label.parse().map_err(|_| {
            DatasetError::line(
                path,
                line_no,
                format!("label `{label}` of `{file}` is not a non-negative integer"),
            )
        })?;
        entries.push(LabelEntry {
            file: file.to_string(),
            label,
            line: line_no,
        });
    }
    if entries.is_empty() {
        return Err(DatasetError::file(path, "no `FILENAME LABEL` lines"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<LabelEntry>, DatasetError> {
        parse_val_map(text, Path::new("val_map.txt"))
    }

    #[test]
    fn reads_imagenet_lines_in_order() {
        let entries =
            parse("ILSVRC2012_val_00000001.JPEG 65\n\nILSVRC2012_val_00000002.JPEG\t970\r\n")
                .unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].file, "ILSVRC2012_val_00000001.JPEG");
        assert_eq!(entries[0].label, 65);
        assert_eq!(entries[1].label, 970);
        assert_eq!(entries[1].line, 3);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let e = parse("a.png 1\nb.png\n").unwrap_err().to_string();
        assert_eq!(e, "val_map.txt:2: expected `FILENAME LABEL`, found `b.png`");
        let e = parse("a.png 1\nb.png -3\n").unwrap_err().to_string();
        assert!(e.starts_with("val_map.txt:2: label `-3`"), "{e}");
        let e = parse("a b c\n").unwrap_err().to_string();
        assert!(e.starts_with("val_map.txt:1:"), "{e}");
        assert!(parse("\n\n")
            .unwrap_err()
            .to_string()
            .contains("no `FILENAME"));
    }
}
