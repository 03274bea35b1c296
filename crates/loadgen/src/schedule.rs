//! Which samples a run loads, and the queries it will issue: sample indices
//! and scheduled times, generated before the timed run (as LoadGen does, so
//! nothing random is drawn while timing).
//!
//! The draws follow LoadGen's order exactly (same engines, same seeds, same
//! distributions, same number of draws), so for the same settings and QSL
//! size the loaded set, the sample order and the Server arrival times are
//! those LoadGen would use.

use crate::effective::EffectiveSettings;
use crate::rng::Mt19937;
use crate::settings::Scenario;
use crate::sut::{QuerySample, QuerySampleIndex, ResponseId};

/// A set of samples loaded together.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadableSet {
    pub set: Vec<QuerySampleIndex>,
    /// Samples are drawn from `set[..distribution_end]`; the rest is
    /// MultiStream padding (so a query's samples can be contiguous).
    pub distribution_end: usize,
}

/// Splits a shuffled list of `sample_count` indices (capped at the QSL's
/// total) into sets of `performance_sample_count` (LoadGen's
/// `GenerateLoadableSets`).
pub fn loadable_sets(
    settings: &EffectiveSettings,
    sample_count: u64,
    qsl_total_count: usize,
) -> Vec<LoadableSet> {
    let count = (sample_count as usize).min(qsl_total_count);
    let mut samples: Vec<QuerySampleIndex> = (0..count).collect();
    Mt19937::new(settings.qsl_rng_seed).shuffle(&mut samples);
    let set_size = (settings.performance_sample_count as usize).max(1);
    let padding = if settings.scenario == Scenario::MultiStream {
        settings.samples_per_query as usize - 1
    } else {
        0
    };
    samples
        .chunks(set_size)
        .map(|chunk| {
            let mut set = chunk.to_vec();
            let distribution_end = set.len();
            // LoadGen pads by repeating the set's first entries; with a set
            // shorter than the padding it would read past its end, so wrap.
            for i in 0..padding {
                set.push(set[i % distribution_end]);
            }
            LoadableSet {
                set,
                distribution_end,
            }
        })
        .collect()
}

/// Sample sequence numbers (response ids), continuing across the runs of one
/// test (accuracy then performance), as LoadGen's `SequenceGen`.
pub struct SequenceGen {
    next_sample: u64,
    /// Per-sample audit draws; LoadGen never seeds this engine, so it runs
    /// from the standard default seed.
    accuracy_log_rng: Mt19937,
    draw_accuracy_log_values: bool,
}

impl SequenceGen {
    /// `draw_accuracy_log_values`: whether responses are sampled for the
    /// accuracy log in performance runs (the per-sample draws cost time and
    /// are only observable then).
    pub fn new(draw_accuracy_log_values: bool) -> Self {
        SequenceGen {
            next_sample: 0,
            accuracy_log_rng: Mt19937::new(5489),
            draw_accuracy_log_values,
        }
    }
}

/// Whether queries are generated for a timed run or to cover every sample once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Performance,
    Accuracy,
}

/// Every query of one run, flattened: query `q` is
/// `samples[query_start[q]..query_start[q + 1]]`, scheduled at
/// `scheduled_delta_ns[q]` after the start.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    pub samples: Vec<QuerySample>,
    pub query_start: Vec<usize>,
    pub scheduled_delta_ns: Vec<u64>,
    /// First sample's sequence number (its `ResponseId`).
    pub base_sample_seq: u64,
    /// LoadGen's `generated_samples_per_query`.
    pub samples_per_query: usize,
    /// LoadGen's `generated_query_duration`: the schedule's end, in ns.
    pub generated_duration_ns: u64,
    /// Per-sample audit value in [0, 1), when drawn.
    pub accuracy_log_values: Option<Vec<f64>>,
}

impl QueryPlan {
    pub fn query_count(&self) -> usize {
        self.scheduled_delta_ns.len()
    }
}

/// A sample picker: LoadGen's `SampleDistribution` variants.
enum Picker {
    Uniform(u64),
    Sequence {
        indices: Vec<usize>,
        next: usize,
        wrap: bool,
    },
}

impl Picker {
    /// Shuffled `0, stride, 2·stride, … < count` (accuracy mode and the
    /// unique-issue option).
    fn unique(count: usize, stride: usize, rng: &mut Mt19937) -> Picker {
        let mut indices: Vec<usize> = (0..count).step_by(stride.max(1)).collect();
        rng.shuffle(&mut indices);
        Picker::Sequence {
            indices,
            next: 0,
            wrap: false,
        }
    }

    /// Whole-set permutations concatenated until `sample_count` is covered.
    fn equal_issue(sample_count: usize, set_size: usize, rng: &mut Mt19937) -> Picker {
        let mut indices = Vec::new();
        let mut permutation: Vec<usize> = (0..set_size).collect();
        let mut j = 0;
        while j < sample_count {
            rng.shuffle(&mut permutation);
            indices.extend_from_slice(&permutation);
            j += set_size.max(1);
        }
        Picker::Sequence {
            indices,
            next: 0,
            wrap: true,
        }
    }

    fn pick(&mut self, rng: &mut Mt19937) -> usize {
        match self {
            Picker::Uniform(n) => rng.below(*n) as usize,
            Picker::Sequence {
                indices,
                next,
                wrap,
            } => {
                let i = if *wrap {
                    *next % indices.len().max(1)
                } else {
                    *next
                };
                *next += 1;
                // Past the end only if the QSL lied about its size; LoadGen
                // would throw here. Repeat the last sample instead of panicking.
                indices.get(i).or(indices.last()).copied().unwrap_or(0)
            }
        }
    }
}

/// LoadGen's `GenerateQueries`, for one loadable set.
pub fn generate_queries(
    settings: &EffectiveSettings,
    purpose: Purpose,
    loaded: &LoadableSet,
    seq: &mut SequenceGen,
) -> QueryPlan {
    let scenario = settings.scenario;
    let accuracy = purpose == Purpose::Accuracy;
    let loaded_samples = &loaded.set;
    let duration_multiplier: u64 = if scenario == Scenario::Server { 1 } else { 2 };
    let mut gen_duration_ns = duration_multiplier * settings.target_duration_ms * 1_000_000;
    let mut min_queries = settings.min_query_count as usize;
    let mut samples_per_query = settings.samples_per_query as usize;
    if accuracy && scenario == Scenario::Offline {
        samples_per_query = loaded.distribution_end;
    }
    if accuracy || settings.performance_issue_unique {
        gen_duration_ns = 0;
        min_queries = loaded_samples.len() / samples_per_query.max(1);
    }

    let mut sample_rng = Mt19937::new(settings.sample_index_rng_seed);
    let mut schedule_rng = Mt19937::new(settings.schedule_rng_seed);
    let stride = if scenario == Scenario::MultiStream {
        samples_per_query
    } else {
        1
    };
    // Constructed in LoadGen's order: each shuffle consumes `sample_rng`.
    let mut picker = if accuracy {
        Picker::unique(loaded.distribution_end, stride, &mut sample_rng)
    } else {
        Picker::Uniform(loaded.distribution_end as u64)
    };
    let mut picker_unique = Picker::unique(loaded.distribution_end, stride, &mut sample_rng);
    let mut picker_equal_issue =
        Picker::equal_issue(min_queries, loaded_samples.len(), &mut sample_rng);

    let equal_issue = settings.sample_concatenate_permutation;
    if !accuracy && equal_issue && !loaded_samples.is_empty() {
        let n = loaded_samples.len();
        if scenario == Scenario::Offline && !samples_per_query.is_multiple_of(n) {
            samples_per_query += n - samples_per_query % n;
        } else if scenario != Scenario::Offline && !min_queries.is_multiple_of(n) {
            min_queries += n - min_queries % n;
        }
    }

    let period_ns = (1.0 / settings.target_qps * 1e9) as u64;
    let lambda = settings.target_qps;
    let same_sample = settings.performance_issue_same_index as usize;

    let mut query_samples: Vec<QuerySampleIndex> = Vec::new();
    let base_sample_seq = seq.next_sample;
    let mut plan = PlanBuilder {
        samples: Vec::new(),
        query_start: vec![0],
        scheduled: Vec::new(),
        accuracy_values: seq.draw_accuracy_log_values.then(Vec::new),
    };
    let mut timestamp_ns: u64 = 0;
    let mut prev_timestamp_ns: u64 = 0;

    while prev_timestamp_ns < gen_duration_ns || plan.scheduled.len() < min_queries {
        query_samples.clear();
        match scenario {
            Scenario::MultiStream => {
                let first = if settings.performance_issue_unique {
                    picker_unique.pick(&mut sample_rng)
                } else if settings.performance_issue_same {
                    same_sample
                } else {
                    picker.pick(&mut sample_rng)
                };
                // Contiguous samples; the set's padding keeps them in range.
                let last = loaded_samples.len() - 1;
                query_samples.extend(
                    (first..first + samples_per_query).map(|i| loaded_samples[i.min(last)]),
                );
            }
            Scenario::Offline => {
                if settings.performance_issue_same {
                    query_samples.resize(samples_per_query, loaded_samples[same_sample]);
                } else {
                    let n = loaded_samples.len();
                    for _ in 0..samples_per_query / n {
                        let block = query_samples.len();
                        query_samples.extend_from_slice(loaded_samples);
                        if equal_issue {
                            sample_rng.shuffle(&mut query_samples[block..]);
                        }
                    }
                    query_samples.extend_from_slice(&loaded_samples[..samples_per_query % n]);
                }
            }
            Scenario::SingleStream | Scenario::Server => {
                for _ in 0..samples_per_query {
                    let i = if settings.performance_issue_unique {
                        picker_unique.pick(&mut sample_rng)
                    } else if settings.performance_issue_same {
                        same_sample
                    } else if equal_issue {
                        picker_equal_issue.pick(&mut sample_rng)
                    } else {
                        picker.pick(&mut sample_rng)
                    };
                    query_samples.push(loaded_samples[i]);
                }
            }
        }
        plan.push(&query_samples, timestamp_ns, seq);
        prev_timestamp_ns = timestamp_ns;
        timestamp_ns += if scenario == Scenario::Server {
            (schedule_rng.exponential(lambda) * 1e9) as u64
        } else {
            period_ns
        };
        if equal_issue
            && plan.scheduled.len() >= min_queries
            && prev_timestamp_ns < gen_duration_ns
            && scenario != Scenario::Offline
        {
            min_queries += loaded_samples.len();
        }
    }

    // Offline accuracy: a remainder query so every loaded sample is issued.
    if scenario == Scenario::Offline && accuracy {
        let remaining = loaded_samples.len() % samples_per_query.max(1);
        if remaining != 0 {
            query_samples.clear();
            for _ in 0..remaining {
                query_samples.push(loaded_samples[picker.pick(&mut sample_rng)]);
            }
            plan.push(&query_samples, timestamp_ns, seq);
        }
    }

    QueryPlan {
        samples: plan.samples,
        query_start: plan.query_start,
        scheduled_delta_ns: plan.scheduled,
        base_sample_seq,
        samples_per_query,
        generated_duration_ns: timestamp_ns,
        accuracy_log_values: plan.accuracy_values,
    }
}

/// Accumulates queries, numbering their samples from the sequence.
struct PlanBuilder {
    samples: Vec<QuerySample>,
    query_start: Vec<usize>,
    scheduled: Vec<u64>,
    accuracy_values: Option<Vec<f64>>,
}

impl PlanBuilder {
    fn push(&mut self, indices: &[QuerySampleIndex], at_ns: u64, seq: &mut SequenceGen) {
        for &index in indices {
            self.samples.push(QuerySample {
                id: ResponseId(seq.next_sample),
                index,
            });
            seq.next_sample += 1;
            if let Some(values) = self.accuracy_values.as_mut() {
                values.push(seq.accuracy_log_rng.canonical());
            }
        }
        self.query_start.push(self.samples.len());
        self.scheduled.push(at_ns);
    }
}

#[cfg(test)]
mod tests {
    //! The schedules against MLPerf LoadGen 6.0.17's own (tests/golden/,
    //! files its Python package wrote), and the Server arrival process.

    use super::*;
    use crate::settings::TestSettings;

    const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

    /// The settings of the reference runs (shared/reference/loadgen_null_sut.py).
    fn reference_settings(scenario: Scenario) -> TestSettings {
        let mut s = TestSettings {
            scenario,
            min_duration_ms: 1000,
            min_query_count: 1,
            ..Default::default()
        };
        match scenario {
            Scenario::Offline => s.offline_expected_qps = 100_000.0,
            Scenario::Server => {
                s.server_target_qps = 20_000.0;
                s.server_target_latency_ns = 100_000_000;
            }
            Scenario::SingleStream => s.single_stream_expected_latency_ns = 10_000.0,
            Scenario::MultiStream => {
                s.multi_stream_expected_latency_ns = 10_000.0;
                s.multi_stream_samples_per_query = 8;
            }
        }
        s
    }

    #[test]
    fn loaded_sample_set_is_loadgens() {
        let want: Vec<usize> = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{GOLDEN}/loadgen-6.0.17_loaded_qsl_set_seed0_n1024.json"
            ))
            .unwrap(),
        )
        .unwrap();
        for scenario in [Scenario::Offline, Scenario::Server, Scenario::SingleStream] {
            let e = EffectiveSettings::new(&reference_settings(scenario), 1024, 1024).unwrap();
            let sets = loadable_sets(&e, e.performance_sample_count, 1024);
            assert_eq!(sets.len(), 1);
            assert_eq!(sets[0].set, want, "{scenario}");
        }
        // MultiStream pads with the first samples_per_query - 1 entries.
        let e =
            EffectiveSettings::new(&reference_settings(Scenario::MultiStream), 1024, 1024).unwrap();
        let sets = loadable_sets(&e, 1024, 1024);
        assert_eq!(sets[0].set.len(), 1031);
        assert_eq!(&sets[0].set[1024..], &want[..7]);
        assert_eq!(sets[0].distribution_end, 1024);
    }

    #[test]
    fn server_schedule_is_loadgens() {
        // The reference Server run generated 20127 queries whose schedule ends at
        // 1000218854 ns: Poisson arrivals at 20000 QPS from schedule seed 0.
        let e = EffectiveSettings::new(&reference_settings(Scenario::Server), 1024, 1024).unwrap();
        let set = loadable_sets(&e, 1024, 1024).remove(0);
        let plan = generate_queries(&e, Purpose::Performance, &set, &mut SequenceGen::new(false));
        assert_eq!(plan.query_count(), 20127);
        assert_eq!(plan.generated_duration_ns, 1_000_218_854);
        assert_eq!(plan.samples_per_query, 1);
    }

    #[test]
    fn stream_and_offline_schedules_are_loadgens() {
        let set_for = |e: &EffectiveSettings| loadable_sets(e, 1024, 1024).remove(0);
        for (scenario, count, spq, duration) in [
            (Scenario::SingleStream, 200_001, 1, 2_000_010_000u64),
            (Scenario::MultiStream, 200_001, 8, 2_000_010_000),
            (Scenario::Offline, 1, 110_000, 10_000),
        ] {
            let e = EffectiveSettings::new(&reference_settings(scenario), 1024, 1024).unwrap();
            let plan = generate_queries(
                &e,
                Purpose::Performance,
                &set_for(&e),
                &mut SequenceGen::new(false),
            );
            assert_eq!(
                (
                    plan.query_count(),
                    plan.samples_per_query,
                    plan.generated_duration_ns
                ),
                (count, spq, duration),
                "{scenario}"
            );
        }
    }

    #[test]
    fn server_arrivals_are_poisson_at_the_target_rate() {
        // The schedule: for several seeds, the count over 2 s is within 4σ of
        // λT, gaps have the exponential's coefficient of variation (1) and median
        // (mean × ln 2).
        let lambda = 5_000.0;
        for seed in 1..=5u64 {
            let s = TestSettings {
                scenario: Scenario::Server,
                server_target_qps: lambda,
                min_duration_ms: 2000,
                min_query_count: 1,
                schedule_rng_seed: seed,
                ..Default::default()
            };
            let e = EffectiveSettings::new(&s, 64, 64).unwrap();
            let set = loadable_sets(&e, 64, 64).remove(0);
            let plan =
                generate_queries(&e, Purpose::Performance, &set, &mut SequenceGen::new(false));
            let n = plan.query_count() as f64;
            let expected = lambda * 2.0;
            assert!(
                (n - expected).abs() < 4.0 * expected.sqrt(),
                "seed {seed}: {n} arrivals"
            );
            let mut gaps: Vec<f64> = plan
                .scheduled_delta_ns
                .windows(2)
                .map(|w| (w[1] - w[0]) as f64)
                .collect();
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
            let cv = var.sqrt() / mean;
            assert!(
                (mean - 1e9 / lambda).abs() < 0.05 * 1e9 / lambda,
                "seed {seed}: mean gap {mean}"
            );
            assert!((cv - 1.0).abs() < 0.05, "seed {seed}: cv {cv}");
            gaps.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let median = gaps[gaps.len() / 2];
            assert!(
                (median / mean - std::f64::consts::LN_2).abs() < 0.05,
                "seed {seed}: median/mean {}",
                median / mean
            );
        }
    }
}
