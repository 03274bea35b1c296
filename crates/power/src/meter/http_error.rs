//! What a failed HTTP GET of a remote meter (a Redfish BMC, a Prometheus
//! exporter) means for the meter: nothing answers at that address (the
//! meter is not present), or a peer answered badly (a read error); and
//! reading an answer's body within a size and time bound.

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

/// `body` as text (invalid UTF-8 replaced), at most `limit` bytes: a
/// larger one is not the `what` (`an exporter page`) it should be.
pub(crate) fn read_body(
    meter: &str,
    url: &str,
    body: &mut ureq::Body,
    limit: u64,
    what: &str,
) -> Result<String, MeterError> {
    let read = |reason: String| MeterError::Read {
        meter: meter.into(),
        reason,
    };
    body.with_config()
        .limit(limit)
        .lossy_utf8(true)
        .read_to_string()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(limit) => read(format!(
                "GET {url}: the answer is larger than {limit} bytes; not {what}"
            )),
            ureq::Error::Timeout(_) => read(format!(
                "GET {url}: the answer did not arrive whole in time ({e})"
            )),
            e => read(format!("GET {url}: reading the answer: {e}")),
        })
}
