// Host-side runtime queries of the mgdl_fast CUDA core (no torch, no pybind11).
#pragma once

namespace mgdl {

// Number of CUDA devices; throws CudaError when no driver or device is usable.
int device_count();
// CUDA runtime version this module was linked against, e.g. 13000.
int runtime_version();

}  // namespace mgdl
