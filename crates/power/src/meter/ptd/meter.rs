//! The PTDaemon client behind the [`Meter`] trait.

use super::client::{PtdClient, PtdGreeting, SharedPtdClient};
use super::lines::PtdSample;
use super::{parse_ptd_url, PtdError, PtdTimeouts, SAMPLE_INTERVAL_MS};
use crate::meter::{Meter, MeterError, MeterInfo, Provenance, Reading, ReadingKind, Scope};
use mlperf_time::Timestamp;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// PTDaemon as a [`Meter`]: wall power with volts, amps and power factor.
///
/// Each [`Meter::read`] asks for the samples logged since the last read and
/// returns the newest; when none is new (the analyzer logs once a second) it
/// repeats the newest one, and before any measurement has started it falls
/// back to `Watts`. The analyzer's own timestamp of the newest sample is kept
/// ([`PtdMeter::last_sample_time`]) for clock-offset checks.
pub struct PtdMeter {
    info: MeterInfo,
    client: SharedPtdClient,
    greeting: PtdGreeting,
    last: Option<PtdSample>,
}

impl PtdMeter {
    /// Connects to `ptd://HOST:PORT` and opens the session (`Hello`,
    /// `Identify`, `RR`).
    pub fn connect(url: &str, timeouts: PtdTimeouts) -> Result<PtdMeter, MeterError> {
        let (host, port) = parse_ptd_url(url)?;
        let mut client =
            PtdClient::connect(&host, port, timeouts).map_err(|e| to_meter_error(e, true))?;
        let greeting = client
            .start_session()
            .map_err(|e| to_meter_error(e, true))?;
        tracing::info!(
            target: "ptd",
            addr = client.addr(),
            identity = greeting.identity.raw.as_str(),
            "connected to PTDaemon"
        );
        Ok(PtdMeter::new(Arc::new(Mutex::new(client)), greeting))
    }

    /// A meter over a client whose session is already open.
    pub fn new(client: SharedPtdClient, greeting: PtdGreeting) -> PtdMeter {
        PtdMeter {
            info: MeterInfo {
                id: "ptd".into(),
                source: "ptd".into(),
                domain: "wall".into(),
                scope: Scope::Node,
                kind: ReadingKind::PowerSample,
                provenance: Provenance::Measured,
                resolution: 1e-6,
                update_period: Duration::from_millis(u64::from(SAMPLE_INTERVAL_MS)),
                contains: Vec::new(),
            },
            client,
            greeting,
            last: None,
        }
    }

    /// The connection, for the run orchestrator's `Go`/`Stop`/`SR` commands.
    pub fn client(&self) -> SharedPtdClient {
        Arc::clone(&self.client)
    }

    /// What the daemon said when the session opened.
    pub fn greeting(&self) -> &PtdGreeting {
        &self.greeting
    }

    /// The analyzer host's timestamp of the newest sample read.
    pub fn last_sample_time(&self) -> Option<Timestamp> {
        self.last.as_ref().map(|s| s.time)
    }
}

impl Meter for PtdMeter {
    fn info(&self) -> &MeterInfo {
        &self.info
    }

    fn read(&mut self) -> Result<Reading, MeterError> {
        let mut client = self.client.lock().map_err(|_| MeterError::Read {
            meter: "ptd".into(),
            reason: "the PTDaemon connection was poisoned by a panic elsewhere".into(),
        })?;
        let samples = client
            .read_samples()
            .map_err(|e| to_meter_error(e, false))?;
        let newest = samples.into_iter().max_by_key(|s| s.time);
        if let Some(s) = newest {
            if self.last.as_ref().is_none_or(|l| s.time >= l.time) {
                self.last = Some(s);
            }
        }
        match &self.last {
            Some(s) => Ok(Reading::Power {
                watts: s.watts,
                volts: s.volts,
                amps: s.amps,
                power_factor: s.power_factor,
            }),
            None => client
                .watts()
                .map(Reading::watts)
                .map_err(|e| to_meter_error(e, false)),
        }
    }
}

/// Maps a protocol error onto the meter contract; `opening` tells setup
/// problems (wrong address, not PTDaemon) from failures of a running meter.
pub fn to_meter_error(e: PtdError, opening: bool) -> MeterError {
    let meter = "ptd".to_string();
    match e {
        PtdError::Connect { .. } if opening => MeterError::NotPresent {
            meter,
            reason: format!("{e}; is PTDaemon running and listening on that port?"),
        },
        PtdError::InvalidRange { .. }
        | PtdError::InvalidMark { .. }
        | PtdError::InvalidCommand { .. } => MeterError::Config {
            meter,
            reason: e.to_string(),
        },
        _ if opening => MeterError::Config {
            meter,
            reason: e.to_string(),
        },
        _ => MeterError::Read {
            meter,
            reason: e.to_string(),
        },
    }
}
