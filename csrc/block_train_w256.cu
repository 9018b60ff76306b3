// The training kernel's width-256 instantiations (their own translation unit: see block_train.cu).
#include "train_kernel.cuh"

namespace mgdl {

const void* train_kernel_w256(int warps) {
  return warps == 4 ? reinterpret_cast<const void*>(&block_train_kernel<256, 4>) : nullptr;
}

}  // namespace mgdl
