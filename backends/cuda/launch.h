// Launchers for the CUDA kernels, callable from host C++ compiled by g++.
//
// nvcc compiles only the .cu files, which include nothing heavier than the shared functors
// (ops/functors.h) and this header; everything else in the CUDA backend is ordinary C++.
#pragma once

#include <cstdint>

namespace fovea::cuda_backend {

// y[i] = exp(x[i]) over n floats on the current stream: the first shared-functor kernel.
void launch_exp_f32(const float* x, float* y, std::int64_t n, void* stream);

}  // namespace fovea::cuda_backend
