// Runtime queries and launch plans: devices, the driver check, shared-memory limits and
// attributes, resident grids, workspaces.
#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "common.cuh"
#include "ops.h"
#include "runtime.h"

namespace mgdl {

namespace {

std::string cuda_version(int v) {
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

const void* kernel_for(bool train, int w, int warps) {
  return train ? train_kernel(w, warps) : fwd_kernel(w);
}

// Dynamic shared memory a block of the (train, w) kernels may use on the current device: the
// opt-in limit less the largest static shared memory of their instantiations (1 KB on sm_90a).
uint32_t dynamic_smem_limit(int device, bool train, int w) {
  size_t static_bytes = 0;
  for (int warps : {8, 4}) {
    const void* kernel = kernel_for(train, w, warps);
    if (kernel == nullptr) continue;
    cudaFuncAttributes attr{};
    MGDL_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
    static_bytes = std::max(static_bytes, attr.sharedSizeBytes);
  }
  return static_cast<uint32_t>(max_smem_optin(device) - static_cast<int>(static_bytes));
}

}  // namespace

int required_driver_branch(int runtime_version) {
  const int major = runtime_version / 1000;
  return major >= 13 ? 580 : major == 12 ? 525 : major == 11 ? 450 : 0;
}

int device_count() {
  // cudaGetDeviceCount leaves the count unwritten when no driver is present (error 35).
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaErrorInsufficientDriver) {
    int driver = 0;
    cudaDriverGetVersion(&driver);
    if (driver == 0)
      throw CudaError("mgdl_fast._C: no CUDA driver is loaded"
                      " (cudaGetDeviceCount: cudaErrorInsufficientDriver)");
    throw CudaError("mgdl_fast._C: the CUDA driver supports CUDA " + cuda_version(driver) +
                    " but _C links the CUDA " + cuda_version(CUDART_VERSION) +
                    " runtime, which needs driver r" +
                    std::to_string(required_driver_branch(CUDART_VERSION)) +
                    " or newer: update the driver or rebuild _C with a toolkit the driver supports"
                    " (cudaGetDeviceCount: cudaErrorInsufficientDriver)");
  }
  check_cuda(status, "cudaGetDeviceCount(&count)");
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

void ensure_smem_attribute(const void* kernel, int device, uint32_t bytes) {
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, uint32_t> attribute;
  std::lock_guard<std::mutex> lock(mutex);
  uint32_t& current = attribute.try_emplace({kernel, device}, kDefaultDynamicSmem).first->second;
  if (const uint32_t value = smem_attribute_update(current, bytes)) {
    MGDL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(value)));
    current = value;
  }
}

SmemPlan device_smem_plan(int device, const Dims& dims, bool train, int warps) {
  if (const char* why = check_dims(dims))
    throw std::invalid_argument(std::string("mgdl_fast._C: ") + why);
  if (warps != 0 && warps != 4 && warps != 8)
    throw std::invalid_argument("mgdl_fast._C: warps must be 0 (the planner's choice), 4 or 8");
  use_device(device);
  return plan_smem(dims, train, dynamic_smem_limit(device, train, dims.w), warps);
}

KernelPlan make_plan(int device, const Dims& dims, bool train, int warps) {
  const SmemPlan smem = device_smem_plan(device, dims, train, warps);
  if (smem.warps == 0)
    throw std::invalid_argument(
        "mgdl_fast._C: the block's weights and tiles do not fit in shared memory");
  KernelPlan p{};
  p.device = device;
  p.train = train;
  p.dims = dims;
  p.smem = smem;
  p.kernel = kernel_for(train, dims.w, smem.warps);
  p.name = std::string(train ? "block_train_kernel<" : "block_fwd_kernel<") +
           std::to_string(dims.w) + (train ? ", " + std::to_string(smem.warps) : "") + ">";
  p.threads = 32 * smem.warps;
  ensure_smem_attribute(p.kernel, device, smem.total);
  int per_sm = 0, sms = 0;
  MGDL_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, p.kernel, p.threads, smem.total));
  MGDL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  if (per_sm < 1) throw CudaError("mgdl_fast._C: " + p.name + " cannot be resident on this device");
  p.capacity = per_sm * sms;
  // Rows padded to 128 bytes so every block's row starts aligned; then one loss per block.
  p.pitch = train ? (num_params(dims) + 31) / 32 * 32 : 0;
  p.workspace_floats = train ? int64_t(p.capacity) * p.pitch + p.capacity : 0;
  return p;
}

int plan_grid(const KernelPlan& plan, int64_t n) {
  const int64_t tiles = (n + plan.smem.rows - 1) / plan.smem.rows;
  return static_cast<int>(tiles < plan.capacity ? tiles : plan.capacity);
}

void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) check_cuda(status, what);
}

}  // namespace mgdl
