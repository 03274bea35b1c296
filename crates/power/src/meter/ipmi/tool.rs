//! Running `ipmitool` for one reading: a deadline on the child, both pipes
//! read while it runs with a cap on each, and its complaints turned into
//! errors with a remedy.

use super::{IpmiConfig, METER, PASSWORD_ENV};
use crate::meter::MeterError;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Most output taken from one ipmitool run, on stdout and on stderr each
/// (`dcmi power reading` prints a few hundred bytes).
pub const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

/// Runs ipmitool with a deadline and returns its stdout; failures become
/// errors that say what to do.
pub(super) fn run_ipmitool(config: &IpmiConfig) -> Result<String, MeterError> {
    let binary = config.binary.display().to_string();
    let mut child = Command::new(&config.binary)
        .args(config.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => MeterError::NotPresent {
                meter: METER.into(),
                reason: format!(
                    "`{binary}` not found; install ipmitool (e.g. `apt install ipmitool`)"
                ),
            },
            std::io::ErrorKind::PermissionDenied => MeterError::Permission {
                meter: METER.into(),
                reason: format!("cannot run `{binary}`: {e}"),
                remedy: "make it executable for this user".into(),
            },
            _ => MeterError::Read {
                meter: METER.into(),
                reason: format!("cannot run `{binary}`: {e}"),
            },
        })?;
    let deadline = Instant::now() + config.timeout;
    let read_err = |reason: String| MeterError::Read {
        meter: METER.into(),
        reason,
    };
    // Both pipes are read while the child runs, each by a thread that takes
    // at most MAX_OUTPUT_BYTES and then closes its end (a child that goes
    // on writing gets SIGPIPE): the child never blocks on a full pipe, and
    // endless output costs a bounded amount of memory.
    let (stdout_rx, stderr_rx) = match (
        child.stdout.take().map(collect_output).transpose(),
        child.stderr.take().map(collect_output).transpose(),
    ) {
        (Ok(Some(out)), Ok(Some(err))) => (out, err),
        (Err(e), _) | (_, Err(e)) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(read_err(format!("reading `{binary}`'s output: {e}")));
        }
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(read_err(format!("`{binary}`: no output pipes")));
        }
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(read_err(format!(
                    "`{binary}` gave no answer within {} ms (BMC unreachable or busy?)",
                    config.timeout.as_millis()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(read_err(format!("waiting for `{binary}`: {e}")));
            }
        }
    };
    // The child has exited; its output ends when every process holding the
    // pipes (a child of its own, say) has closed them: not waited for past
    // the deadline.
    let taken = |rx: std::sync::mpsc::Receiver<Output>, which: &str| {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(100))) {
            Ok(Output::Complete(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Ok(Output::TooLong) => Err(read_err(format!(
                "`{binary}` printed more than {MAX_OUTPUT_BYTES} bytes on {which}; \
                 not `dcmi power reading` output"
            ))),
            Ok(Output::Failed(e)) => Err(read_err(format!("reading `{binary}`'s {which}: {e}"))),
            Err(_) => Err(read_err(format!(
                "`{binary}` exited ({status}) but its {which} was still open after {} ms \
                 (a process it started holds it?)",
                config.timeout.as_millis()
            ))),
        }
    };
    let stdout = taken(stdout_rx, "stdout")?;
    let stderr = taken(stderr_rx, "stderr")?;
    if status.success() {
        return Ok(stdout);
    }
    let said = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message")
        .to_string();
    Err(classify_failure(&binary, &said))
}

/// What a pipe of ipmitool's gave.
enum Output {
    Complete(Vec<u8>),
    /// More than [`MAX_OUTPUT_BYTES`]: reading stopped there.
    TooLong,
    Failed(std::io::Error),
}

/// Reads `pipe` to its end on a thread of its own, taking at most
/// [`MAX_OUTPUT_BYTES`] (then it closes the pipe); the result arrives on
/// the channel.
fn collect_output(
    pipe: impl Read + Send + 'static,
) -> std::io::Result<std::sync::mpsc::Receiver<Output>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ipmitool-output".into())
        .spawn(move || {
            let mut bytes = Vec::new();
            let out = match pipe.take(MAX_OUTPUT_BYTES + 1).read_to_end(&mut bytes) {
                Ok(_) if bytes.len() as u64 > MAX_OUTPUT_BYTES => Output::TooLong,
                Ok(_) => Output::Complete(bytes),
                Err(e) => Output::Failed(e),
            };
            let _ = tx.send(out);
        })?;
    Ok(rx)
}

/// Turns ipmitool's complaint into an error with a remedy.
fn classify_failure(binary: &str, said: &str) -> MeterError {
    let lower = said.to_ascii_lowercase();
    if lower.contains("permission denied") {
        MeterError::Permission {
            meter: METER.into(),
            reason: format!("`{binary}`: {said}"),
            remedy: "run as root or give this user read-write access to /dev/ipmi0".into(),
        }
    } else if lower.contains("could not open device") {
        MeterError::NotPresent {
            meter: METER.into(),
            reason: format!(
                "`{binary}`: {said}; no local IPMI device (load ipmi_devintf and ipmi_si, \
                 or use ipmi://USER@HOST for a BMC on the network)"
            ),
        }
    } else if lower.contains("unable to establish") || lower.contains("password") {
        MeterError::Config {
            meter: METER.into(),
            reason: format!(
                "`{binary}`: {said}; check host, user and the password in \
                 {PASSWORD_ENV} or the password file"
            ),
        }
    } else if lower.contains("dcmi request failed") || lower.contains("invalid command") {
        MeterError::NotPresent {
            meter: METER.into(),
            reason: format!("the BMC does not offer a DCMI power reading: {said}"),
        }
    } else {
        MeterError::Read {
            meter: METER.into(),
            reason: format!("`{binary}` failed: {said}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_with_remedies() {
        let e = classify_failure(
            "ipmitool",
            "Could not open device at /dev/ipmi0 or /dev/ipmi/0 or /dev/ipmidev/0: No such file or directory",
        );
        assert!(matches!(e, MeterError::NotPresent { .. }), "{e}");
        assert!(e.to_string().contains("ipmi_devintf"));
        let e = classify_failure("ipmitool", "ipmi_open: Permission denied");
        assert!(matches!(e, MeterError::Permission { .. }), "{e}");
        let e = classify_failure(
            "ipmitool",
            "Error: Unable to establish IPMI v2 / RMCP+ session",
        );
        assert!(matches!(e, MeterError::Config { .. }), "{e}");
        assert!(e.to_string().contains(PASSWORD_ENV));
        let e = classify_failure("ipmitool", "something odd");
        assert!(matches!(e, MeterError::Read { .. }), "{e}");
    }
}
