// The namespace that the code of the CPU kernels lives in: one per instruction set they are
// compiled for (core/cpu_features.h).
//
// CMake compiles every backends/cpu/*_kernels.cpp once per Isa, with -march of that level and
// FOVEA_ISA_NAMESPACE set to its name, so that the three copies of a kernel family, and the
// inline helpers of this folder's headers (broadcast.h, philox_lanes.h), are distinct symbols:
// fovea::cpu_backend::avx2::register_all_kernels and so on. Code of shared headers that the
// kernels instantiate (the standard library's, core's) cannot be put in a namespace of ours;
// the AVX copies are compiled with -fno-weak, which keeps that code local to each object (the
// CPU kernels' section of CMakeLists.txt explains why, and tools/check_isa_symbols.py checks it).
//
// Anything else that includes these headers (a test) gets the portable namespace, which is what
// plain x86-64 code compiles to anyway.
#pragma once

#ifndef FOVEA_ISA_NAMESPACE
#define FOVEA_ISA_NAMESPACE portable
#endif
