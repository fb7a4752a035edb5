// golf_fast._C: the Python module object and the op namespace.
//
// Ops are registered into the shared `golf_fast::` torch.library namespace with
// TORCH_LIBRARY_FRAGMENT, so every .cpp file adds its own ops and the Python side can add
// the Triton ones to the same namespace. Importing golf_fast._C registers everything.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(golf_fast, m) {
  m.def("_ext_has_cuda() -> bool");
}

namespace {
bool ext_has_cuda() {
#ifdef GOLF_FAST_WITH_CUDA
  return true;
#else
  return false;
#endif
}
}  // namespace

TORCH_LIBRARY_IMPL(golf_fast, CompositeExplicitAutograd, m) {
  m.impl("_ext_has_cuda", &ext_has_cuda);
}

static struct PyModuleDef golf_fast_c_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&golf_fast_c_module); }
