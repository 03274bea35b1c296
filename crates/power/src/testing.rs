//! Meters faked at the OS boundary, for tests in every crate (feature
//! `testing`): a sysfs tree whose RAPL counter a thread advances at a known
//! power, read by the real RAPL meter.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A RAPL package (`class/powercap/intel-rapl:0`, `package-0`) under a sysfs
/// root whose `energy_uj` rises at `watts` until dropped.
pub struct FakeRapl {
    pub root: PathBuf,
    pub zone: PathBuf,
    stop: Arc<AtomicBool>,
}

impl FakeRapl {
    pub fn start(sysfs_root: &Path, watts: f64) -> FakeRapl {
        let zone = sysfs_root.join("class/powercap/intel-rapl:0");
        let write = |name: &str, text: &str| {
            std::fs::write(zone.join(name), text)
                .unwrap_or_else(|e| panic!("writing the fake RAPL zone's {name}: {e}"))
        };
        std::fs::create_dir_all(&zone).expect("creating the fake RAPL zone");
        write("name", "package-0\n");
        write("max_energy_range_uj", "262143328850\n");
        write("energy_uj", "1000\n");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let z = zone.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let uj = 1000 + (start.elapsed().as_secs_f64() * watts * 1e6) as u64;
                // Write then rename, so a reader never sees a half-written
                // value; the zone may be removed on purpose (a vanishing meter).
                let tmp = z.join("energy_uj.tmp");
                if std::fs::write(&tmp, format!("{uj}\n")).is_ok() {
                    let _ = std::fs::rename(&tmp, z.join("energy_uj"));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        FakeRapl {
            root: sysfs_root.to_path_buf(),
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
