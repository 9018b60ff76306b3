// pybind11 module mgdl_fast._C: the only file that knows about Python. Pointers arrive as
// integers (tensor.data_ptr()), streams as integers (torch's cuda_stream), sizes as ints. A bound
// grade makes a Plan per kernel once; launches take the plan, pointers, a row count and a stream.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>

#include "args.h"
#include "common.cuh"
#include "ops.h"
#include "runtime.h"

namespace py = pybind11;
using mgdl::Dims;
using mgdl::KernelPlan;
using mgdl::SmemPlan;

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

std::string kernel_name(const Dims& s, bool train, int warps) {
  return std::string(train ? "block_train_kernel<" : "block_fwd_kernel<") + std::to_string(s.w) +
         (train ? ", " + std::to_string(warps) : "") + ">";
}

py::dict plan_dict(const Dims& s, bool train, const SmemPlan& p) {
  py::list dw_smem;
  for (int i = 0; i < s.l; ++i)
    if ((p.dw_smem_mask >> i) & 1u) dw_smem.append(i);
  py::list args;
  args.append(s.w);
  if (train) args.append(p.warps);
  py::dict out;
  out["warps"] = p.warps;
  out["rows"] = p.rows;
  out["smem_bytes"] = p.total;
  out["dw_smem_layers"] = dw_smem;
  out["alternate"] = p.alternate;
  out["kernel"] = kernel_name(s, train, p.warps);
  out["template_args"] = args;
  out["l2_bytes_per_row"] = double(mgdl::l2_bytes_per_tile(s, p)) / p.rows * (train ? 1 : 0);
  return out;
}

std::optional<py::dict> plan(int d, int w, int l, int c, bool train, int smem_limit, int warps) {
  const Dims dims{1, d, w, l, c};
  if (mgdl::check_dims(dims)) return std::nullopt;
  const SmemPlan p = mgdl::plan_smem(dims, train, static_cast<uint32_t>(smem_limit), warps);
  if (p.warps == 0) return std::nullopt;
  return plan_dict(dims, train, p);
}

std::optional<py::dict> device_plan(int device, int d, int w, int l, int c, bool train,
                                    int warps) {
  const Dims dims = dims_of(1, d, w, l, c);
  const SmemPlan p = mgdl::device_smem_plan(device, dims, train, warps);
  if (p.warps == 0) return std::nullopt;
  return plan_dict(dims, train, p);
}

py::dict plan_object_dict(const KernelPlan& p) {
  py::dict out = plan_dict(p.dims, p.train, p.smem);
  out["device"] = p.device;
  out["max_rows"] = p.dims.n;
  out["blocks"] = p.capacity;
  out["workspace_floats"] = p.workspace_floats;
  return out;
}

py::list param_offsets(int d, int w, int l, int c) {
  const Dims dims{1, d, w, l, c};
  py::list out;
  for (int i = 0; i <= l; ++i)
    out.append(py::make_tuple(mgdl::weight_offset(dims, i), mgdl::bias_offset(dims, i)));
  return out;
}

Dims call_dims(const KernelPlan& plan, int64_t n) {
  require(n >= 1 && n <= plan.dims.n, "n must be between 1 and the rows the plan was made for");
  Dims dims = plan.dims;
  dims.n = n;
  return dims;
}

void block_fwd(const KernelPlan& plan, uintptr_t stream, uintptr_t x, bool x_bf16,
               uintptr_t params, uintptr_t out, uintptr_t features, bool features_bf16,
               int64_t n) {
  require(!plan.train, "block_fwd needs a forward plan (train=False)");
  require(x && params && out, "x, params and out must be device pointers");
  mgdl::FwdArgs a{};
  a.dims = call_dims(plan, n);
  a.x = ptr<const void>(x);
  a.x_bf16 = x_bf16;
  a.params = ptr<const float>(params);
  a.out = ptr<float>(out);
  a.features = ptr<void>(features);
  a.features_bf16 = features_bf16;
  mgdl::launch_block_fwd(plan, a, stream_of(stream));
}

void block_train(const KernelPlan& plan, uintptr_t stream, uintptr_t x, bool x_bf16,
                 uintptr_t params, uintptr_t target, uintptr_t grad_out, uintptr_t grad_x,
                 bool grad_x_bf16, uintptr_t grad, uintptr_t loss, uintptr_t workspace,
                 int64_t n) {
  require(plan.train, "block_train needs a training plan (train=True)");
  require(x && params && grad && workspace, "x, params, grad and workspace must be pointers");
  require((target != 0) != (grad_out != 0), "pass exactly one of target and grad_out");
  require(!target || loss, "the MSE step needs a loss pointer");
  mgdl::TrainArgs a{};
  a.dims = call_dims(plan, n);
  a.x = ptr<const void>(x);
  a.x_bf16 = x_bf16;
  a.params = ptr<const float>(params);
  a.target = ptr<const float>(target);
  a.grad_out = ptr<const float>(grad_out);
  a.inv_count = static_cast<float>(1.0 / (double(n) * double(a.dims.c)));
  a.grad_x = ptr<void>(grad_x);
  a.grad_x_bf16 = grad_x_bf16;
  mgdl::launch_block_train(plan, a, ptr<float>(workspace), ptr<float>(grad), ptr<float>(loss),
                           stream_of(stream));
}

void adam_step(int device, uintptr_t stream, uintptr_t params, uintptr_t grad, uintptr_t exp_avg,
               uintptr_t exp_avg_sq, int64_t n, uintptr_t step_size, uintptr_t bias_correction2,
               double beta1, double beta2, double eps) {
  require(params && grad && exp_avg && exp_avg_sq, "all four vectors must be device pointers");
  require(step_size && bias_correction2, "the step scalars must be device pointers");
  mgdl::AdamArgs a{};
  a.params = ptr<float>(params);
  a.grad = ptr<const float>(grad);
  a.exp_avg = ptr<float>(exp_avg);
  a.exp_avg_sq = ptr<float>(exp_avg_sq);
  a.n = n;
  a.step_size = ptr<const double>(step_size);
  a.bias_correction2 = ptr<const double>(bias_correction2);
  a.beta1 = static_cast<float>(beta1);
  a.beta2 = static_cast<float>(beta2);
  a.eps = static_cast<float>(eps);
  mgdl::launch_adam(device, a, stream_of(stream));
}

void gd_step(int device, uintptr_t stream, uintptr_t params, uintptr_t grad, int64_t n,
             double lr) {
  require(params && grad, "params and grad must be device pointers");
  mgdl::launch_gd(device, ptr<float>(params), ptr<const float>(grad), n, static_cast<float>(lr),
                  stream_of(stream));
}

void bind_plan(py::module_& m) {
  py::class_<KernelPlan>(m, "Plan",
                         "A kernel's launch plan for one bound grade: tile, shared memory, "
                         "kernel, resident grid and workspace, made once on a device.")
      .def(py::init([](int device, int64_t rows, int d, int w, int l, int c, bool train,
                       int warps) { return mgdl::make_plan(device, dims_of(rows, d, w, l, c),
                                                          train, warps); }),
           py::arg("device"), py::arg("rows"), py::arg("d"), py::arg("w"), py::arg("l"),
           py::arg("c"), py::arg("train"), py::arg("warps") = 0)
      .def_readonly("device", &KernelPlan::device)
      .def_readonly("train", &KernelPlan::train)
      .def_readonly("kernel", &KernelPlan::name)
      .def_readonly("blocks", &KernelPlan::capacity)
      .def_readonly("workspace_floats", &KernelPlan::workspace_floats)
      .def_property_readonly("max_rows", [](const KernelPlan& p) { return p.dims.n; })
      .def_property_readonly("warps", [](const KernelPlan& p) { return p.smem.warps; })
      .def_property_readonly("tile_rows", [](const KernelPlan& p) { return p.smem.rows; })
      .def_property_readonly("smem_bytes", [](const KernelPlan& p) { return p.smem.total; })
      .def("grid", &mgdl::plan_grid, py::arg("n"), "Blocks a launch of n rows uses.")
      .def("to_dict", &plan_object_dict);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "mgdl_fast CUDA core (torch-free; raw device pointers, sizes and streams)";
  py::register_exception<mgdl::CudaError>(m, "CudaError", PyExc_RuntimeError);
  const auto release = py::call_guard<py::gil_scoped_release>();
  m.def("device_count", &mgdl::device_count,
        "Number of CUDA devices; raises CudaError when no driver or device is usable.");
  m.def("runtime_version", &mgdl::runtime_version, "CUDA runtime version linked into _C.");
  m.def("required_driver_branch", &mgdl::required_driver_branch, py::arg("runtime_version"),
        "The oldest driver branch (e.g. 580) a CUDA runtime version runs on; 0 if unknown.");
  m.def("max_smem_optin", &mgdl::max_smem_optin, py::arg("device"),
        "Shared memory (bytes) one block may opt in to on the device.");
  py::tuple widths(std::size(mgdl::kWidths));
  for (std::size_t i = 0; i < std::size(mgdl::kWidths); ++i) widths[i] = mgdl::kWidths[i];
  m.attr("WIDTHS") = widths;
  m.attr("MAX_HIDDEN") = mgdl::kMaxHidden;
  m.attr("MAX_SMALL_IN") = mgdl::kMaxSmallIn;
  m.attr("MAX_OUT") = mgdl::kMaxOut;
  m.attr("DEFAULT_DYNAMIC_SMEM") = mgdl::kDefaultDynamicSmem;
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
        py::arg("smem_limit"), py::arg("warps") = 0,
        "The shared-memory plan within a dynamic shared-memory limit (pure), or None.");
  m.def("device_plan", &device_plan, py::arg("device"), py::arg("d"), py::arg("w"), py::arg("l"),
        py::arg("c"), py::arg("train"), py::arg("warps") = 0,
        "The shared-memory plan a Plan would use on the device, or None if none fits.");
  m.def("smem_attribute", &mgdl::smem_attribute_update, py::arg("current"), py::arg("needed"),
        "The dynamic shared-memory attribute to set when a plan needing `needed` bytes is made "
        "for a kernel whose attribute is `current`; 0: leave it (it only grows).");
  bind_plan(m);
  m.def("block_fwd", &block_fwd, release, py::arg("plan"), py::arg("stream"), py::arg("x"),
        py::arg("x_bf16"), py::arg("params"), py::arg("out"), py::arg("features"),
        py::arg("features_bf16"), py::arg("n"));
  m.def("block_train", &block_train, release, py::arg("plan"), py::arg("stream"), py::arg("x"),
        py::arg("x_bf16"), py::arg("params"), py::arg("target"), py::arg("grad_out"),
        py::arg("grad_x"), py::arg("grad_x_bf16"), py::arg("grad"), py::arg("loss"),
        py::arg("workspace"), py::arg("n"));
  m.def("adam_step", &adam_step, release, py::arg("device"), py::arg("stream"), py::arg("params"),
        py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("n"),
        py::arg("step_size"), py::arg("bias_correction2"), py::arg("beta1"), py::arg("beta2"),
        py::arg("eps"));
  m.def("gd_step", &gd_step, release, py::arg("device"), py::arg("stream"), py::arg("params"),
        py::arg("grad"), py::arg("n"), py::arg("lr"));
}
