//! The IPMI meter against an `ipmitool` that misbehaves (issue 20). IPMI is
//! reached through a child process, not a socket, so the hostile peer is a
//! fake ipmitool (a shell script): one that never exits, prints without end,
//! stalls mid-line, floods its output, or exits while a process it started
//! keeps its output open (silent, or writing without end). Every read must
//! end with an error within the timeout (plus slack), with bounded memory.

use hostile_input::peer::ResidentWatch;
use power::meter::ipmi::{IpmiConfig, IpmiMeter, MAX_OUTPUT_BYTES};
use power::meter::MeterError;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Writing an executable while another test thread forks can make exec fail
/// with "text file busy"; the tests of this file take turns.
static SERIAL: Mutex<()> = Mutex::new(());

/// The meter's timeout in these tests.
const TIMEOUT: Duration = Duration::from_millis(500);
/// Slack on top of it for a loaded two-core machine (debug build).
const SLACK: Duration = Duration::from_secs(5);

/// What `ipmitool dcmi power reading` prints (a Dell iDRAC's layout), 412 W.
const OUTPUT: &str = include_str!("data/dcmi_power_reading_412w.txt");

fn fake_ipmitool(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("ipmitool");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Opens the meter on a fake ipmitool running `body`: the error, how long
/// it took, and how much this process grew meanwhile (KiB).
fn open_with(body: &str) -> (MeterError, Duration, u64) {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let config = IpmiConfig {
        binary: fake_ipmitool(dir.path(), body),
        timeout: TIMEOUT,
        ..IpmiConfig::local()
    };
    let watch = ResidentWatch::start(std::process::id()).unwrap();
    let started = Instant::now();
    let result = IpmiMeter::open(config);
    let took = started.elapsed();
    let growth = watch.peak_growth_kib().unwrap();
    match result {
        Ok(_) => panic!("a reading from {body:?}"),
        Err(e) => (e, took, growth),
    }
}

fn assert_bounded(body: &str, says: &[&str]) {
    let (error, took, growth) = open_with(body);
    let text = error.to_string();
    assert!(
        took < TIMEOUT + SLACK,
        "{body}: gave up after {took:?}: {text}"
    );
    assert!(growth < 64 << 10, "{body}: grew by {growth} KiB: {text}");
    assert!(matches!(error, MeterError::Read { .. }), "{body}: {text}");
    for s in says {
        assert!(text.contains(s), "{body}: no `{s}` in: {text}");
    }
}

#[test]
fn an_ipmitool_that_stalls_mid_line_is_killed_at_the_timeout() {
    assert_bounded(
        "printf '    Instantaneous power rea'; exec sleep 30",
        &["500 ms"],
    );
}

#[test]
fn an_ipmitool_that_prints_without_end_is_stopped() {
    // Never exits: the output limit or the timeout ends it.
    assert_bounded(
        "exec yes '    Instantaneous power reading: 1 Watts'",
        &["ipmitool"],
    );
}

#[test]
fn an_ipmitool_that_floods_its_output_then_exits_is_refused_for_its_size() {
    // 4 MiB, then a reading: more than any dcmi answer.
    assert_bounded(
        &format!(
            "head -c {} /dev/zero | tr '\\0' 'x'; cat <<'EOF'\n{OUTPUT}EOF",
            4 * MAX_OUTPUT_BYTES
        ),
        &["more than", &MAX_OUTPUT_BYTES.to_string()],
    );
}

#[test]
fn an_ipmitool_that_exits_while_its_child_keeps_the_output_open_is_not_waited_for() {
    // The script answers and exits; a process it started holds stdout for
    // 30 s. Reading "to the end" would wait those 30 s.
    assert_bounded(
        &format!("sleep 30 &\ncat <<'EOF'\n{OUTPUT}EOF\nexit 0"),
        &["still open"],
    );
}

#[test]
fn an_ipmitool_whose_child_writes_without_end_after_it_exits_is_refused() {
    // The script answers and exits; then a process it started writes
    // without end. Reading "to the end" would take it all into memory.
    assert_bounded(
        &format!("cat <<'EOF'\n{OUTPUT}EOF\n(sleep 0.2; exec yes garbage) &\nexit 0"),
        &["more than"],
    );
}
