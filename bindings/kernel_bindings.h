// Test and introspection hooks for the per-ISA kernels (mambalite._core.kernels submodule).
#pragma once

#include <pybind11/pybind11.h>

void bind_kernels(pybind11::module_& parent);
