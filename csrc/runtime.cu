// Runtime queries and launch helpers: devices, shared-memory limits, persistent grids.
#include <map>
#include <mutex>
#include <tuple>

#include <stdexcept>
#include <string>

#include "common.cuh"
#include "ops.h"
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

void use_device(int device) { MGDL_CUDA_CHECK(cudaSetDevice(device)); }

int max_smem_optin(int device) {
  int bytes = 0;
  MGDL_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return bytes;
}

int persistent_grid(const void* kernel, int threads, size_t smem, int64_t work, int device) {
  // The attribute and occupancy queries cost driver calls; a training loop asks every step.
  static std::mutex mutex;
  static std::map<std::tuple<const void*, int, int, size_t>, int> resident;
  const auto key = std::make_tuple(kernel, device, threads, smem);
  int capacity = 0;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = resident.find(key);
    if (it == resident.end()) {
      MGDL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(smem)));
      int per_sm = 0, sms = 0;
      MGDL_CUDA_CHECK(
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
      MGDL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
      if (per_sm < 1) throw CudaError("mgdl_fast._C: kernel cannot be resident on this device");
      it = resident.emplace(key, per_sm * sms).first;
    }
    capacity = it->second;
  }
  return static_cast<int>(work < capacity ? work : capacity);
}

SmemPlan device_plan(int device, const Dims& dims, bool train) {
  if (const char* why = check_dims(dims))
    throw std::invalid_argument(std::string("mgdl_fast._C: ") + why);
  const SmemPlan plan = plan_smem(dims, train, static_cast<uint32_t>(max_smem_optin(device)));
  if (plan.warps == 0)
    throw std::invalid_argument(
        "mgdl_fast._C: the block's weights and tiles do not fit in shared memory");
  return plan;
}

void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) check_cuda(status, what);
}

}  // namespace mgdl
