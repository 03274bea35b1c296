//! A fake sysfs/procfs tree in a temp dir: the OS boundary our meters read.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub struct FakeSys {
    pub dir: tempfile::TempDir,
}

impl FakeSys {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn sysfs(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    pub fn procfs(&self) -> PathBuf {
        self.dir.path().join("proc")
    }

    pub fn powercap(&self) -> PathBuf {
        self.sysfs().join("class/powercap")
    }

    /// A RAPL zone `class/powercap/<zone>` with `name`, `energy_uj` and
    /// `max_energy_range_uj`. Returns the zone directory.
    pub fn rapl_zone(&self, zone: &str, name: &str, energy_uj: u64, max_uj: u64) -> PathBuf {
        let dir = self.powercap().join(zone);
        std::fs::create_dir_all(&dir).expect("mkdir zone");
        write(&dir.join("name"), &format!("{name}\n"));
        write(&dir.join("energy_uj"), &format!("{energy_uj}\n"));
        write(&dir.join("max_energy_range_uj"), &format!("{max_uj}\n"));
        dir
    }

    /// Sets a counter the way the kernel shows a new value: atomically.
    pub fn set_energy(&self, zone: &str, energy_uj: u64) {
        let dir = self.powercap().join(zone);
        let tmp = dir.join(".energy_uj.tmp");
        write(&tmp, &format!("{energy_uj}\n"));
        std::fs::rename(&tmp, dir.join("energy_uj")).expect("rename");
    }

    /// A hwmon chip `class/hwmon/hwmon<n>` with `name` and attribute files.
    pub fn hwmon(&self, n: u32, name: &str, attrs: &[(&str, &str)]) -> PathBuf {
        let dir = self.sysfs().join(format!("class/hwmon/hwmon{n}"));
        std::fs::create_dir_all(&dir).expect("mkdir hwmon");
        write(&dir.join("name"), &format!("{name}\n"));
        for (file, value) in attrs {
            write(&dir.join(file), &format!("{value}\n"));
        }
        dir
    }

    pub fn proc_stat(&self, text: &str) {
        std::fs::create_dir_all(self.procfs()).expect("mkdir proc");
        write(&self.procfs().join("stat"), text);
    }
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Does this process bypass file permissions (root with CAP_DAC_OVERRIDE)?
pub fn reads_mode_000_files(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let probe = dir.join(".perm-probe");
    write(&probe, "x");
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let readable = std::fs::read(&probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    readable
}
