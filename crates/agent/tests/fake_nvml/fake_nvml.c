/*
 * A stand-in for NVIDIA's libnvidia-ml.so.1 with the calls joulebench uses,
 * for tests on machines without GPUs: the OS boundary a real NVML sits at.
 * GPU i is the folder $JOULEBENCH_FAKE_NVML_DIR/gpu<i>; its total energy
 * (nvmlDeviceGetTotalEnergyConsumption, millijoules) is the number in its
 * energy_mj file, which the test advances; its utilization (percent), the
 * number in its utilization file (0 without one). Power readings are not offered
 * (NVML_ERROR_NOT_SUPPORTED), so only the energy counter is a meter.
 * Written for joulebench from NVML's documented prototypes (nvml.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_UNKNOWN 999
#define MAX_GPUS 16

static char dir_of[MAX_GPUS][4096];
static unsigned int gpus;

nvmlReturn_t nvmlInit_v2(void) {
    const char *root = getenv("JOULEBENCH_FAKE_NVML_DIR");
    gpus = 0;
    if (!root) return NVML_SUCCESS;
    for (unsigned int i = 0; i < MAX_GPUS; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/gpu%u/energy_mj", root, i);
        FILE *f = fopen(path, "r");
        if (!f) break;
        fclose(f);
        snprintf(dir_of[i], sizeof dir_of[i], "%s/gpu%u", root, i);
        gpus = i + 1;
    }
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) { return NVML_SUCCESS; }

const char *nvmlErrorString(nvmlReturn_t rc) {
    switch (rc) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = gpus;
    return NVML_SUCCESS;
}

/* A device handle is its index plus one (never NULL). */
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
    if (index >= gpus || !device) return NVML_ERROR_INVALID_ARGUMENT;
    *device = (void *)(size_t)(index + 1);
    return NVML_SUCCESS;
}

static int index_of(void *device) {
    size_t i = (size_t)device;
    return (i >= 1 && i <= gpus) ? (int)(i - 1) : -1;
}

nvmlReturn_t nvmlDeviceGetName(void *device, char *name, unsigned int length) {
    int i = index_of(device);
    if (i < 0 || !name) return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(name, length, "Fake GPU %d", i);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(void *device, char *uuid, unsigned int length) {
    int i = index_of(device);
    if (i < 0 || !uuid) return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(uuid, length, "GPU-fake-0000-0000-0000-%012d", i);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(void *device, unsigned long long *energy) {
    int i = index_of(device);
    if (i < 0 || !energy) return NVML_ERROR_INVALID_ARGUMENT;
    char path[4200];
    snprintf(path, sizeof path, "%s/energy_mj", dir_of[i]);
    FILE *f = fopen(path, "r");
    if (!f) return NVML_ERROR_UNKNOWN;
    int ok = fscanf(f, "%llu", energy) == 1;
    fclose(f);
    return ok ? NVML_SUCCESS : NVML_ERROR_UNKNOWN;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(void *device, unsigned int *milliwatts) {
    (void)device;
    (void)milliwatts;
    return NVML_ERROR_NOT_SUPPORTED;
}

typedef struct {
    unsigned int gpu;
    unsigned int memory;
} nvmlUtilization_t;

nvmlReturn_t nvmlDeviceGetUtilizationRates(void *device, nvmlUtilization_t *u) {
    int i = index_of(device);
    if (i < 0 || !u) return NVML_ERROR_INVALID_ARGUMENT;
    char path[4200];
    snprintf(path, sizeof path, "%s/utilization", dir_of[i]);
    u->gpu = 0;
    u->memory = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%u", &u->gpu) != 1) u->gpu = 0;
        fclose(f);
    }
    return NVML_SUCCESS;
}
