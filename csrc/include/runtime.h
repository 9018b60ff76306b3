// Host-side runtime helpers of the mgdl_fast CUDA core (no torch, no pybind11).
#pragma once
#include <cstddef>
#include <cstdint>

namespace mgdl {

// Number of CUDA devices; throws CudaError when no driver or device is usable, naming the
// driver this module's runtime needs when the installed one is older.
int device_count();
// CUDA runtime version this module was linked against, e.g. 13000.
int runtime_version();
// The oldest driver branch a CUDA runtime version runs on (minor-version compatibility: r580
// for 13.x, r525 for 12.x); 0 if unknown.
int required_driver_branch(int runtime_version);
// Makes `device` current. This module links its own static runtime, whose current device is
// independent of torch's, so every entry point sets it.
void use_device(int device);
// Bytes of shared memory one block may opt in to on `device`.
int max_smem_optin(int device);
// Raises `kernel`'s dynamic shared-memory attribute on the current device `device` to `bytes`
// when the value it was last set to is lower (smem_attribute_update): the attribute belongs to
// the kernel, so it tracks the largest plan made for it.
void ensure_smem_attribute(const void* kernel, int device, uint32_t bytes);
// Throws CudaError if the last launch failed.
void check_launch(const char* what);

}  // namespace mgdl
