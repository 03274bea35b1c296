//! Shared by the measure/merge/report/compare/exporter tests: the binary, and
//! a RAPL package faked at the OS boundary (a sysfs tree whose `energy_uj` a
//! thread advances at a known power).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn joulebench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_joulebench"))
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A RAPL package under `root` whose counter rises at `watts` until dropped.
pub struct FakeRapl {
    pub root: PathBuf,
    pub zone: PathBuf,
    stop: Arc<AtomicBool>,
}

impl FakeRapl {
    pub fn start(root: &Path, watts: f64) -> FakeRapl {
        let zone = root.join("class/powercap/intel-rapl:0");
        std::fs::create_dir_all(&zone).unwrap();
        std::fs::write(zone.join("name"), "package-0\n").unwrap();
        std::fs::write(zone.join("max_energy_range_uj"), "262143328850\n").unwrap();
        std::fs::write(zone.join("energy_uj"), "1000\n").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let z = zone.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let uj = 1000 + (start.elapsed().as_secs_f64() * watts * 1e6) as u64;
                let tmp = z.join("energy_uj.tmp");
                // The zone may be removed on purpose (a vanishing meter).
                if std::fs::write(&tmp, format!("{uj}\n")).is_ok() {
                    let _ = std::fs::rename(&tmp, z.join("energy_uj"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        FakeRapl {
            root: root.to_path_buf(),
            zone,
            stop,
        }
    }
}

impl Drop for FakeRapl {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
