//! Settings from every source a front end has, in LoadGen's order (later
//! wins): the defaults the caller set, each conf file in turn (mlperf.conf,
//! then user.conf), each `key=value` override, then the mode and minimum
//! duration the front end names itself. Each applied value remembers where it
//! came from.

use crate::conf::{apply_override, Applied, ConfError, ConfFile, Origin, OverrideError};
use crate::settings::{Mode, SettingsError, TestSettings};
use std::path::PathBuf;

/// The sources after the defaults.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    pub conf_files: Vec<PathBuf>,
    /// `key=value` assignments (`--set`).
    pub overrides: Vec<String>,
    pub mode: Option<Mode>,
    pub min_duration_s: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("reading --conf (mlperf.conf/user.conf format): {0}")]
    Conf(#[from] ConfError),
    #[error(transparent)]
    Override(#[from] OverrideError),
    #[error("--duration {0}: must be a non-negative number of seconds")]
    Duration(f64),
    #[error("these settings cannot run: {0}")]
    Invalid(#[from] SettingsError),
}

impl Layers {
    /// Applies every layer to `settings` for `model` (the conf files'
    /// `model.Scenario.key` lookups) and checks the result can run.
    pub fn apply(
        &self,
        settings: &mut TestSettings,
        model: &str,
    ) -> Result<Vec<Applied>, LayerError> {
        let mut applied = Vec::new();
        for path in &self.conf_files {
            applied.extend(ConfFile::load(path)?.apply(model, settings)?);
        }
        for assignment in &self.overrides {
            applied.push(apply_override(settings, model, assignment)?);
        }
        let origin = |flag: &str| Origin {
            file: PathBuf::from(flag),
            line: 0,
        };
        if let Some(mode) = self.mode {
            settings.mode = mode;
            applied.push(Applied {
                field: "mode",
                value: mode.to_string(),
                origin: origin("--mode"),
            });
        }
        if let Some(seconds) = self.min_duration_s {
            if !(seconds.is_finite() && seconds >= 0.0) {
                return Err(LayerError::Duration(seconds));
            }
            settings.min_duration_ms = (seconds * 1000.0).round() as u64;
            applied.push(Applied {
                field: "min_duration_ms",
                value: settings.min_duration_ms.to_string(),
                origin: origin("--duration"),
            });
        }
        settings.validate()?;
        Ok(applied)
    }
}
