// The training kernel's width-64 instantiations (their own translation unit: see block_train.cu).
#include "train_kernel.cuh"

namespace mgdl {

const void* train_kernel_w64(int warps) {
  return warps == 8 ? reinterpret_cast<const void*>(&block_train_kernel<64, 8>)
                    : reinterpret_cast<const void*>(&block_train_kernel<64, 4>);
}

}  // namespace mgdl
