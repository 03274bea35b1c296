//! The `.npy` reader (`--inputs DIR`) against hostile files: any bytes, and
//! valid headers with damaged fields (nasty shapes, type strings, lengths),
//! never panic, finish in bounded time, and come back as errors that say
//! what is wrong; a header we write with NumPy's layout reads back as
//! written.

use hostile_input::strategies::{
    config, hostile_bytes, hostile_text, mutate, mutations, nasty_value, timed,
};
use ort_backend::npy::parse_header;
use proptest::prelude::*;

/// An `.npy` file as NumPy writes it: magic, version, header length, the
/// dict padded to a multiple of 64 with a newline, then the data.
fn npy(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let prefix = if version == 1 { 10 } else { 12 };
    let mut h = dict.to_string();
    while !(prefix + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([version, 0]);
    if version == 1 {
        out.extend((h.len() as u16).to_le_bytes());
    } else {
        out.extend((h.len() as u32).to_le_bytes());
    }
    out.extend(h.as_bytes());
    out.extend(data);
    out
}

const WORDS: &[&str] = &[
    "descr",
    "fortran_order",
    "shape",
    "'<f4'",
    "(",
    ")",
    ",",
    ":",
    "{",
    "}",
    "True",
    "False",
];

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_are_a_header_or_an_error(bytes in hostile_bytes(hostile_text(WORDS))) {
        let _ = timed("parse_header", || parse_header(&bytes));
    }

    #[test]
    fn bytes_after_the_magic_are_a_header_or_an_error(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = b"\x93NUMPY".to_vec();
        bytes.extend(tail);
        if let Ok(h) = timed("parse_header", || parse_header(&bytes)) {
            prop_assert!(h.data_offset <= bytes.len());
        }
    }

    #[test]
    fn hostile_fields_in_a_valid_header_are_errors_or_read_as_written(
        version in 1u8..=3,
        kind in nasty_value(),
        dims in proptest::collection::vec(nasty_value(), 0..4),
    ) {
        let dict = format!("{{'descr': '<{kind}', 'fortran_order': False, 'shape': ({}), }}", dims.join(", "));
        let bytes = npy(version, &dict, &[0; 16]);
        match timed("parse_header", || parse_header(&bytes)) {
            Ok(h) => {
                prop_assert_eq!(h.data_offset + 16, bytes.len());
                // Where every dimension is a plain size, it reads as written.
                let plain: Option<Vec<usize>> = dims.iter().map(|d| d.trim().parse().ok()).collect();
                if let Some(want) = plain {
                    prop_assert_eq!(h.shape, want);
                }
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn damaged_headers_never_panic(version in 1u8..=3, changes in mutations(1..4)) {
        let valid = String::from_utf8(npy(version, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 16), }", &[0; 192])).unwrap_or_default();
        let bytes = mutate(&valid, &changes);
        if let Ok(h) = timed("parse_header", || parse_header(&bytes)) {
            prop_assert!(h.data_offset <= bytes.len());
        }
    }

    #[test]
    fn shapes_read_back_as_written(version in 1u8..=3, shape in proptest::collection::vec(0usize..100_000, 0..6)) {
        let tuple = match shape.len() {
            1 => format!("{},", shape[0]),
            _ => shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
        };
        let bytes = npy(version, &format!("{{'descr': '<i8', 'fortran_order': False, 'shape': ({tuple}), }}"), &[]);
        let h = parse_header(&bytes).unwrap();
        prop_assert_eq!(h.kind, "i8");
        prop_assert_eq!(h.shape, shape);
        prop_assert_eq!(h.data_offset, bytes.len());
    }
}

#[test]
fn a_header_length_past_the_file_is_an_error_not_a_slice_panic() {
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend(u32::MAX.to_le_bytes());
    bytes.extend(b"{'descr': '<f4'}");
    assert!(parse_header(&bytes).unwrap_err().contains("does not fit"));
    // Version 2 announced with too few bytes for its 4-byte length.
    assert!(parse_header(b"\x93NUMPY\x02\x00\x10\x00").is_err());
}

/// A file whose sample count times the sample size overflows is an error
/// naming the file, not an overflow panic.
#[test]
fn a_sample_count_past_memory_is_an_error_naming_the_file() {
    use ort::value::TensorElementType;
    use ort_backend::model_io::{Batching, Dim, ModelIo, TensorSpec};
    let dir = tempfile::tempdir().unwrap();
    let io = ModelIo {
        inputs: vec![TensorSpec {
            name: "x".into(),
            element: TensorElementType::Float32,
            dims: vec![Dim::Dynamic(Some("batch".into())), Dim::Fixed(16)],
        }],
        outputs: vec![],
        batching: Batching::Dynamic,
        sample_shapes: vec![vec![16]],
    };
    let huge = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 16), }}",
        usize::MAX / 8
    );
    std::fs::write(dir.path().join("x.npy"), npy(1, &huge, &[0; 64])).unwrap();
    let e = ort_backend::npy::NpyFolder::open(dir.path(), &io, 10)
        .err()
        .unwrap();
    let text = e.to_string();
    assert!(
        text.contains("x.npy") && text.contains("data bytes"),
        "{text}"
    );
}
