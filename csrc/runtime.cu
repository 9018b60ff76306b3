// Runtime queries: how many devices the driver reports, and which runtime this build links.
#include "common.cuh"
#include "runtime.h"

namespace mgdl {

int device_count() {
  // cudaGetDeviceCount leaves the count unwritten when no driver is present (error 35).
  int count = 0;
  MGDL_CUDA_CHECK(cudaGetDeviceCount(&count));
  return count;
}

int runtime_version() {
  int version = 0;
  MGDL_CUDA_CHECK(cudaRuntimeGetVersion(&version));
  return version;
}

}  // namespace mgdl
