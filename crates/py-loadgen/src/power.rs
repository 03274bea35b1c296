//! Which meters a Python run uses: the environment's say, as `--power`,
//! `--idle` and `--tdp` say it for `joulebench run`.
//!
//! - `JOULEBENCH_POWER`: meter specs, comma-separated (default `auto`; `none`
//!   measures nothing);
//! - `JOULEBENCH_IDLE`: seconds of idle power to measure before each test;
//! - `JOULEBENCH_TDP`: the CPU's TDP in watts, for `estimate`.

use harness::PowerOptions;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

fn number(var: &str) -> PyResult<Option<f64>> {
    match std::env::var(var) {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| PyValueError::new_err(format!("{var}={text}: expected a number"))),
        _ => Ok(None),
    }
}

pub fn options() -> PyResult<PowerOptions> {
    let mut options = PowerOptions::default();
    if let Ok(specs) = std::env::var("JOULEBENCH_POWER") {
        let specs: Vec<String> = specs
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if !specs.is_empty() {
            options.specs = specs;
        }
    }
    options.idle_s = number("JOULEBENCH_IDLE")?;
    options.tdp_w = number("JOULEBENCH_TDP")?;
    Ok(options)
}

static SAID_NO_METER: AtomicBool = AtomicBool::new(false);

/// Says once per process that energy is not being measured.
pub fn say_no_meter_once() {
    if !SAID_NO_METER.swap(true, Ordering::Relaxed) {
        eprintln!(
            "joulebench: energy not measured: no usable meter on this machine \
             (`joulebench power list` says why; JOULEBENCH_POWER=estimate JOULEBENCH_TDP=W \
             gives an estimate)"
        );
    }
}
