// Host-side runtime helpers of the mgdl_fast CUDA core (no torch, no pybind11).
#pragma once
#include <cstddef>
#include <cstdint>

namespace mgdl {

// Number of CUDA devices; throws CudaError when no driver or device is usable.
int device_count();
// CUDA runtime version this module was linked against, e.g. 13000.
int runtime_version();
// Makes `device` current. This module links its own static runtime, whose current device is
// independent of torch's, so every entry point sets it.
void use_device(int device);
// Bytes of shared memory one block may opt in to on `device`.
int max_smem_optin(int device);
// Grid of a persistent kernel: min(work, SMs x blocks resident per SM); also raises the
// kernel's dynamic shared-memory limit to `smem` on this device.
int persistent_grid(const void* kernel, int threads, size_t smem, int64_t work, int device);
// Throws CudaError if the last launch failed.
void check_launch(const char* what);

}  // namespace mgdl
