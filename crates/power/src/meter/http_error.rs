//! What a failed HTTP GET of a remote meter (a Redfish BMC, a Prometheus
//! exporter) means for the meter: nothing answers at that address (the
//! meter is not present), or a peer answered badly (a read error).

use super::MeterError;

/// `e`, from `GET url` by `meter` of a `peer` (`BMC`, `exporter`); `hint`
/// is appended to errors that are neither timeouts nor connection failures.
pub(crate) fn classify(
    meter: &str,
    peer: &str,
    url: &str,
    e: &ureq::Error,
    hint: &str,
) -> MeterError {
    let text = e.to_string();
    let read = |reason: String| MeterError::Read {
        meter: meter.into(),
        reason,
    };
    let absent = |reason: String| MeterError::NotPresent {
        meter: meter.into(),
        reason,
    };
    match e {
        ureq::Error::Timeout(_) => read(format!("GET {url}: no answer in time ({text})")),
        ureq::Error::HostNotFound => absent(format!("GET {url}: host not found")),
        ureq::Error::Io(io) if !cannot_connect(io.kind()) => read(format!(
            "GET {url}: the {peer} closed the connection before answering ({text})"
        )),
        ureq::Error::ConnectionFailed | ureq::Error::Io(_) => {
            absent(format!("GET {url}: cannot connect: {text}"))
        }
        _ => read(format!("GET {url}: {text}{hint}")),
    }
}

/// Whether an I/O error means nothing answers at that address (rather than
/// a peer that answered, then hung up or reset the connection).
fn cannot_connect(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused
            | NotConnected
            | AddrNotAvailable
            | AddrInUse
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
            | NotFound
            | PermissionDenied
    )
}
