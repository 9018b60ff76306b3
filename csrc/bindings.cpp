// pybind11 module mgdl_fast._C: the only file that knows about Python.
#include <pybind11/pybind11.h>

#include "common.cuh"
#include "runtime.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "mgdl_fast CUDA core (torch-free; raw device pointers, sizes and streams)";
  py::register_exception<mgdl::CudaError>(m, "CudaError", PyExc_RuntimeError);
  m.def("device_count", &mgdl::device_count,
        "Number of CUDA devices; raises CudaError when no driver or device is usable.");
  m.def("runtime_version", &mgdl::runtime_version, "CUDA runtime version linked into _C.");
}
