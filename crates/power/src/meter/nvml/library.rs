//! NVML itself: the library opened at run time, its C prototypes (nvml.h),
//! return codes mapped to the meter contract's errors, and the calls the
//! meters and the agent make (energy, power, fields, utilization, names).

use super::{
    GpuIdentity, FI_DEV_POWER_AVERAGE, FI_DEV_POWER_INSTANT, POWER_SCOPE_GPU, POWER_SCOPE_MEMORY,
    SOURCE,
};
use crate::meter::MeterError;
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_ulonglong, c_ushort, c_void, CStr, OsStr};

/// Library names tried in order: the driver's soname, then the development
/// symlink.
pub const LIBRARY_NAMES: [&str; 2] = ["libnvidia-ml.so.1", "libnvidia-ml.so"];

pub(super) type NvmlReturn = c_uint;
pub(super) const NVML_SUCCESS: NvmlReturn = 0;
pub(super) const NVML_ERROR_NOT_SUPPORTED: NvmlReturn = 3;
pub(super) const NVML_ERROR_NO_PERMISSION: NvmlReturn = 4;
pub(super) const NVML_ERROR_DRIVER_NOT_LOADED: NvmlReturn = 9;
pub(super) const NVML_ERROR_LIBRARY_NOT_FOUND: NvmlReturn = 12;
pub(super) const NVML_ERROR_FUNCTION_NOT_FOUND: NvmlReturn = 13;
pub(super) const NVML_ERROR_GPU_IS_LOST: NvmlReturn = 15;
pub(super) const NVML_ERROR_LIB_RM_VERSION_MISMATCH: NvmlReturn = 18;

/// Buffer sizes for names and UUIDs (`NVML_DEVICE_NAME_V2_BUFFER_SIZE`,
/// `NVML_DEVICE_UUID_V2_BUFFER_SIZE`).
pub(super) const NAME_BUFFER: usize = 96;
pub(super) const UUID_BUFFER: usize = 96;

pub(super) type DeviceRaw = *mut c_void;

/// `nvmlValue_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) union NvmlValue {
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
pub(super) struct NvmlFieldValue {
    field_id: c_uint,
    scope_id: c_uint,
    timestamp: i64,
    latency_usec: i64,
    pub(super) value_type: c_uint,
    pub(super) nvml_return: NvmlReturn,
    pub(super) value: NvmlValue,
}

const _: () = assert!(std::mem::size_of::<NvmlFieldValue>() == 40);

impl NvmlFieldValue {
    pub(super) fn request(field_id: u32, scope_id: u32) -> NvmlFieldValue {
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
pub(super) fn field_value_f64(value_type: c_uint, value: NvmlValue) -> Option<f64> {
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
pub(super) fn mw_to_w(mw: f64) -> f64 {
    mw / 1000.0
}

/// Millijoules (NVML's energy unit) to microjoules (the contract's).
pub(super) fn mj_to_uj(mj: u64) -> Option<u64> {
    mj.checked_mul(1000)
}

/// The entry points we use, resolved once.
pub(super) struct Api {
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
pub(super) struct NvmlUtilization {
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
pub(super) struct Device(DeviceRaw);
// SAFETY: NVML is thread-safe and a device handle is an opaque token that
// stays valid while the library is initialised (the meter holds `Arc<Nvml>`).
unsafe impl Send for Device {}
// SAFETY: as above; the handle is never dereferenced by us.
unsafe impl Sync for Device {}

pub(super) fn library_error(reason: String) -> MeterError {
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

    pub(super) fn error_text(&self, rc: NvmlReturn) -> String {
        error_text(&self.api, rc)
    }

    pub(super) fn check(&self, rc: NvmlReturn, what: &str) -> Result<(), MeterError> {
        if rc == NVML_SUCCESS {
            Ok(())
        } else {
            Err(classify(rc, &self.error_text(rc), what))
        }
    }

    pub(super) fn device_count(&self) -> Result<u32, MeterError> {
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

    pub(super) fn device(&self, index: u32) -> Result<Device, MeterError> {
        let mut raw: DeviceRaw = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        let rc = unsafe { (self.api.handle_by_index)(index, &mut raw) };
        self.check(rc, "nvmlDeviceGetHandleByIndex")?;
        Ok(Device(raw))
    }

    pub(super) fn text(
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

    pub(super) fn identity(&self, index: u32, device: Device) -> GpuIdentity {
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

    pub(super) fn total_energy_mj(&self, device: Device) -> Result<u64, MeterError> {
        let mut mj: c_ulonglong = 0;
        // SAFETY: valid handle and out-pointer.
        let rc = unsafe { (self.api.total_energy)(device.0, &mut mj) };
        self.check(rc, "nvmlDeviceGetTotalEnergyConsumption")?;
        Ok(mj)
    }

    pub(super) fn power_usage_mw(&self, device: Device) -> Result<u32, MeterError> {
        let mut mw: c_uint = 0;
        // SAFETY: valid handle and out-pointer.
        let rc = unsafe { (self.api.power_usage)(device.0, &mut mw) };
        self.check(rc, "nvmlDeviceGetPowerUsage")?;
        Ok(mw)
    }

    /// Reads field values; each entry's own result is checked by the caller.
    pub(super) fn field_values(
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
    pub(super) fn field_watts(
        &self,
        device: Device,
        field: u32,
        scope: u32,
    ) -> Result<f64, MeterError> {
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

pub(super) fn error_text(api: &Api, rc: NvmlReturn) -> String {
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

pub(super) fn field_name(field: u32, scope: u32) -> String {
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
pub(super) fn classify(rc: NvmlReturn, message: &str, what: &str) -> MeterError {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
