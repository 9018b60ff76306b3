// pybind11 module mgdl_fast._C: the only file that knows about Python. Pointers arrive as
// integers (tensor.data_ptr()), streams as integers (torch's cuda_stream), sizes as ints.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

#include "args.h"
#include "common.cuh"
#include "ops.h"
#include "runtime.h"

namespace py = pybind11;
using mgdl::Dims;

namespace {

template <class T>
T* ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

cudaStream_t stream_of(uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("mgdl_fast._C: ") + what);
}

Dims dims_of(int64_t n, int d, int w, int l, int c) {
  const Dims dims{n, d, w, l, c};
  if (const char* why = mgdl::check_dims(dims)) require(false, why);
  return dims;
}

std::optional<py::dict> plan(int d, int w, int l, int c, bool train, int smem_limit) {
  const Dims dims{1, d, w, l, c};
  if (mgdl::check_dims(dims)) return std::nullopt;
  const mgdl::SmemPlan p = mgdl::plan_smem(dims, train, static_cast<uint32_t>(smem_limit));
  if (p.warps == 0) return std::nullopt;
  py::list dw_smem;
  for (int i = 0; i < l; ++i)
    if ((p.dw_smem_mask >> i) & 1u) dw_smem.append(i);
  py::dict out;
  out["warps"] = p.warps;
  out["rows"] = p.rows;
  out["smem_bytes"] = p.total;
  out["dw_smem_layers"] = dw_smem;
  return out;
}

py::list param_offsets(int d, int w, int l, int c) {
  const Dims dims{1, d, w, l, c};
  py::list out;
  for (int i = 0; i <= l; ++i)
    out.append(py::make_tuple(mgdl::weight_offset(dims, i), mgdl::bias_offset(dims, i)));
  return out;
}

void block_fwd(int device, uintptr_t stream, uintptr_t x, bool x_bf16, uintptr_t params,
               uintptr_t out, uintptr_t features, bool features_bf16, int64_t n, int d, int w,
               int l, int c) {
  require(x && params && out, "x, params and out must be device pointers");
  mgdl::FwdArgs a{};
  a.dims = dims_of(n, d, w, l, c);
  a.x = ptr<const void>(x);
  a.x_bf16 = x_bf16;
  a.params = ptr<const float>(params);
  a.out = ptr<float>(out);
  a.features = ptr<void>(features);
  a.features_bf16 = features_bf16;
  mgdl::launch_block_fwd(device, a, stream_of(stream));
}

py::tuple train_workspace(int device, int64_t n, int d, int w, int l, int c) {
  const auto [blocks, pitch] = mgdl::train_workspace(device, dims_of(n, d, w, l, c));
  return py::make_tuple(blocks, pitch);
}

void block_train(int device, uintptr_t stream, uintptr_t x, bool x_bf16, uintptr_t params,
                 uintptr_t target, uintptr_t grad_out, uintptr_t grad_x, bool grad_x_bf16,
                 uintptr_t grad, uintptr_t loss, uintptr_t workspace, int64_t workspace_floats,
                 int64_t n, int d, int w, int l, int c) {
  require(x && params && grad && workspace, "x, params, grad and workspace must be pointers");
  require((target != 0) != (grad_out != 0), "pass exactly one of target and grad_out");
  require(!target || loss, "the MSE step needs a loss pointer");
  mgdl::TrainArgs a{};
  a.dims = dims_of(n, d, w, l, c);
  a.x = ptr<const void>(x);
  a.x_bf16 = x_bf16;
  a.params = ptr<const float>(params);
  a.target = ptr<const float>(target);
  a.grad_out = ptr<const float>(grad_out);
  a.inv_count = static_cast<float>(1.0 / (double(n) * double(c)));
  a.grad_x = ptr<void>(grad_x);
  a.grad_x_bf16 = grad_x_bf16;
  const auto [blocks, pitch] = mgdl::train_workspace(device, a.dims);
  require(workspace_floats >= blocks * pitch + blocks, "workspace is too small");
  mgdl::launch_block_train(device, a, ptr<float>(workspace), ptr<float>(grad), ptr<float>(loss),
                           stream_of(stream));
}

void adam_step(int device, uintptr_t stream, uintptr_t params, uintptr_t grad, uintptr_t exp_avg,
               uintptr_t exp_avg_sq, int64_t n, int64_t step, double lr, double beta1,
               double beta2, double eps) {
  require(params && grad && exp_avg && exp_avg_sq, "all four vectors must be device pointers");
  require(step >= 1, "step counts from 1");
  mgdl::AdamArgs a{};
  a.params = ptr<float>(params);
  a.grad = ptr<const float>(grad);
  a.exp_avg = ptr<float>(exp_avg);
  a.exp_avg_sq = ptr<float>(exp_avg_sq);
  a.n = n;
  a.lr_corrected = static_cast<float>(lr / (1.0 - std::pow(beta1, double(step))));
  a.beta1 = static_cast<float>(beta1);
  a.beta2 = static_cast<float>(beta2);
  a.eps = static_cast<float>(eps);
  a.bias_correction2 = static_cast<float>(1.0 - std::pow(beta2, double(step)));
  mgdl::launch_adam(device, a, stream_of(stream));
}

void gd_step(int device, uintptr_t stream, uintptr_t params, uintptr_t grad, int64_t n,
             double lr) {
  require(params && grad, "params and grad must be device pointers");
  mgdl::launch_gd(device, ptr<float>(params), ptr<const float>(grad), n, static_cast<float>(lr),
                  stream_of(stream));
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "mgdl_fast CUDA core (torch-free; raw device pointers, sizes and streams)";
  py::register_exception<mgdl::CudaError>(m, "CudaError", PyExc_RuntimeError);
  const auto release = py::call_guard<py::gil_scoped_release>();
  m.def("device_count", &mgdl::device_count,
        "Number of CUDA devices; raises CudaError when no driver or device is usable.");
  m.def("runtime_version", &mgdl::runtime_version, "CUDA runtime version linked into _C.");
  m.def("max_smem_optin", &mgdl::max_smem_optin, py::arg("device"),
        "Shared memory (bytes) one block may opt in to on the device.");
  m.def("num_params", [](int d, int w, int l, int c) { return mgdl::num_params({1, d, w, l, c}); },
        py::arg("d"), py::arg("w"), py::arg("l"), py::arg("c"));
  m.def("param_offsets", &param_offsets, py::arg("d"), py::arg("w"), py::arg("l"), py::arg("c"),
        "(weight offset, bias offset) of every layer in the flat parameter vector.");
  m.def("check_dims",
        [](int64_t n, int d, int w, int l, int c) -> std::optional<std::string> {
          if (const char* why = mgdl::check_dims({n, d, w, l, c})) return std::string(why);
          return std::nullopt;
        },
        py::arg("n"), py::arg("d"), py::arg("w"), py::arg("l"), py::arg("c"),
        "None when the kernels serve these sizes, else the reason.");
  m.def("plan", &plan, py::arg("d"), py::arg("w"), py::arg("l"), py::arg("c"), py::arg("train"),
        py::arg("smem_limit"), "Tile and shared-memory plan for a limit, or None if none fits.");
  m.def("block_fwd", &block_fwd, release, py::arg("device"), py::arg("stream"), py::arg("x"),
        py::arg("x_bf16"), py::arg("params"), py::arg("out"), py::arg("features"),
        py::arg("features_bf16"), py::arg("n"), py::arg("d"), py::arg("w"), py::arg("l"),
        py::arg("c"));
  m.def("train_workspace", &train_workspace, release, py::arg("device"), py::arg("n"),
        py::arg("d"), py::arg("w"), py::arg("l"), py::arg("c"),
        "(blocks, pitch): block_train needs blocks * pitch + blocks floats of workspace.");
  m.def("block_train", &block_train, release, py::arg("device"), py::arg("stream"), py::arg("x"),
        py::arg("x_bf16"), py::arg("params"), py::arg("target"), py::arg("grad_out"),
        py::arg("grad_x"), py::arg("grad_x_bf16"), py::arg("grad"), py::arg("loss"),
        py::arg("workspace"), py::arg("workspace_floats"), py::arg("n"), py::arg("d"),
        py::arg("w"), py::arg("l"), py::arg("c"));
  m.def("adam_step", &adam_step, release, py::arg("device"), py::arg("stream"), py::arg("params"),
        py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("n"), py::arg("step"),
        py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"));
  m.def("gd_step", &gd_step, release, py::arg("device"), py::arg("stream"), py::arg("params"),
        py::arg("grad"), py::arg("n"), py::arg("lr"));
}
