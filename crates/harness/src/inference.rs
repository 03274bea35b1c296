//! A LoadGen test as the measured thing: energy over exactly LoadGen's timed
//! window (`power_begin` → `power_end`), MLPerf's efficiency metric, MLPerf
//! Power's ranging run first when a PTDaemon is among the meters, and the
//! run's `result.json` record. Written once for `joulebench run` and the
//! Python `mlperf_loadgen` module.

use crate::efficiency::RunCounts;
use crate::session::{Clock, Session};
use crate::HarnessError;
use loadgen::{QuerySampleLibrary, RunControl, SystemUnderTest, TestOutput, TestSettings};
use mlperf_power::ranging::{max_current_range_a, ranges_from_maxima};
use power::energy::Window;
use power::meter::ptd::{PtdClient, PtdError, SharedPtdClient};
use power::meter::Reading;
use power::sampler::SamplerReport;
use report::schema::{self, PowerRecord, PtdRecord, RunResult, RunStatus};
use std::path::{Path, PathBuf};

/// Why a LoadGen test could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error("the run failed; logs so far are in {}: {source}", dir.display())]
    Run {
        dir: PathBuf,
        source: loadgen::run::RunError,
    },
    #[error("PTDaemon: {doing}: {source}")]
    Ptd {
        doing: &'static str,
        source: PtdError,
    },
    #[error("the PTDaemon connection was poisoned by a panic")]
    PtdPoisoned,
    #[error(
        "PTDaemon: the ranging run recorded no voltage and current; cannot fix the testing ranges"
    )]
    NoRangingSamples,
    #[error("serialising the settings: {0}")]
    Settings(#[source] serde_json::Error),
}

/// One LoadGen test: what it drives and how.
pub struct LoadgenTest<'a> {
    pub sut: &'a dyn SystemUnderTest,
    pub qsl: &'a dyn QuerySampleLibrary,
    pub settings: &'a TestSettings,
    pub control: &'a RunControl,
    /// How LoadGen's files are named; they go into the session's folder
    /// (and `ranging/` under it), whatever `outdir` says.
    pub logs: &'a loadgen::LogSettings,
}

/// What a measured test gave.
pub struct MeasuredTest {
    pub output: TestOutput,
    /// Energy over the timed window; `None` without meters or window.
    pub power: Option<PowerRecord>,
}

impl LoadgenTest<'_> {
    /// Runs the test into the session's folder with its meters around it.
    /// With a PTDaemon, MLPerf Power's procedure: a ranging run (auto ranges,
    /// into `ranging/`), then the testing run with ranges fixed from what
    /// ranging saw; only the testing run is the result. `during` is called
    /// as each pass starts and what it returns dropped when it ends (a
    /// progress display).
    pub fn measure<G>(
        &self,
        session: &mut Session,
        mut during: impl FnMut(&RunControl) -> G,
    ) -> Result<MeasuredTest, InferenceError> {
        let outdir = session.outdir().to_path_buf();
        let ptd = match session.ptd().cloned() {
            Some((client, model)) => Some(self.ranging(session, &client, &model, &mut during)?),
            None => None,
        };
        let (output, report) = self.pass(session, &outdir, &mut during)?;
        if let Some((client, _)) = session.ptd() {
            let mut client = lock(client)?;
            ptd_step(client.stop().map(drop), "stopping the testing run")?;
            // Leave the analyzer as we found it.
            ptd_step(client.set_auto_ranges(), "restoring auto ranges")?;
        }
        let power = match (&report, &output.power_window) {
            (Some(report), Some(w)) => {
                let counts = RunCounts {
                    scenario: self.settings.scenario,
                    samples: output.performance.as_ref().map_or(0, |p| p.sample_count()),
                    queries: output
                        .performance
                        .as_ref()
                        .map_or(0, |p| p.result.queries_issued),
                };
                let window = Window::new(w.begin_ns, w.end_ns.max(w.begin_ns + 1))
                    .map_err(HarnessError::from)?;
                Some(session.power_record(report, window, Some(counts), ptd)?)
            }
            _ => None,
        };
        Ok(MeasuredTest { output, power })
    }

    /// One pass into `dir`, its meters sampled into `dir/power/`.
    fn pass<G>(
        &self,
        session: &mut Session,
        dir: &Path,
        during: &mut impl FnMut(&RunControl) -> G,
    ) -> Result<(TestOutput, Option<SamplerReport>), InferenceError> {
        let measured = session.measure(dir, |clock: &Clock| {
            let _during = during(self.control);
            loadgen::start_test(
                self.sut,
                self.qsl,
                self.settings,
                &self.logs.with_outdir(dir),
                clock.anchor(),
                self.control,
            )
        })?;
        let output = measured.output.map_err(|source| InferenceError::Run {
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok((output, measured.report))
    }

    /// MLPerf Power's ranging run; leaves the analyzer logging the testing
    /// run with fixed ranges.
    fn ranging<G>(
        &self,
        session: &mut Session,
        client: &SharedPtdClient,
        model: &str,
        during: &mut impl FnMut(&RunControl) -> G,
    ) -> Result<PtdRecord, InferenceError> {
        let name = session.started_at().format("%Y-%m-%d_%H-%M-%S").to_string();
        ptd_step(
            lock(client)?.set_auto_ranges(),
            "setting auto ranges for the ranging run",
        )?;
        ptd_step(
            lock(client)?.go(&format!("{name}_ranging")),
            "starting the ranging run",
        )?;
        let ranging_dir = session.outdir().join("ranging");
        let (_, report) = self.pass(session, &ranging_dir, during)?;
        ptd_step(lock(client)?.stop().map(drop), "stopping the ranging run")?;
        let (max_v, max_a) = electrical_maxima(report.as_ref());
        let ranges = ranges_from_maxima(max_v, max_a, max_current_range_a(model))
            .ok_or(InferenceError::NoRangingSamples)?;
        ptd_step(
            lock(client)?.set_fixed_ranges(ranges.volts_v, ranges.amps_a),
            "setting the testing ranges",
        )?;
        ptd_step(
            lock(client)?.go(&format!("{name}_testing")),
            "starting the testing run",
        )?;
        Ok(PtdRecord {
            analyzer_model: model.to_string(),
            ranging_dir: "ranging".into(),
            testing_volts_v: ranges.volts_v,
            testing_amps_a: ranges.amps_a,
            amps_capped: ranges.amps_capped,
        })
    }
}

fn lock(client: &SharedPtdClient) -> Result<std::sync::MutexGuard<'_, PtdClient>, InferenceError> {
    client.lock().map_err(|_| InferenceError::PtdPoisoned)
}

fn ptd_step<T>(result: Result<T, PtdError>, doing: &'static str) -> Result<T, InferenceError> {
    result.map_err(|source| InferenceError::Ptd { doing, source })
}

/// Largest voltage and current any meter reported (the analyzer's).
fn electrical_maxima(report: Option<&SamplerReport>) -> (Option<f64>, Option<f64>) {
    let (mut volts, mut amps) = (None::<f64>, None::<f64>);
    let max = |m: &mut Option<f64>, v: f64| *m = Some(m.map_or(v, |m| m.max(v)));
    for meter in report.iter().flat_map(|r| r.meters.iter()) {
        for sample in &meter.samples {
            if let Reading::Power {
                volts: v, amps: a, ..
            } = sample.reading
            {
                v.into_iter().for_each(|v| max(&mut volts, v));
                a.into_iter().for_each(|a| max(&mut amps, a));
            }
        }
    }
    (volts, amps)
}

/// What the front end knows of the run that LoadGen does not.
pub struct RunDescription {
    pub command: Vec<String>,
    /// The workload's name (`resnet50`, `sleep`, …).
    pub workload: String,
    /// The model name conf files were read for.
    pub conf_model: String,
    /// What was built, for the result (model, devices, weights, data, …).
    pub parameters: serde_json::Value,
    pub conf_files: Vec<String>,
    pub applied: Vec<schema::AppliedSetting>,
}

/// The run's `result.json` record.
pub fn run_result(
    session: &Session,
    description: RunDescription,
    test: MeasuredTest,
) -> Result<RunResult, InferenceError> {
    let MeasuredTest { output, power } = test;
    let interrupted = output.interrupted || session.interrupt().is_set();
    Ok(RunResult {
        schema_version: schema::SCHEMA_VERSION,
        joulebench_version: env!("CARGO_PKG_VERSION").to_string(),
        kind: "inference".into(),
        status: if interrupted {
            RunStatus::Interrupted
        } else {
            RunStatus::Completed
        },
        started_at: session.started_at().to_rfc3339(),
        command: description.command,
        system: report::system::SystemDescription::detect(),
        workload: schema::Workload {
            name: description.workload,
            sut_name: output.sut_name.clone(),
            qsl_name: output.qsl_name.clone(),
            conf_model: description.conf_model,
            parameters: description.parameters,
        },
        settings: schema::SettingsRecord {
            scenario: output.requested.scenario,
            mode: output.effective.mode,
            conf_files: description.conf_files,
            applied: description.applied,
            requested: serde_json::to_value(&output.requested).map_err(InferenceError::Settings)?,
            effective: serde_json::to_value(&output.effective).map_err(InferenceError::Settings)?,
        },
        performance: output
            .performance
            .as_ref()
            .map(schema::Performance::from_summary),
        accuracy: output.accuracy.as_ref().map(|a| schema::AccuracyRecord {
            samples_issued: a.samples_issued,
            samples_logged: a.samples_logged,
            complete: a.complete,
            score: None,
        }),
        timed_window: output.power_window.as_ref().map(|w| schema::TimedWindow {
            begin_ns: w.begin_ns,
            end_ns: w.end_ns,
            duration_s: (w.end_ns.saturating_sub(w.begin_ns)) as f64 / 1e9,
            begin_utc: w.begin_utc.clone(),
            end_utc: w.end_utc.clone(),
        }),
        peak_search: output
            .peak_search
            .iter()
            .map(|p| schema::PeakStep {
                target_qps: p.target_qps,
                perf_constraints_met: p.perf_constraints_met,
                completed_samples_per_second: p.completed_samples_per_second,
            })
            .collect(),
        power,
        serving: None,
        files: output
            .files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .chain([schema::RESULT_FILE.to_string()])
            .collect(),
        log_warnings: output.log_warnings,
        log_errors: output.log_errors,
    })
}
