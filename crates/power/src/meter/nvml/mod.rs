//! NVIDIA GPUs through NVML, loaded at run time.
//!
//! `libnvidia-ml.so.1` ships with the NVIDIA driver, not with us: linking it
//! at build time would make the binary refuse to start on every machine
//! without the driver. So the library is opened with `dlopen` (through
//! `libloading`) when a probe asks for it, and its absence is an ordinary
//! [`Probe::Unusable`] saying what to install.
//!
//! Per GPU, up to five meters, each a separate series so that none is
//! silently substituted for another:
//! - `nvml-gpuN`: the total energy counter (`nvmlDeviceGetTotalEnergyConsumption`,
//!   millijoules since the driver loaded, Volta and later) as an
//!   [`ReadingKind::EnergyCounter`] in microjoules; on older GPUs, where there
//!   is no counter, the power reading below takes this id instead.
//! - `nvml-gpuN-power`: `nvmlDeviceGetPowerUsage` (milliwatts), what
//!   `nvidia-smi` shows as `power.draw`; a one-second average on Ampere
//!   (except GA100) and later, instantaneous before.
//! - `nvml-gpuN-power-instant` and `nvml-gpuN-power-average`: the field values
//!   `NVML_FI_DEV_POWER_INSTANT` and `NVML_FI_DEV_POWER_AVERAGE` (GPU scope),
//!   where the driver has them.
//! - `nvml-gpuN-memory-power`: the same fields in memory scope (HBM power on
//!   the GPUs that measure it, H100 among them), domain `gpuN-memory`. It is
//!   part of the GPU's power, so the whole-GPU meters list it in `contains`.
//!
//! On an idle H100 (driver 580) all whole-GPU series agreed with `nvidia-smi`
//! (about 72 W, memory about 31 W of it) and each changed every 100 ms.
//!
//! The GPU's name and UUID are not part of [`MeterInfo`]; [`list_gpus`]
//! returns them for the system description, and the probe logs them.
//!
//! NVML is documented as thread-safe, so one initialised library is shared
//! (`Arc`) by the meters of all GPUs, each read from its own sampling thread.

mod library;

use library::*;
pub use library::{Nvml, LIBRARY_NAMES};

use super::{Meter, MeterError, MeterInfo, Probe, Provenance, Reading, ReadingKind, Scope};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

const SOURCE: &str = "nvml";

/// NVML field ids (nvml.h) and power scopes (`nvmlPowerScopeType_t`).
pub const FI_DEV_POWER_AVERAGE: u32 = 185;
pub const FI_DEV_POWER_INSTANT: u32 = 186;
pub const POWER_SCOPE_GPU: u32 = 0;
pub const POWER_SCOPE_MEMORY: u32 = 2;

/// How often NVML's power figures change. NVIDIA does not publish it; on an
/// H100 with driver 580 every series above (the energy counter included)
/// changed exactly every 100 ms, so sampling faster only repeats values.
/// `examples/nvml_probe.rs` measures it on other GPUs.
pub const UPDATE_PERIOD: Duration = Duration::from_millis(100);

/// A GPU as NVML names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuIdentity {
    /// NVML's index (the same as `nvidia-smi`'s).
    pub index: u32,
    /// e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// e.g. `GPU-6f0c5d...`.
    pub uuid: String,
}

/// The GPUs NVML sees, for the system description.
pub fn list_gpus() -> Result<Vec<GpuIdentity>, MeterError> {
    let nvml = Nvml::open()?;
    let count = nvml.device_count()?;
    (0..count)
        .map(|i| Ok(nvml.identity(i, nvml.device(i)?)))
        .collect()
}

/// What an [`NvmlMeter`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvmlQuantity {
    /// `nvmlDeviceGetTotalEnergyConsumption`.
    TotalEnergy,
    /// `nvmlDeviceGetPowerUsage`.
    PowerUsage,
    /// A power field of `nvmlDeviceGetFieldValues`.
    PowerField { field: u32, scope: u32 },
}

/// One NVML series of one GPU.
pub struct NvmlMeter {
    info: MeterInfo,
    nvml: Arc<Nvml>,
    device: Device,
    quantity: NvmlQuantity,
    identity: GpuIdentity,
}

impl NvmlMeter {
    /// Which GPU this is.
    pub fn identity(&self) -> &GpuIdentity {
        &self.identity
    }

    /// What this meter reads.
    pub fn quantity(&self) -> NvmlQuantity {
        self.quantity
    }

    fn read_quantity(&self) -> Result<Reading, MeterError> {
        match self.quantity {
            NvmlQuantity::TotalEnergy => {
                let mj = self.nvml.total_energy_mj(self.device)?;
                let counter_uj = mj_to_uj(mj).ok_or_else(|| MeterError::Read {
                    meter: self.info.id.clone(),
                    reason: format!("energy counter {mj} mJ overflows microjoules"),
                })?;
                Ok(Reading::Energy {
                    counter_uj,
                    wrap_uj: None,
                })
            }
            NvmlQuantity::PowerUsage => {
                let mw = self.nvml.power_usage_mw(self.device)?;
                Ok(Reading::watts(mw_to_w(f64::from(mw))))
            }
            NvmlQuantity::PowerField { field, scope } => self
                .nvml
                .field_watts(self.device, field, scope)
                .map(Reading::watts),
        }
    }
}

impl Meter for NvmlMeter {
    fn info(&self) -> &MeterInfo {
        &self.info
    }

    fn read(&mut self) -> Result<Reading, MeterError> {
        self.read_quantity().map_err(|e| rename(e, &self.info.id))
    }
}

/// Puts the meter's id into an error raised by the shared library code.
fn rename(e: MeterError, id: &str) -> MeterError {
    let meter = id.to_string();
    match e {
        MeterError::NotPresent { reason, .. } => MeterError::NotPresent { meter, reason },
        MeterError::Permission { reason, remedy, .. } => MeterError::Permission {
            meter,
            reason,
            remedy,
        },
        MeterError::Library { reason, .. } => MeterError::Library { meter, reason },
        MeterError::Read { reason, .. } => MeterError::Read { meter, reason },
        MeterError::Config { reason, .. } => MeterError::Config { meter, reason },
    }
}

/// Finds every NVIDIA GPU and its meters, from the usual library names.
pub fn probe() -> Vec<Probe> {
    probe_opened(Nvml::open())
}

/// Like [`probe`], with NVML loaded from `library` (a path or a name).
pub fn probe_library(library: &OsStr) -> Vec<Probe> {
    probe_opened(Nvml::open_path(library))
}

fn probe_opened(opened: Result<Nvml, MeterError>) -> Vec<Probe> {
    let unusable = |domain: &str, error: MeterError| Probe::Unusable {
        source: SOURCE.into(),
        domain: domain.into(),
        error,
    };
    let nvml = match opened {
        Ok(n) => Arc::new(n),
        Err(e) => return vec![unusable("gpu", e)],
    };
    let count = match nvml.device_count() {
        Ok(0) => {
            return vec![unusable(
                "gpu",
                MeterError::NotPresent {
                    meter: SOURCE.into(),
                    reason: "NVML loaded but sees no GPU".into(),
                },
            )]
        }
        Ok(n) => n,
        Err(e) => return vec![unusable("gpu", e)],
    };
    let mut probes = Vec::new();
    for index in 0..count {
        probe_device(&nvml, index, &mut probes);
    }
    probes
}

fn probe_device(nvml: &Arc<Nvml>, index: u32, probes: &mut Vec<Probe>) {
    let domain = format!("gpu{index}");
    let device = match nvml.device(index) {
        Ok(d) => d,
        Err(e) => {
            probes.push(Probe::Unusable {
                source: SOURCE.into(),
                domain,
                error: e,
            });
            return;
        }
    };
    let identity = nvml.identity(index, device);
    tracing::info!(
        target: "nvml",
        index,
        name = identity.name.as_str(),
        uuid = identity.uuid.as_str(),
        "found GPU"
    );
    let main_id = format!("nvml-{domain}");
    let power_id = format!("nvml-{domain}-power");
    let instant_id = format!("nvml-{domain}-power-instant");
    let average_id = format!("nvml-{domain}-power-average");
    let memory_id = format!("nvml-{domain}-memory-power");
    let memory_domain = format!("{domain}-memory");

    // The power fields first, in one call: whether the GPU measures its
    // memory's power decides what the whole-GPU meters contain.
    let wanted = [
        (FI_DEV_POWER_INSTANT, POWER_SCOPE_GPU),
        (FI_DEV_POWER_AVERAGE, POWER_SCOPE_GPU),
        (FI_DEV_POWER_INSTANT, POWER_SCOPE_MEMORY),
        (FI_DEV_POWER_AVERAGE, POWER_SCOPE_MEMORY),
    ];
    let mut requests = wanted.map(|(f, s)| NvmlFieldValue::request(f, s));
    let answered = nvml.field_values(device, &mut requests);
    // A field is usable when NVML answered it with a number; a memory-scope
    // 0 W means the GPU does not measure memory power.
    let status = |i: usize, zero_means_absent: bool| -> Result<NvmlQuantity, MeterError> {
        if let Err(e) = &answered {
            return Err(clone_error(e));
        }
        let (field, scope) = wanted[i];
        let v = requests[i];
        nvml.check(v.nvml_return, &field_name(field, scope))?;
        match field_value_f64(v.value_type, v.value) {
            Some(x) if zero_means_absent && x == 0.0 => Err(MeterError::NotPresent {
                meter: SOURCE.into(),
                reason: format!(
                    "{} reads 0 W: not measured on this GPU",
                    field_name(field, scope)
                ),
            }),
            Some(_) => Ok(NvmlQuantity::PowerField { field, scope }),
            None => Err(MeterError::NotPresent {
                meter: SOURCE.into(),
                reason: format!(
                    "{}: unknown value type {}",
                    field_name(field, scope),
                    v.value_type
                ),
            }),
        }
    };
    // Instantaneous memory power where the GPU has it, else its average.
    let memory = status(2, true).or_else(|e| status(3, true).map_err(|_| e));
    // Memory power is part of the GPU's power (on an idle H100: ~31 W of
    // ~72 W), so every whole-GPU meter contains the memory meter.
    let contains: Vec<String> = if memory.is_ok() {
        vec![memory_id.clone()]
    } else {
        Vec::new()
    };

    let meter = |id: &str, domain: &str, quantity: NvmlQuantity, contains: &[String]| {
        let kind = match quantity {
            NvmlQuantity::TotalEnergy => ReadingKind::EnergyCounter,
            _ => ReadingKind::PowerSample,
        };
        Probe::Usable(Box::new(NvmlMeter {
            info: MeterInfo {
                id: id.to_string(),
                source: SOURCE.into(),
                domain: domain.to_string(),
                scope: Scope::Gpu,
                kind,
                provenance: Provenance::Measured,
                // 1 mJ for the counter, 1 mW for power.
                resolution: 1e-3,
                update_period: UPDATE_PERIOD,
                contains: contains.to_vec(),
            },
            nvml: Arc::clone(nvml),
            device,
            quantity,
            identity: identity.clone(),
        }))
    };
    let unusable = |id: &str, domain: &str, e: MeterError| Probe::Unusable {
        source: SOURCE.into(),
        domain: domain.to_string(),
        error: rename(e, id),
    };

    // The main meter is the GPU for the system total; the other whole-GPU
    // readings measure the same thing another way (kept for comparison), so
    // it lists them as inside it and the total never adds them again.
    let mut main_contains = contains.clone();
    main_contains.extend([power_id.clone(), instant_id.clone(), average_id.clone()]);
    match (nvml.total_energy_mj(device), nvml.power_usage_mw(device)) {
        (Ok(_), Ok(_)) => {
            probes.push(meter(
                &main_id,
                &domain,
                NvmlQuantity::TotalEnergy,
                &main_contains,
            ));
            probes.push(meter(
                &power_id,
                &domain,
                NvmlQuantity::PowerUsage,
                &contains,
            ));
        }
        (Ok(_), Err(e)) => {
            probes.push(meter(
                &main_id,
                &domain,
                NvmlQuantity::TotalEnergy,
                &main_contains,
            ));
            probes.push(unusable(&power_id, &domain, e));
        }
        (Err(energy_err), Ok(_)) => {
            tracing::info!(
                target: "nvml",
                index,
                reason = %energy_err,
                "no energy counter; using nvmlDeviceGetPowerUsage samples"
            );
            probes.push(meter(
                &main_id,
                &domain,
                NvmlQuantity::PowerUsage,
                &main_contains,
            ));
        }
        (Err(energy_err), Err(_)) => probes.push(unusable(&main_id, &domain, energy_err)),
    }
    for (i, id) in [(0, &instant_id), (1, &average_id)] {
        match status(i, false) {
            Ok(quantity) => probes.push(meter(id, &domain, quantity, &contains)),
            Err(e) => probes.push(unusable(id, &domain, e)),
        }
    }
    match memory {
        Ok(quantity) => probes.push(meter(&memory_id, &memory_domain, quantity, &[])),
        Err(e) => probes.push(unusable(&memory_id, &memory_domain, e)),
    }
}

fn clone_error(e: &MeterError) -> MeterError {
    match e {
        MeterError::NotPresent { meter, reason } => MeterError::NotPresent {
            meter: meter.clone(),
            reason: reason.clone(),
        },
        MeterError::Permission {
            meter,
            reason,
            remedy,
        } => MeterError::Permission {
            meter: meter.clone(),
            reason: reason.clone(),
            remedy: remedy.clone(),
        },
        MeterError::Library { meter, reason } => MeterError::Library {
            meter: meter.clone(),
            reason: reason.clone(),
        },
        MeterError::Read { meter, reason } => MeterError::Read {
            meter: meter.clone(),
            reason: reason.clone(),
        },
        MeterError::Config { meter, reason } => MeterError::Config {
            meter: meter.clone(),
            reason: reason.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_library_is_one_unusable_probe_saying_what_to_install() {
        let probes = probe_library(OsStr::new("/nonexistent/libnvidia-ml.so.1"));
        assert_eq!(probes.len(), 1);
        match &probes[0] {
            Probe::Unusable {
                source,
                domain,
                error: MeterError::Library { reason, .. },
            } => {
                assert_eq!(source, "nvml");
                assert_eq!(domain, "gpu");
                assert!(reason.contains("cannot load"), "{reason}");
            }
            other => panic!("expected Unusable/Library, got {other:?}"),
        }
    }

    #[test]
    fn default_open_error_names_the_driver_to_install() {
        // Only meaningful where no NVIDIA driver is installed (this CI); on a
        // GPU machine NVML opens and there is nothing to check here.
        if let Err(e) = Nvml::open() {
            let text = e.to_string();
            assert!(matches!(e, MeterError::Library { .. }), "{text}");
            assert!(text.contains("install the NVIDIA driver"), "{text}");
            assert!(text.contains("libnvidia-ml.so.1"), "{text}");
        }
    }

    #[test]
    fn a_library_that_is_not_nvml_is_refused_by_symbol() {
        let probes = probe_library(OsStr::new("libc.so.6"));
        match &probes[..] {
            [Probe::Unusable {
                error: MeterError::Library { reason, .. },
                ..
            }] => {
                assert!(reason.contains("nvmlInit_v2"), "{reason}");
                assert!(reason.contains("NVIDIA's NVML"), "{reason}");
            }
            other => panic!("expected one Unusable/Library, got {other:?}"),
        }
    }

    #[test]
    fn field_names_say_field_and_scope() {
        assert_eq!(
            field_name(FI_DEV_POWER_INSTANT, POWER_SCOPE_MEMORY),
            "NVML_FI_DEV_POWER_INSTANT (memory scope)"
        );
        assert_eq!(
            field_name(FI_DEV_POWER_AVERAGE, POWER_SCOPE_GPU),
            "NVML_FI_DEV_POWER_AVERAGE (GPU scope)"
        );
    }
}
