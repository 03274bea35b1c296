//! `--devices`: a bad list is refused before anything loads, with the reason.
//! (The spreading itself is tested in crates/workloads/tests/devices.rs.)

use std::process::Command;

fn run_with_devices(list: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_joulebench"))
        .args([
            "run",
            "--workload",
            "resnet18",
            "--devices",
            list,
            "--power",
            "none",
            "--quiet",
            "-o",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_gpu_listed_twice_is_refused() {
    let (code, err) = run_with_devices("0,1,0");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cuda:0 is listed twice"), "{err}");
}

#[test]
fn an_unknown_device_is_named() {
    let (code, err) = run_with_devices("cuda:0,tpu");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("'tpu'"), "{err}");
}

#[test]
fn all_without_a_usable_gpu_says_why() {
    // The CI build has no GPU back end (and the CI machine no GPU).
    if cfg!(feature = "cuda") {
        eprintln!("skipped: a cuda build may find GPUs here");
        return;
    }
    let (code, err) = run_with_devices("all");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no GPU could be opened"), "{err}");
    assert!(err.contains("built without GPU support"), "{err}");
}
