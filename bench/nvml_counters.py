#!/usr/bin/env python3
"""Every GPU's total-energy counter (NVML, mJ since the driver loaded),
space-separated in index order: read before and after a command, the
difference is each GPU's energy over it, read independently of joulebench
(through NVML's C library, not through joulebench's meter)."""
import ctypes

nvml = ctypes.CDLL("libnvidia-ml.so.1")
assert nvml.nvmlInit_v2() == 0, "nvmlInit failed"
count = ctypes.c_uint()
nvml.nvmlDeviceGetCount_v2(ctypes.byref(count))
values = []
for i in range(count.value):
    handle = ctypes.c_void_p()
    nvml.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(handle))
    mj = ctypes.c_ulonglong()
    nvml.nvmlDeviceGetTotalEnergyConsumption(handle, ctypes.byref(mj))
    values.append(str(mj.value))
print(" ".join(values))
