//! One GET of an exposition page, bounded in time and size.

use super::super::MeterError;
use super::METER;
use std::time::Duration;

/// Largest page accepted. A DCGM exporter page for eight GPUs is about
/// 100 KiB; an exporter that sends more than this (an endless body) gets an
/// error, not our memory.
pub const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;
/// Largest head (status line and headers) accepted.
const MAX_HEADER_BYTES: usize = 64 * 1024;

pub(super) fn agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_response_header_size(MAX_HEADER_BYTES)
        .http_status_as_error(false)
        .proxy(None)
        .build();
    ureq::Agent::new_with_config(config)
}

/// The page at `url`, as text (invalid UTF-8 replaced).
pub(super) fn get(agent: &ureq::Agent, url: &str) -> Result<String, MeterError> {
    let mut response = agent
        .get(url)
        // The classic text format: exporters that also speak OpenMetrics or
        // protobuf answer in it when asked this way.
        .header("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
        .call()
        .map_err(|e| transport_error(url, &e))?;
    let status = response.status().as_u16();
    match status {
        200 => {}
        404 => {
            return Err(MeterError::NotPresent {
                meter: METER.into(),
                reason: format!(
                    "GET {url}: 404 Not Found; is the path right? (exporters serve /metrics)"
                ),
            })
        }
        401 | 403 => {
            return Err(MeterError::Permission {
                meter: METER.into(),
                reason: format!("GET {url}: HTTP status {status}"),
                remedy: "the exporter wants credentials; joulebench reads only open pages \
                         (scrape it through a proxy on the node, or open it to this host)"
                    .into(),
            })
        }
        s => {
            return Err(read_error(format!(
                "GET {url}: HTTP status {s}, expected 200"
            )))
        }
    }
    crate::meter::http_error::read_body(
        METER,
        url,
        response.body_mut(),
        MAX_BODY_BYTES,
        "an exporter page",
    )
}

pub(super) fn read_error(reason: String) -> MeterError {
    MeterError::Read {
        meter: METER.into(),
        reason,
    }
}

fn transport_error(url: &str, e: &ureq::Error) -> MeterError {
    crate::meter::http_error::classify(METER, "exporter", url, e, "")
}
