//! The image-folder data set on files made here: layout errors name the
//! file (and line), images decode and preprocess to hand-computed values,
//! and scoring reads a hand-made `mlperf_log_accuracy.json`.

use loadgen::QuerySampleLibrary;
use std::path::Path;
use workloads::datasets::accuracy_log::read_accuracy_log;
use workloads::datasets::image_folder::ImageFolder;
use workloads::datasets::labels::read_val_map;
use workloads::datasets::preprocess::{ColorMode, ImagePreprocess};
use workloads::datasets::top1::{score_top1, ClassEncoding};
use workloads::image_qsl::ImageSource;

/// A 4×4 RGB PNG whose every row is the ramp 0, 70, 140, 210 (grey).
fn write_ramp_png(path: &Path) {
    let mut pixels = Vec::new();
    for _row in 0..4 {
        for v in [0u8, 70, 140, 210] {
            pixels.extend([v, v, v]);
        }
    }
    image::RgbImage::from_raw(4, 4, pixels)
        .unwrap()
        .save(path)
        .unwrap();
}

fn small_preprocess() -> ImagePreprocess {
    let mut p = ImagePreprocess::mlperf_resnet50_pytorch();
    p.resize_shorter_px = 2;
    p.crop_px = 2;
    p
}

#[test]
fn folder_loads_and_preprocesses_to_hand_computed_values() {
    let dir = tempfile::tempdir().unwrap();
    write_ramp_png(&dir.path().join("ramp.png"));
    // The same pixels as JPEG would not be exact; a second PNG, grey 1-channel.
    image::GrayImage::from_raw(2, 2, vec![0, 255, 51, 102])
        .unwrap()
        .save(dir.path().join("grey.png"))
        .unwrap();
    std::fs::write(dir.path().join("val_map.txt"), "ramp.png 7\ngrey.png 2\n").unwrap();

    let folder = ImageFolder::open(dir.path(), small_preprocess()).unwrap();
    assert_eq!(folder.total_sample_count(), 2);
    assert_eq!(folder.label(1), Some(2));
    folder.load_samples_to_ram(&[0, 1]).unwrap();
    let batch = folder.batch(&[0, 1]).unwrap();
    assert_eq!(batch.dims(), &[2, 3, 2, 2]);
    let values: Vec<f32> = batch.flatten_all().unwrap().to_vec1().unwrap();

    // Pillow's bilinear 4 → 2 on the ramp: (0·3 + 70·3 + 140) / 7 = 50 and
    // (70 + 140·3 + 210·3) / 7 = 160 (weights 3/7, 3/7, 1/7); rows are
    // equal, so the vertical pass keeps them. Then (x/255 - mean) / std.
    let norm = |x: f32, c: usize| {
        let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        (x / 255.0 - mean[c]) / std[c]
    };
    let expected_ramp: Vec<f32> = (0..3)
        .flat_map(|c| [50.0, 160.0, 50.0, 160.0].map(|x| norm(x, c)))
        .collect();
    for (got, want) in values[..12].iter().zip(&expected_ramp) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
    // Red of (50/255 - 0.485) / 0.229 = -1.2616662: the number itself.
    assert!((values[0] + 1.261_666_2).abs() < 1e-5, "{}", values[0]);
    // A grey image becomes three equal channels (as OpenCV reads it).
    assert!((values[12 + 1] - norm(255.0, 0)).abs() < 1e-6);
    assert!((values[12 + 4 + 1] - norm(255.0, 1)).abs() < 1e-6);

    folder.unload_samples_from_ram(&[0]);
    assert!(folder
        .batch(&[0])
        .unwrap_err()
        .to_string()
        .contains("not loaded"));
    assert!(folder.describe().contains("2 images"));
}

#[test]
fn single_channel_models_get_one_plane() {
    let dir = tempfile::tempdir().unwrap();
    image::GrayImage::from_raw(2, 2, vec![0, 255, 51, 102])
        .unwrap()
        .save(dir.path().join("g.png"))
        .unwrap();
    std::fs::write(dir.path().join("val_map.txt"), "g.png 0\n").unwrap();
    let folder =
        ImageFolder::open(dir.path(), ImagePreprocess::unscaled(2, ColorMode::Luma)).unwrap();
    assert_eq!(folder.load_image(0).unwrap(), vec![0.0, 1.0, 0.2, 0.4]);
}

#[test]
fn layout_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    write_ramp_png(&p.join("ok.png"));

    // A bad label line: file and line.
    std::fs::write(p.join("val_map.txt"), "ok.png 1\nok.png one\n").unwrap();
    let e = ImageFolder::open(p, small_preprocess())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.ends_with("val_map.txt:2: label `one` of `ok.png` is not a non-negative integer"),
        "{e}"
    );

    // A listed image that is not there: the image and where it is listed.
    std::fs::write(p.join("val_map.txt"), "ok.png 1\ngone.png 3\n").unwrap();
    let e = ImageFolder::open(p, small_preprocess())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("gone.png: image file is missing"), "{e}");
    assert!(e.contains("val_map.txt:2"), "{e}");

    // Not an image at all: refused at open.
    std::fs::write(p.join("notes.png"), "not a picture").unwrap();
    std::fs::write(p.join("val_map.txt"), "notes.png 0\n").unwrap();
    let e = ImageFolder::open(p, small_preprocess())
        .err()
        .unwrap()
        .to_string();
    // The extension says PNG, the content does not.
    assert!(e.contains("notes.png: cannot read the image header"), "{e}");
    std::fs::write(p.join("notes.txt"), "not a picture").unwrap();
    std::fs::write(p.join("val_map.txt"), "notes.txt 0\n").unwrap();
    let e = ImageFolder::open(p, small_preprocess())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("notes.txt: not a JPEG or PNG image"), "{e}");

    // A PNG cut short: its header reads, its pixels do not. The load
    // (before any timed run) fails naming the file.
    let whole = std::fs::read(p.join("ok.png")).unwrap();
    std::fs::write(p.join("cut.png"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(p.join("val_map.txt"), "ok.png 0\ncut.png 1\n").unwrap();
    let folder = ImageFolder::open(p, small_preprocess()).unwrap();
    let e = folder.load_samples_to_ram(&[0, 1]).unwrap_err().to_string();
    assert!(e.contains("cut.png: does not decode"), "{e}");

    // A folder that is not there.
    let e = ImageFolder::open(&p.join("nope"), small_preprocess())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a folder"), "{e}");

    // Impossible preprocessing is refused before any file is read.
    let mut bad = small_preprocess();
    bad.crop_px = 3;
    assert!(ImageFolder::open(p, bad).is_err());
}

#[test]
fn hand_made_accuracy_log_scores_like_mlperf() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("val_map.txt");
    std::fs::write(&labels, "a.png 3\nb.png 1\nc.png 4\nd.png 1\ne.png 5\n").unwrap();
    // Sample 0 right, 1 wrong, 2 right, then 0 again (a duplicate with a
    // wrong answer: ignored), 3 and 4 never logged. 3.0f32 = 0x40400000.
    let log = dir.path().join("mlperf_log_accuracy.json");
    std::fs::write(
        &log,
        "[\n\
         { \"seq_id\" : 0, \"qsl_idx\" : 0, \"data\" : \"00004040\" },\n\
         { \"seq_id\" : 1, \"qsl_idx\" : 1, \"data\" : \"00000040\" },\n\
         { \"seq_id\" : 2, \"qsl_idx\" : 2, \"data\" : \"00008040\" },\n\
         { \"seq_id\" : 3, \"qsl_idx\" : 0, \"data\" : \"00000000\" }\n]\n",
    )
    .unwrap();
    let entries = read_accuracy_log(&log).unwrap();
    let report = score_top1(
        &entries,
        &read_val_map(&labels).unwrap(),
        &labels,
        ClassEncoding::Float32,
    )
    .unwrap();
    assert_eq!(report.mlperf_line, "accuracy=66.667%, good=2, total=3");
    assert_eq!(report.coverage.duplicate_entries, 1);
    assert_eq!(report.coverage.missing_samples, 2);
    assert_eq!(report.coverage.missing_examples, vec![3, 4]);
    assert_eq!(
        report.mismatch_examples,
        vec!["sample 1 (b.png): expected 1, found 2"]
    );
}
