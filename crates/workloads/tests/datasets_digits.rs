//! Real data: scikit-learn's 1797 handwritten 8×8 digits, written as PNG
//! files in ImageNet layout, read back through the image-folder QSL, and
//! classified by a nearest-centroid rule fitted on half of them; the other
//! half's answers go through LoadGen's accuracy-log writer and the top-1
//! scorer. Needs `bench/data/fetch_digits.sh` to have run (CI runs it);
//! without the file the test says so and passes.

use loadgen::log::accuracy;
use loadgen::LoggedResponse;
use loadgen::QuerySampleLibrary;
use workloads::datasets::accuracy_log::read_accuracy_log;
use workloads::datasets::digits::{cached_digits_csv, read_digits_csv, write_image_folder};
use workloads::datasets::image_folder::ImageFolder;
use workloads::datasets::labels::read_val_map;
use workloads::datasets::preprocess::{ColorMode, ImagePreprocess};
use workloads::datasets::top1::{score_top1, ClassEncoding};
use workloads::image_qsl::ImageSource;

#[test]
fn real_digits_through_the_folder_qsl_and_the_scorer() {
    let Some(csv) = cached_digits_csv().filter(|p| p.is_file()) else {
        eprintln!(
            "skipping: the real digits are not in the cache \
             (run bench/data/fetch_digits.sh; JOULEBENCH_CACHE or ~/.cache/joulebench)"
        );
        return;
    };
    let digits = read_digits_csv(&csv).unwrap();
    assert_eq!(digits.len(), 1797, "scikit-learn ships 1797 digits");

    let dir = tempfile::tempdir().unwrap();
    write_image_folder(&digits, dir.path()).unwrap();
    let folder =
        ImageFolder::open(dir.path(), ImagePreprocess::unscaled(8, ColorMode::Luma)).unwrap();
    let all: Vec<usize> = (0..folder.total_sample_count()).collect();
    folder.load_samples_to_ram(&all).unwrap();
    let batch = folder.batch(&all).unwrap();
    assert_eq!(batch.dims(), &[1797, 1, 8, 8]);
    let pixels: Vec<f32> = batch.flatten_all().unwrap().to_vec1().unwrap();
    let images: Vec<&[f32]> = pixels.chunks(64).collect();

    // The PNG round trip keeps every one of the 17 ink levels, and labels
    // follow the file's order.
    for (i, (image, digit)) in images.iter().zip(&digits).enumerate() {
        for (&x, &v) in image.iter().zip(&digit.values) {
            assert_eq!((x * 16.0).round() as u8, v);
        }
        assert_eq!(folder.label(i), Some(u32::from(digit.class)));
    }

    // Nearest centroid, fitted on the even samples, answering the odd ones.
    let mut centroids = vec![[0f32; 64]; 10];
    let mut counts = [0f32; 10];
    for i in (0..images.len()).step_by(2) {
        let class = folder.label(i).unwrap() as usize;
        counts[class] += 1.0;
        for (c, x) in centroids[class].iter_mut().zip(images[i]) {
            *c += x;
        }
    }
    for (c, n) in centroids.iter_mut().zip(counts) {
        c.iter_mut().for_each(|v| *v /= n);
    }
    let classify = |image: &[f32]| -> f32 {
        let distance =
            |c: &[f32; 64]| -> f32 { c.iter().zip(image).map(|(a, b)| (a - b) * (a - b)).sum() };
        (0..10)
            .min_by(|&a, &b| distance(&centroids[a]).total_cmp(&distance(&centroids[b])))
            .unwrap() as f32
    };
    // Responses as the classifier SUT writes them (f32 class, little endian),
    // through LoadGen's own accuracy-log writer.
    let responses: Vec<LoggedResponse> = (1..images.len())
        .step_by(2)
        .enumerate()
        .map(|(seq, i)| LoggedResponse {
            seq_id: seq as u64,
            qsl_idx: i,
            data: classify(images[i]).to_le_bytes().to_vec(),
            n_tokens: 0,
            first_token: None,
        })
        .collect();
    let log_path = dir.path().join("mlperf_log_accuracy.json");
    let mut log = Vec::new();
    accuracy::write(&mut log, &responses, accuracy::TokenFields::None).unwrap();
    std::fs::write(&log_path, log).unwrap();

    let labels_path = dir.path().join("val_map.txt");
    let report = score_top1(
        &read_accuracy_log(&log_path).unwrap(),
        &read_val_map(&labels_path).unwrap(),
        &labels_path,
        ClassEncoding::Float32,
    )
    .unwrap();
    eprintln!(
        "digits, nearest centroid on held-out half: {}",
        report.mlperf_line
    );
    assert_eq!(report.coverage.scored_samples, 898);
    assert_eq!(report.coverage.missing_samples, 899);
    // Nearest centroid reaches about 90 % on these digits; chance is 10 %.
    let accuracy = report.metrics["accuracy_percent"];
    assert!(accuracy > 85.0, "{}", report.mlperf_line);
}
