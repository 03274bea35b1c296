//! The IPMI meter against a fake `ipmitool` (a shell script in a temp dir)
//! that prints what real ipmitool prints and records how it was called.

use power::meter::ipmi::{
    parse_ipmi_spec, probe_with, IpmiConfig, IpmiMeter, IpmiTarget, PasswordSource,
};
use power::meter::{Meter, MeterError, Probe, Reading, Scope};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Writing an executable while another test thread forks can make exec fail
/// with "text file busy"; the tests of this file take turns.
static SERIAL: Mutex<()> = Mutex::new(());

/// What `ipmitool dcmi power reading` prints (a Dell iDRAC's layout), 412 W.
const OUTPUT: &str = include_str!("data/dcmi_power_reading_412w.txt");

/// A fake ipmitool that records its arguments (one per line) and whether
/// IPMI_PASSWORD reached it, then runs `body`.
fn fake_ipmitool(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("ipmitool");
    let script = format!(
        "#!/bin/sh\n\
         printf '%s\\n' \"$@\" > '{dir}/args.txt'\n\
         if [ -n \"$IPMI_PASSWORD\" ]; then echo \"$IPMI_PASSWORD\" > '{dir}/env.txt'; fi\n\
         {body}\n",
        dir = dir.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn printing(output: &str) -> String {
    format!("cat <<'EOF'\n{output}EOF")
}

fn config(binary: PathBuf) -> IpmiConfig {
    IpmiConfig {
        binary,
        ..IpmiConfig::local()
    }
}

fn args(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("args.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn local_bmc_reading_is_parsed_into_node_power() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_ipmitool(dir.path(), &printing(OUTPUT));
    let mut meter = IpmiMeter::open(config(bin)).unwrap();
    assert_eq!(meter.info().id, "ipmi-node");
    assert_eq!(meter.info().scope, Scope::Node);
    assert_eq!(meter.read().unwrap(), Reading::watts(412.0));
    let full = meter.last_reading().unwrap();
    assert_eq!(full.average_w, Some(405.0));
    assert_eq!(full.active, Some(true));
    assert_eq!(args(dir.path()), ["dcmi", "power", "reading"]);
}

#[test]
fn lan_password_comes_from_a_file_never_the_arguments() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_ipmitool(dir.path(), &printing(OUTPUT));
    let pw = dir.path().join("bmc.pw");
    std::fs::write(&pw, "s3cret-pw\n").unwrap();
    let mut cfg = parse_ipmi_spec("ipmi://admin@bmc-1.lab", Some(&pw)).unwrap();
    cfg.binary = bin;
    let mut meter = IpmiMeter::open(cfg).unwrap();
    assert_eq!(meter.info().id, "ipmi-bmc-1.lab");
    assert_eq!(meter.info().domain, "node@bmc-1.lab");
    meter.read().unwrap();
    let a = args(dir.path());
    assert_eq!(
        a,
        [
            "-I",
            "lanplus",
            "-H",
            "bmc-1.lab",
            "-U",
            "admin",
            "-f",
            pw.to_str().unwrap(),
            "dcmi",
            "power",
            "reading"
        ]
    );
    assert!(!a.iter().any(|x| x.contains("s3cret")));
}

#[test]
fn lan_password_from_the_environment_uses_dash_e() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_ipmitool(dir.path(), &printing(OUTPUT));
    let cfg = IpmiConfig {
        binary: bin,
        target: IpmiTarget::Lan {
            host: "bmc-2".into(),
            user: "root".into(),
            password: PasswordSource::Env,
        },
        timeout: Duration::from_secs(5),
    };
    // Only this test touches IPMI_PASSWORD, and it holds the turn.
    std::env::remove_var("IPMI_PASSWORD");
    match IpmiMeter::open(cfg.clone()) {
        Err(MeterError::Config { reason, .. }) => {
            assert!(reason.contains("IPMI_PASSWORD"), "{reason}")
        }
        other => panic!("expected Config error, got {other:?}"),
    }
    std::env::set_var("IPMI_PASSWORD", "env-secret");
    let opened = IpmiMeter::open(cfg);
    std::env::remove_var("IPMI_PASSWORD");
    opened.unwrap();
    let a = args(dir.path());
    assert!(a.contains(&"-E".to_string()), "{a:?}");
    assert!(!a.iter().any(|x| x.contains("env-secret")));
    let seen = std::fs::read_to_string(dir.path().join("env.txt")).unwrap();
    assert_eq!(seen.trim(), "env-secret");
}

#[test]
fn missing_local_device_is_not_present_with_a_remedy() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_ipmitool(
        dir.path(),
        "echo 'Could not open device at /dev/ipmi0 or /dev/ipmi/0 or /dev/ipmidev/0: No such file or directory' >&2\nexit 1",
    );
    let probes = probe_with(config(bin));
    assert_eq!(probes.len(), 1);
    match &probes[0] {
        Probe::Unusable { source, error, .. } => {
            assert_eq!(source, "ipmi");
            assert!(matches!(error, MeterError::NotPresent { .. }), "{error}");
            assert!(error.to_string().contains("ipmi_devintf"), "{error}");
        }
        other => panic!("expected Unusable, got {other:?}"),
    }
}

#[test]
fn bmc_without_dcmi_power_is_not_present() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_ipmitool(
        dir.path(),
        &printing("\n    DCMI request failed because: Invalid data field in request (cc)\n"),
    );
    match IpmiMeter::open(config(bin)) {
        Err(MeterError::NotPresent { reason, .. }) => {
            assert!(reason.contains("DCMI"), "{reason}")
        }
        other => panic!("expected NotPresent, got {other:?}"),
    }
}

#[test]
fn deactivated_zero_reading_is_refused_but_deactivated_nonzero_is_used() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let zero = OUTPUT
        .replace("412 Watts", "0 Watts")
        .replace("activated", "deactivated");
    let bin = fake_ipmitool(dir.path(), &printing(&zero));
    assert!(matches!(
        IpmiMeter::open(config(bin)),
        Err(MeterError::NotPresent { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_ipmitool(
        dir.path(),
        &printing(&OUTPUT.replace("activated", "deactivated")),
    );
    let mut meter = IpmiMeter::open(config(bin)).unwrap();
    assert_eq!(meter.read().unwrap(), Reading::watts(412.0));
}

#[test]
fn hung_ipmitool_is_killed_at_the_timeout() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let bin = fake_ipmitool(dir.path(), "exec sleep 30");
    let cfg = IpmiConfig {
        timeout: Duration::from_millis(300),
        ..config(bin)
    };
    let started = Instant::now();
    match IpmiMeter::open(cfg) {
        Err(MeterError::Read { reason, .. }) => {
            assert!(reason.contains("300 ms"), "{reason}")
        }
        other => panic!("expected Read error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn absent_binary_says_to_install_ipmitool() {
    let dir = tempfile::tempdir().unwrap();
    match IpmiMeter::open(config(dir.path().join("no-such-ipmitool"))) {
        Err(MeterError::NotPresent { reason, .. }) => {
            assert!(reason.contains("install ipmitool"), "{reason}")
        }
        other => panic!("expected NotPresent, got {other:?}"),
    }
}
