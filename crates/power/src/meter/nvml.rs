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

use super::{Meter, MeterError, MeterInfo, Probe, Provenance, Reading, ReadingKind, Scope};
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_ulonglong, c_ushort, c_void, CStr, OsStr};
use std::sync::Arc;
use std::time::Duration;

/// Library names tried in order: the driver's soname, then the development
/// symlink.
pub const LIBRARY_NAMES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];
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

type NvmlReturn = c_uint;
const NVML_SUCCESS: NvmlReturn = 0;
const NVML_ERROR_NOT_SUPPORTED: NvmlReturn = 3;
const NVML_ERROR_NO_PERMISSION: NvmlReturn = 4;
const NVML_ERROR_DRIVER_NOT_LOADED: NvmlReturn = 9;
const NVML_ERROR_LIBRARY_NOT_FOUND: NvmlReturn = 12;
const NVML_ERROR_FUNCTION_NOT_FOUND: NvmlReturn = 13;
const NVML_ERROR_GPU_IS_LOST: NvmlReturn = 15;
const NVML_ERROR_LIB_RM_VERSION_MISMATCH: NvmlReturn = 18;

/// Buffer sizes for names and UUIDs (`NVML_DEVICE_NAME_V2_BUFFER_SIZE`,
/// `NVML_DEVICE_UUID_V2_BUFFER_SIZE`).
const NAME_BUFFER: usize = 96;
const UUID_BUFFER: usize = 96;

type DeviceRaw = *mut c_void;

/// `nvmlValue_t`.
#[repr(C)]
#[derive(Clone, Copy)]
union NvmlValue {
    d: f64,
    ui: c_uint,
    ul: c_ulong,
    ull: c_ulonglong,
    sll: i64,
    si: c_int,
    us: c_ushort,
}

/// `nvmlFieldValue_t`.
#[repr(C)]
#[derive(Clone, Copy)]
struct NvmlFieldValue {
    field_id: c_uint,
    scope_id: c_uint,
    timestamp: i64,
    latency_usec: i64,
    value_type: c_uint,
    nvml_return: NvmlReturn,
    value: NvmlValue,
}

const _: () = assert!(std::mem::size_of::<NvmlFieldValue>() == 40);

impl NvmlFieldValue {
    fn request(field_id: u32, scope_id: u32) -> NvmlFieldValue {
        NvmlFieldValue {
            field_id,
            scope_id,
            timestamp: 0,
            latency_usec: 0,
            value_type: 0,
            nvml_return: NVML_SUCCESS,
            value: NvmlValue { ull: 0 },
        }
    }
}

/// Reads a field value as a number by its declared type
/// (`nvmlValueType_t`: 0 double, 1 uint, 2 ulong, 3 ulonglong, 4 signed
/// long long, 5 signed int, 6 ushort).
fn field_value_f64(value_type: c_uint, value: NvmlValue) -> Option<f64> {
    // SAFETY: every variant is plain data of at most 8 bytes, the union was
    // zero-initialised and NVML wrote the member named by `value_type`.
    unsafe {
        match value_type {
            0 => Some(value.d),
            1 => Some(f64::from(value.ui)),
            2 => Some(value.ul as f64),
            3 => Some(value.ull as f64),
            4 => Some(value.sll as f64),
            5 => Some(f64::from(value.si)),
            6 => Some(f64::from(value.us)),
            _ => None,
        }
    }
}

/// Milliwatts (NVML's unit) to watts.
fn mw_to_w(mw: f64) -> f64 {
    mw / 1000.0
}

/// Millijoules (NVML's energy unit) to microjoules (the contract's).
fn mj_to_uj(mj: u64) -> Option<u64> {
    mj.checked_mul(1000)
}

/// The entry points we use, resolved once.
struct Api {
    init: unsafe extern "C" fn() -> NvmlReturn,
    shutdown: unsafe extern "C" fn() -> NvmlReturn,
    error_string: unsafe extern "C" fn(NvmlReturn) -> *const c_char,
    device_count: unsafe extern "C" fn(*mut c_uint) -> NvmlReturn,
    handle_by_index: unsafe extern "C" fn(c_uint, *mut DeviceRaw) -> NvmlReturn,
    name: unsafe extern "C" fn(DeviceRaw, *mut c_char, c_uint) -> NvmlReturn,
    uuid: unsafe extern "C" fn(DeviceRaw, *mut c_char, c_uint) -> NvmlReturn,
    total_energy: unsafe extern "C" fn(DeviceRaw, *mut c_ulonglong) -> NvmlReturn,
    power_usage: unsafe extern "C" fn(DeviceRaw, *mut c_uint) -> NvmlReturn,
    /// Absent from very old drivers.
    field_values: Option<unsafe extern "C" fn(DeviceRaw, c_int, *mut NvmlFieldValue) -> NvmlReturn>,
    /// `nvmlDeviceGetUtilizationRates`: percent of time a kernel ran (and
    /// memory was read or written) over the driver's last sample period.
    utilization: Option<unsafe extern "C" fn(DeviceRaw, *mut NvmlUtilization) -> NvmlReturn>,
}

/// `nvmlUtilization_t`.
#[repr(C)]
#[derive(Default)]
struct NvmlUtilization {
    gpu: c_uint,
    memory: c_uint,
}

/// An initialised NVML. Dropping it shuts NVML down (NVML counts
/// init/shutdown pairs, so other users in the process are unaffected).
pub struct Nvml {
    api: Api,
    // Keeps the code behind `api`'s pointers mapped; dropped last.
    _library: libloading::Library,
}

/// A GPU handle. NVML handles are plain pointers into the library's state,
/// valid until shutdown and usable from any thread.
#[derive(Clone, Copy)]
struct Device(DeviceRaw);
// SAFETY: NVML is thread-safe and a device handle is an opaque token that
// stays valid while the library is initialised (the meter holds `Arc<Nvml>`).
unsafe impl Send for Device {}
// SAFETY: as above; the handle is never dereferenced by us.
unsafe impl Sync for Device {}

fn library_error(reason: String) -> MeterError {
    MeterError::Library {
        meter: SOURCE.into(),
        reason,
    }
}

impl Nvml {
    /// Opens and initialises NVML from the usual library names.
    pub fn open() -> Result<Nvml, MeterError> {
        let mut reasons = Vec::new();
        for name in LIBRARY_NAMES {
            match Nvml::open_path(OsStr::new(name)) {
                Ok(nvml) => return Ok(nvml),
                Err(MeterError::Library { reason, .. }) if reason.contains("cannot load") => {
                    reasons.push(reason)
                }
                Err(e) => return Err(e),
            }
        }
        Err(library_error(format!(
            "{}; install the NVIDIA driver (it ships NVML), or ignore this on a machine \
             without NVIDIA GPUs",
            reasons.join("; ")
        )))
    }

    /// Opens and initialises NVML from one library path or name.
    pub fn open_path(path: &OsStr) -> Result<Nvml, MeterError> {
        let shown = path.to_string_lossy();
        // SAFETY: loading runs the library's initialisers; libnvidia-ml's are
        // the driver vendor's and have no preconditions on us.
        let library = unsafe { libloading::Library::new(path) }
            .map_err(|e| library_error(format!("cannot load {shown}: {e}")))?;
        macro_rules! symbol {
            ($name:literal) => {
                // SAFETY: the type matches the prototype in nvml.h; the
                // pointer is copied out and `library` is kept alive with it.
                unsafe { library.get(concat!($name, "\0").as_bytes()) }
                    .map(|s| *s)
                    .map_err(|e| {
                        library_error(format!(
                            "{shown} has no {} ({e}); is it NVIDIA's NVML?",
                            $name
                        ))
                    })
            };
        }
        let api = Api {
            init: symbol!("nvmlInit_v2")?,
            shutdown: symbol!("nvmlShutdown")?,
            error_string: symbol!("nvmlErrorString")?,
            device_count: symbol!("nvmlDeviceGetCount_v2")?,
            handle_by_index: symbol!("nvmlDeviceGetHandleByIndex_v2")?,
            name: symbol!("nvmlDeviceGetName")?,
            uuid: symbol!("nvmlDeviceGetUUID")?,
            total_energy: symbol!("nvmlDeviceGetTotalEnergyConsumption")?,
            power_usage: symbol!("nvmlDeviceGetPowerUsage")?,
            field_values: symbol!("nvmlDeviceGetFieldValues").ok(),
            utilization: symbol!("nvmlDeviceGetUtilizationRates").ok(),
        };
        // SAFETY: no arguments; NVML may be initialised more than once.
        let rc = unsafe { (api.init)() };
        if rc != NVML_SUCCESS {
            return Err(classify(rc, &error_text(&api, rc), "nvmlInit"));
        }
        Ok(Nvml {
            api,
            _library: library,
        })
    }

    fn error_text(&self, rc: NvmlReturn) -> String {
        error_text(&self.api, rc)
    }

    fn check(&self, rc: NvmlReturn, what: &str) -> Result<(), MeterError> {
        if rc == NVML_SUCCESS {
            Ok(())
        } else {
            Err(classify(rc, &self.error_text(rc), what))
        }
    }

    fn device_count(&self) -> Result<u32, MeterError> {
        let mut count: c_uint = 0;
        // SAFETY: valid out-pointer.
        let rc = unsafe { (self.api.device_count)(&mut count) };
        self.check(rc, "nvmlDeviceGetCount")?;
        Ok(count)
    }

    /// How busy GPU `index` was (percent of the driver's last sample period
    /// in which a kernel ran); `None` where the driver cannot say.
    pub fn gpu_utilization(&self, index: u32) -> Option<u32> {
        let f = self.api.utilization?;
        let device = self.device(index).ok()?;
        let mut u = NvmlUtilization::default();
        // SAFETY: a live handle and a valid out-pointer of nvml.h's layout.
        let rc = unsafe { f(device.0, &mut u) };
        (rc == NVML_SUCCESS).then_some(u.gpu)
    }

    /// How many GPUs NVML sees.
    pub fn gpu_count(&self) -> Result<u32, MeterError> {
        self.device_count()
    }

    fn device(&self, index: u32) -> Result<Device, MeterError> {
        let mut raw: DeviceRaw = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        let rc = unsafe { (self.api.handle_by_index)(index, &mut raw) };
        self.check(rc, "nvmlDeviceGetHandleByIndex")?;
        Ok(Device(raw))
    }

    fn text(
        &self,
        f: unsafe extern "C" fn(DeviceRaw, *mut c_char, c_uint) -> NvmlReturn,
        device: Device,
        size: usize,
        what: &str,
    ) -> Result<String, MeterError> {
        let mut buf = vec![0 as c_char; size];
        // SAFETY: the buffer holds `size` chars and NVML writes at most that
        // many, NUL included.
        let rc = unsafe { f(device.0, buf.as_mut_ptr(), size as c_uint) };
        self.check(rc, what)?;
        let bytes: Vec<u8> = buf
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn identity(&self, index: u32, device: Device) -> GpuIdentity {
        GpuIdentity {
            index,
            name: self
                .text(self.api.name, device, NAME_BUFFER, "nvmlDeviceGetName")
                .unwrap_or_else(|e| format!("(unknown: {e})")),
            uuid: self
                .text(self.api.uuid, device, UUID_BUFFER, "nvmlDeviceGetUUID")
                .unwrap_or_else(|e| format!("(unknown: {e})")),
        }
    }

    fn total_energy_mj(&self, device: Device) -> Result<u64, MeterError> {
        let mut mj: c_ulonglong = 0;
        // SAFETY: valid handle and out-pointer.
        let rc = unsafe { (self.api.total_energy)(device.0, &mut mj) };
        self.check(rc, "nvmlDeviceGetTotalEnergyConsumption")?;
        Ok(mj)
    }

    fn power_usage_mw(&self, device: Device) -> Result<u32, MeterError> {
        let mut mw: c_uint = 0;
        // SAFETY: valid handle and out-pointer.
        let rc = unsafe { (self.api.power_usage)(device.0, &mut mw) };
        self.check(rc, "nvmlDeviceGetPowerUsage")?;
        Ok(mw)
    }

    /// Reads field values; each entry's own result is checked by the caller.
    fn field_values(
        &self,
        device: Device,
        requests: &mut [NvmlFieldValue],
    ) -> Result<(), MeterError> {
        let f = self
            .api
            .field_values
            .ok_or_else(|| MeterError::NotPresent {
                meter: SOURCE.into(),
                reason: "this driver's NVML has no nvmlDeviceGetFieldValues; update the driver"
                    .into(),
            })?;
        let count = c_int::try_from(requests.len()).map_err(|_| MeterError::Read {
            meter: SOURCE.into(),
            reason: "too many field values".into(),
        })?;
        // SAFETY: `requests` holds `count` initialised entries NVML fills in.
        let rc = unsafe { f(device.0, count, requests.as_mut_ptr()) };
        self.check(rc, "nvmlDeviceGetFieldValues")
    }

    /// One power field in watts.
    fn field_watts(&self, device: Device, field: u32, scope: u32) -> Result<f64, MeterError> {
        let mut request = [NvmlFieldValue::request(field, scope)];
        self.field_values(device, &mut request)?;
        let [v] = request;
        self.check(v.nvml_return, &field_name(field, scope))?;
        field_value_f64(v.value_type, v.value)
            .map(mw_to_w)
            .ok_or_else(|| MeterError::Read {
                meter: SOURCE.into(),
                reason: format!(
                    "{}: unknown value type {}",
                    field_name(field, scope),
                    v.value_type
                ),
            })
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: paired with the successful nvmlInit in `open_path`.
        let rc = unsafe { (self.api.shutdown)() };
        if rc != NVML_SUCCESS {
            tracing::debug!(target: "nvml", rc, "nvmlShutdown failed");
        }
    }
}

fn error_text(api: &Api, rc: NvmlReturn) -> String {
    // SAFETY: nvmlErrorString accepts any code and returns a static
    // NUL-terminated string (or null, checked).
    let ptr = unsafe { (api.error_string)(rc) };
    if ptr.is_null() {
        return format!("NVML error {rc}");
    }
    // SAFETY: non-null, NUL-terminated, static lifetime per NVML docs.
    let text = unsafe { CStr::from_ptr(ptr) };
    format!("{} (NVML error {rc})", text.to_string_lossy())
}

fn field_name(field: u32, scope: u32) -> String {
    let f = match field {
        FI_DEV_POWER_INSTANT => "NVML_FI_DEV_POWER_INSTANT".to_string(),
        FI_DEV_POWER_AVERAGE => "NVML_FI_DEV_POWER_AVERAGE".to_string(),
        other => format!("field {other}"),
    };
    let s = match scope {
        POWER_SCOPE_GPU => "GPU scope",
        POWER_SCOPE_MEMORY => "memory scope",
        _ => "other scope",
    };
    format!("{f} ({s})")
}

/// Maps an NVML return code to the contract's error kinds.
fn classify(rc: NvmlReturn, message: &str, what: &str) -> MeterError {
    let meter = SOURCE.to_string();
    let reason = format!("{what}: {message}");
    match rc {
        NVML_ERROR_NOT_SUPPORTED => MeterError::NotPresent { meter, reason },
        NVML_ERROR_NO_PERMISSION => MeterError::Permission {
            meter,
            reason,
            remedy: "run as root or ask the administrator to allow NVML queries for this user"
                .into(),
        },
        NVML_ERROR_DRIVER_NOT_LOADED => MeterError::Library {
            meter,
            reason: format!("{reason}; the NVIDIA kernel driver is not loaded (check nvidia-smi)"),
        },
        NVML_ERROR_LIB_RM_VERSION_MISMATCH => MeterError::Library {
            meter,
            reason: format!(
                "{reason}; the NVML library and the loaded kernel driver differ in version \
                 (reboot, or reload the driver after an update)"
            ),
        },
        NVML_ERROR_LIBRARY_NOT_FOUND | NVML_ERROR_FUNCTION_NOT_FOUND => {
            MeterError::Library { meter, reason }
        }
        NVML_ERROR_GPU_IS_LOST => MeterError::Read {
            meter,
            reason: format!("{reason}; the GPU fell off the bus"),
        },
        _ => MeterError::Read { meter, reason },
    }
}

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
    fn units_convert_to_the_contract() {
        assert_eq!(mj_to_uj(123_456), Some(123_456_000));
        assert_eq!(mj_to_uj(u64::MAX), None);
        assert_eq!(mw_to_w(71_250.0), 71.25);
    }

    #[test]
    fn field_values_are_read_by_their_declared_type() {
        assert_eq!(field_value_f64(1, NvmlValue { ui: 68_000 }), Some(68_000.0));
        assert_eq!(field_value_f64(0, NvmlValue { d: 1.5 }), Some(1.5));
        assert_eq!(
            field_value_f64(3, NvmlValue { ull: 1 << 40 }),
            Some((1u64 << 40) as f64)
        );
        assert_eq!(field_value_f64(4, NvmlValue { sll: -5 }), Some(-5.0));
        assert_eq!(field_value_f64(5, NvmlValue { si: -7 }), Some(-7.0));
        assert_eq!(field_value_f64(6, NvmlValue { us: 9 }), Some(9.0));
        assert_eq!(field_value_f64(2, NvmlValue { ul: 11 }), Some(11.0));
        assert_eq!(field_value_f64(7, NvmlValue { ull: 0 }), None);
    }

    #[test]
    fn return_codes_map_to_error_kinds_with_remedies() {
        assert!(matches!(
            classify(3, "Not Supported", "x"),
            MeterError::NotPresent { .. }
        ));
        match classify(4, "Insufficient Permissions", "x") {
            MeterError::Permission { remedy, .. } => assert!(remedy.contains("root")),
            other => panic!("{other:?}"),
        }
        let e = classify(9, "Driver Not Loaded", "nvmlInit");
        assert!(matches!(e, MeterError::Library { .. }));
        assert!(e.to_string().contains("nvidia-smi"));
        let e = classify(18, "mismatch", "nvmlInit");
        assert!(e.to_string().contains("reboot"));
        assert!(matches!(
            classify(15, "GPU is lost", "x"),
            MeterError::Read { .. }
        ));
        assert!(matches!(
            classify(999, "Unknown Error", "x"),
            MeterError::Read { .. }
        ));
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
