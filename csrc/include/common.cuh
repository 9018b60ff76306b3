// Shared helpers for the torch-free mgdl_fast CUDA core.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace mgdl {

// Raised for every failed CUDA runtime call; pybind11 maps it to Python's RuntimeError.
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw CudaError(std::string("mgdl_fast._C: ") + what + " failed: " + cudaGetErrorName(status) +
                    " (" + cudaGetErrorString(status) + ")");
  }
}

}  // namespace mgdl

#define MGDL_CUDA_CHECK(call) ::mgdl::check_cuda((call), #call)
