//! MLPerf Power's efficiency metric of an inference run. It joins a LoadGen
//! result (scenario, samples, queries) with the energy of the timed window,
//! which is why it lives here and not in `power` (which knows no scenarios).

use loadgen::Scenario;
use std::fmt;

/// The metric, by scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Efficiency {
    /// Offline and Server: samples per joule (= samples/s per watt).
    SamplesPerJoule(f64),
    /// SingleStream and MultiStream: energy per query.
    JoulesPerQuery(f64),
}

impl Efficiency {
    /// The name `result.json` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Efficiency::SamplesPerJoule(_) => "samples_per_joule",
            Efficiency::JoulesPerQuery(_) => "joules_per_query",
        }
    }

    pub fn value(self) -> f64 {
        match self {
            Efficiency::SamplesPerJoule(v) | Efficiency::JoulesPerQuery(v) => v,
        }
    }
}

impl fmt::Display for Efficiency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Efficiency::SamplesPerJoule(v) => write!(f, "{v:.4} samples/J"),
            Efficiency::JoulesPerQuery(v) => write!(f, "{:.4} mJ/query", v * 1e3),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EfficiencyError {
    #[error("energy must be positive and finite, got {energy_j} J")]
    Energy { energy_j: f64 },
    #[error("no queries completed: energy per query is undefined")]
    NoQueries,
}

/// What LoadGen counted in the timed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunCounts {
    pub scenario: Scenario,
    pub samples: u64,
    pub queries: u64,
}

/// MLPerf's efficiency: `samples / energy_j` for Offline and Server,
/// `energy_j / queries` for SingleStream and MultiStream, where `energy_j` is
/// the system energy over the timed window.
pub fn efficiency(counts: RunCounts, energy_j: f64) -> Result<Efficiency, EfficiencyError> {
    if !(energy_j.is_finite() && energy_j > 0.0) {
        return Err(EfficiencyError::Energy { energy_j });
    }
    match counts.scenario {
        Scenario::Offline | Scenario::Server => Ok(Efficiency::SamplesPerJoule(
            counts.samples as f64 / energy_j,
        )),
        Scenario::SingleStream | Scenario::MultiStream => match counts.queries {
            0 => Err(EfficiencyError::NoQueries),
            q => Ok(Efficiency::JoulesPerQuery(energy_j / q as f64)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(scenario: Scenario, samples: u64, queries: u64) -> RunCounts {
        RunCounts {
            scenario,
            samples,
            queries,
        }
    }

    #[test]
    fn the_metric_follows_the_scenario() {
        assert_eq!(
            efficiency(counts(Scenario::Offline, 1000, 1), 200.0).unwrap(),
            Efficiency::SamplesPerJoule(5.0)
        );
        assert_eq!(
            efficiency(counts(Scenario::Server, 1000, 1000), 200.0).unwrap(),
            Efficiency::SamplesPerJoule(5.0)
        );
        let per_query = efficiency(counts(Scenario::SingleStream, 1000, 1000), 200.0).unwrap();
        assert_eq!(per_query, Efficiency::JoulesPerQuery(0.2));
        assert_eq!(per_query.to_string(), "200.0000 mJ/query");
        assert_eq!(
            efficiency(counts(Scenario::MultiStream, 8000, 1000), 200.0).unwrap(),
            Efficiency::JoulesPerQuery(0.2)
        );
    }

    #[test]
    fn undefined_metrics_are_errors() {
        assert_eq!(
            efficiency(counts(Scenario::SingleStream, 0, 0), 200.0),
            Err(EfficiencyError::NoQueries)
        );
        assert!(efficiency(counts(Scenario::Offline, 10, 10), 0.0).is_err());
        assert!(efficiency(counts(Scenario::Offline, 10, 10), f64::NAN).is_err());
    }
}
