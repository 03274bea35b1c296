//! A campaign's result: each run's energy to train and its phases' energy
//! (from the session's meters), MLPerf's scores over the runs (olympic
//! time to train, energy to train over the same runs), the representative
//! (median) run, MLPerf Power's per-node logs, and the `result.json` record.

use crate::campaign::{device_names, Campaign, FinishedRun, Task};
use crate::clock::RunClock;
use crate::trainer::Ending;
use crate::TrainingError;
use harness::efficiency::RunCounts;
use harness::Session;
use power::energy::{SystemTotal, TotalPart, Window};
use power::sampler::SamplerReport;
use report::schema::{
    self, CommandResult, MeasuredCommand, OlympicRecord, PhaseRecord, QualityPoint, RunStatus,
    TimedWindow, TrainingRecord, TrainingResult, TrainingRunRecord,
};
use std::path::Path;

/// The file the trained digits weights are saved to.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Most power readings written per run in MLPerf Power's logs (longer runs
/// get longer intervals).
const MAX_POWER_READINGS: u64 = 2000;

/// What `joulebench train` ends with.
pub struct Outcome {
    pub result: TrainingResult,
    /// 0 every run converged; 1 one did not; 130 interrupted.
    pub exit_code: u8,
}

/// Everything the runs left, turned into the result, with the MLPerf Power
/// logs and the representative run's weights written into the session's
/// folder. `files` are the ones already there (result.json's list).
pub fn finish(
    campaign: &Campaign,
    done: &[FinishedRun],
    session: &Session,
    report: Option<&SamplerReport>,
    clock: RunClock,
    mut files: Vec<String>,
) -> Result<Outcome, TrainingError> {
    let outdir = session.outdir();
    let idle_total_w = report.and_then(|r| {
        let span = Window::new(first_sample_ns(r)?, last_sample_ns(r)?).ok()?;
        session.idle_total_w(r, span)
    });
    // Per run: energy to train, and each phase's energy.
    let mut runs = Vec::new();
    let mut run_phases = Vec::new();
    for r in done {
        let (record, phases) = run_record(campaign, r, session, report, idle_total_w)?;
        runs.push(record);
        run_phases.push(phases);
    }
    files.extend(done.iter().map(|r| r.mllog.clone()));
    if let Some(rep) = report {
        for (i, r) in done.iter().enumerate() {
            match mlperf_power_logs(outdir, i, r, rep, session, clock) {
                Ok(mut written) => files.append(&mut written),
                Err(e) => eprintln!("warning: MLPerf power log of run {}: {e}", i + 1),
            }
        }
    }
    // Scores: the olympic average of time to train over converged runs;
    // energy over the same counted runs.
    let converged_times: Vec<Option<f64>> = done
        .iter()
        .map(|r| (r.ending == Ending::Converged).then(|| r.seconds()))
        .collect();
    let time_score = crate::olympic::olympic_average(&converged_times);
    let energy_score = time_score.as_ref().and_then(|s| {
        let energies: Option<Vec<f64>> = s.counted.iter().map(|&i| runs[i].energy_j).collect();
        energies.map(|e| OlympicRecord {
            value: e.iter().sum::<f64>() / e.len() as f64,
            counted: s.counted.clone(),
            dropped: s.dropped.clone(),
            olympic: s.olympic,
            provenance: runs[s.counted[0]].energy_provenance,
        })
    });
    let rep_i = median_run(done);
    let rep = &done[rep_i];
    let window = Window::new(rep.run_start_ns, rep.run_stop_ns.max(rep.run_start_ns + 1))
        .map_err(energy_error)?;
    let power = match report {
        // Offline's efficiency metric is samples per joule: here, training
        // samples processed per joule.
        Some(r) => Some(session.power_record(
            r,
            window,
            Some(RunCounts {
                scenario: loadgen::Scenario::Offline,
                samples: rep.samples,
                queries: 0,
            }),
            None,
        )?),
        None => None,
    };
    if let Some(p) = &power {
        files.extend(p.logs.iter().map(|l| l.file.clone()));
    }
    let weights_file = match &rep.weights {
        Some(w) => {
            save_weights(w, &outdir.join(WEIGHTS_FILE))?;
            files.push(WEIGHTS_FILE.into());
            Some(WEIGHTS_FILE.to_string())
        }
        None => None,
    };
    let interrupted =
        session.interrupt().is_set() || done.iter().any(|r| r.ending == Ending::Interrupted);
    let all_converged =
        done.len() == campaign.runs && done.iter().all(|r| r.ending == Ending::Converged);
    let exit_code: u8 = match (interrupted, all_converged) {
        (true, _) => 130,
        (false, true) => 0,
        (false, false) => 1,
    };
    let top_phases: Vec<PhaseRecord> = run_phases[rep_i]
        .iter()
        .filter(|p| p.name != "init")
        .cloned()
        .collect();
    let command: Vec<String> = std::env::args().collect();
    let result = TrainingResult {
        common: CommandResult {
            schema_version: schema::SCHEMA_VERSION,
            joulebench_version: env!("CARGO_PKG_VERSION").into(),
            kind: schema::KIND_TRAINING.into(),
            status: if interrupted {
                RunStatus::Interrupted
            } else {
                RunStatus::Completed
            },
            started_at: session
                .started_at()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            command: command.clone(),
            system: report::system::SystemDescription::detect(),
            measured_command: MeasuredCommand {
                argv: command,
                exit_code: Some(i32::from(exit_code)),
                signal: None,
                reported_exit_code: i32::from(exit_code),
                wall_s: rep.seconds(),
                start_error: None,
                forwarded_signals: Vec::new(),
                mark_problems: Vec::new(),
                slurm: None,
            },
            timed_window: Some(TimedWindow {
                begin_ns: rep.run_start_ns,
                end_ns: rep.run_stop_ns,
                duration_s: rep.seconds(),
                begin_utc: session.utc_at(rep.run_start_ns),
                end_utc: session.utc_at(rep.run_stop_ns),
            }),
            phase_totals: report::phases::phase_totals(&top_phases),
            phases: top_phases,
            nodes: Vec::new(),
            power,
            peak_power: Vec::new(),
            files,
        },
        training: training_record(
            campaign,
            done,
            runs,
            rep_i,
            time_score,
            energy_score,
            weights_file,
        ),
    };
    Ok(Outcome { result, exit_code })
}

/// The representative run: the median time to train.
fn median_run(done: &[FinishedRun]) -> usize {
    let mut by_time: Vec<usize> = (0..done.len()).collect();
    by_time.sort_by(|&a, &b| done[a].seconds().total_cmp(&done[b].seconds()));
    by_time[(by_time.len() - 1) / 2]
}

/// The task's own part of the record: what was trained, on what data, how.
fn training_record(
    campaign: &Campaign,
    done: &[FinishedRun],
    runs: Vec<TrainingRunRecord>,
    rep_i: usize,
    time_score: Option<crate::olympic::OlympicScore>,
    energy_to_train_j: Option<OlympicRecord>,
    weights_file: Option<String>,
) -> TrainingRecord {
    let parameters = done.first().map_or(0, |r| r.parameters);
    let (model, data, synthetic, devices, mut hyperparameters) = match &campaign.task {
        Task::Digits { data, config, .. } => {
            let (train, held_out) = data.split();
            (
                crate::model::MODEL_NAME.to_string(),
                format!(
                    "scikit-learn digits (UCI optical digits, real): 8×8 images, {} training, \
                     {} held out (every fifth image)",
                    train.len(),
                    held_out.len()
                ),
                false,
                vec![config.device],
                config.hyperparameters(),
            )
        }
        Task::Resnet50Synthetic(config) => (
            "resnet50".to_string(),
            format!(
                "synthetic ImageNet-shaped inputs: 3×{s}×{s} seeded normal pixels, random labels \
                 of 1000 classes, one batch reused (data loading not measured); throughput only",
                s = config.image_side
            ),
            true,
            config.devices.clone(),
            config.hyperparameters(),
        ),
    };
    if let Some(map) = hyperparameters.as_object_mut() {
        map.insert("parameters".into(), serde_json::json!(parameters));
        if let Some(sync) = done.first().and_then(|r| r.gradient_sync) {
            map.insert("gradient_sync".into(), serde_json::json!(sync));
        }
    }
    let target = match &campaign.task {
        Task::Digits { config, .. } => Some(config.target_accuracy),
        Task::Resnet50Synthetic(_) => None,
    };
    TrainingRecord {
        task: campaign.task.name().into(),
        model,
        data,
        synthetic_data: synthetic,
        device: device_names(&devices),
        devices: devices.iter().map(|d| d.to_string()).collect(),
        dtype: hyperparameters["dtype"]
            .as_str()
            .unwrap_or("f32")
            .to_string(),
        quality_metric: target.map(|_| "held-out top-1 accuracy".into()),
        target_accuracy: target,
        hyperparameters,
        converged: done.len() == campaign.runs
            && done.iter().all(|r| r.ending == Ending::Converged),
        runs,
        representative_run: rep_i,
        time_to_train_s: time_score.map(|s| OlympicRecord {
            value: s.value,
            counted: s.counted,
            dropped: s.dropped,
            olympic: s.olympic,
            provenance: None,
        }),
        energy_to_train_j,
        mllog_files: done.iter().map(|r| r.mllog.clone()).collect(),
        weights_file,
    }
}

fn energy_error(e: power::energy::EnergyError) -> TrainingError {
    TrainingError::Energy(e.into())
}

fn first_sample_ns(r: &SamplerReport) -> Option<u64> {
    r.meters
        .iter()
        .filter_map(|m| m.samples.first())
        .map(|s| s.t_ns)
        .min()
}

fn last_sample_ns(r: &SamplerReport) -> Option<u64> {
    r.meters
        .iter()
        .filter_map(|m| m.samples.last())
        .map(|s| s.t_ns)
        .max()
}

/// The counted part of a total: measured, else estimated.
fn counted(total: &SystemTotal) -> Option<&TotalPart> {
    total.measured.as_ref().or(total.estimated.as_ref())
}

/// A run's record and its phases' energy.
fn run_record(
    campaign: &Campaign,
    r: &FinishedRun,
    session: &Session,
    report: Option<&SamplerReport>,
    idle_total_w: Option<f64>,
) -> Result<(TrainingRunRecord, Vec<PhaseRecord>), TrainingError> {
    let energy = |begin_ns: u64, end_ns: u64| -> Result<_, TrainingError> {
        match report {
            Some(rep) => {
                let w = Window::new(begin_ns, end_ns.max(begin_ns + 1)).map_err(energy_error)?;
                Ok(Some(session.window_energy(rep, w)?))
            }
            None => Ok(None),
        }
    };
    let spans: Vec<report::phases::PhaseSpan> = r
        .phases
        .iter()
        .map(|p| report::phases::PhaseSpan {
            name: p.name.clone(),
            begin_ns: p.begin_ns,
            end_ns: p.end_ns,
        })
        .collect();
    let phases = session.phase_records(report, &spans, idle_total_w)?;
    let whole = energy(r.run_start_ns, r.run_stop_ns)?;
    let part = whole.as_ref().and_then(|(_, total)| counted(total));
    let energy_j = part.map(|p| p.energy_j);
    let seconds = r.seconds();
    let record = TrainingRunRecord {
        seed: r.seed,
        status: match r.ending {
            // A throughput task has no target: it completes its steps.
            Ending::Converged if !campaign.task.has_target() => "completed",
            Ending::Converged => "converged",
            Ending::NotConverged => "not_converged",
            Ending::Interrupted => "interrupted",
        }
        .into(),
        converged: r.ending == Ending::Converged,
        epochs: r.epochs,
        steps: r.steps,
        samples_trained: r.samples,
        time_to_train_s: seconds,
        init_s: r.init_s,
        samples_per_s: if seconds > 0.0 {
            r.samples as f64 / seconds
        } else {
            0.0
        },
        final_accuracy: r.curve.last().map(|p| p.accuracy),
        energy_j,
        energy_provenance: part.map(|p| p.provenance),
        avg_w: part.map(|p| p.avg_w),
        j_per_sample: energy_j
            .filter(|_| r.samples > 0)
            .map(|j| j / r.samples as f64),
        phase_totals: report::phases::phase_totals(&phases),
        curve: r
            .curve
            .iter()
            .map(|p| QualityPoint {
                epoch: p.epoch,
                samples_trained: p.samples_trained,
                accuracy: p.accuracy,
                train_loss: p.train_loss,
                at_s: p.at_s,
            })
            .collect(),
        mllog: r.mllog.clone(),
    };
    Ok((record, phases))
}

/// `power/result_N/node_0.txt` (the counted total's power, interval by
/// interval, over run_start → run_stop) and `sw_0.txt`, as MLPerf's result
/// summarizer reads them.
fn mlperf_power_logs(
    outdir: &Path,
    i: usize,
    r: &FinishedRun,
    report: &SamplerReport,
    session: &Session,
    clock: RunClock,
) -> Result<Vec<String>, TrainingError> {
    let dir_rel = format!("power/result_{i}");
    let dir = outdir.join(&dir_rel);
    let (begin, end) = (r.run_start_ns, r.run_stop_ns.max(r.run_start_ns + 1));
    let interval_ns = session.options().interval.as_nanos() as u64;
    let step = interval_ns
        .max((end - begin).div_ceil(MAX_POWER_READINGS))
        .max(1);
    let mut readings = Vec::new();
    let mut t = begin;
    while t < end {
        let next = (t + step).min(end);
        let window = Window::new(t, next).map_err(energy_error)?;
        let (_, total) = session.window_energy(report, window)?;
        let part = counted(&total).ok_or(TrainingError::NoCountedMeter)?;
        readings.push((next, part.energy_j / ((next - t) as f64 / 1e9)));
        t = next;
    }
    std::fs::create_dir_all(&dir).map_err(|e| TrainingError::Io {
        path: dir.clone(),
        source: e,
    })?;
    crate::mllog::write_power_log(
        &dir.join("node_0.txt"),
        clock,
        "node_0",
        begin,
        end,
        &readings,
    )?;
    crate::mllog::write_single_node_switch_log(&dir.join("sw_0.txt"), clock, begin)?;
    Ok(vec![
        format!("{dir_rel}/node_0.txt"),
        format!("{dir_rel}/sw_0.txt"),
    ])
}

/// The trained weights, written so a crash never leaves half a model.
fn save_weights(w: &crate::VarMap, path: &Path) -> Result<(), TrainingError> {
    Ok(atomic_file::write_with(path, |tmp| {
        w.save(tmp).map_err(std::io::Error::other)
    })?)
}
