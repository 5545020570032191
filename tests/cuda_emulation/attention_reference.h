// The f64 reference for the emulated attention kernels: the forward (o, lse) and the backward
// (dq, dk, dv) of one attention problem, computed from the same 16-bit-rounded inputs the kernels
// see, with the same dropout mask (philox, as attention.cuh's dropout_factor<float>). For item b,
//
//   s[i, j] = scale·q[i]·k[j] + mask[i, j]   (-∞ where causality forbids j >= i + 1 + Tk - Tq)
//   lse[i] = log Σ_j exp(s[i, j]),  P = exp(s - lse),  o = (Z ⊙ P)·v
//   dv = (Z ⊙ P)ᵀ·do,  dS = P ⊙ (Z ⊙ (do·vᵀ) - δ),  δ[i] = do[i]·o[i],  dq = scale·dS·k,  dk = scale·dSᵀ·q
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fovea/core/philox.h"

namespace fovea::cuda_emulation {

struct AttentionProblem {
  std::int64_t batch = 1, d = 64, tq = 1, tk = 1;
  bool causal = false;
  bool mask = false;          // an additive f32 mask, shaped as `padding_mask` says
  bool padding_mask = false;  // [batch, Tk] (one row per item) rather than [Tq, Tk] (shared)
  double dropout = 0;         // probability p of dropping a weight
  std::uint64_t seed = 31, stream = 977;
  std::int64_t step = 123456789;
};

// The inputs in f32, each value exactly a 16-bit one.
struct AttentionInputs {
  std::vector<float> q, k, v, mask, d_o;
};

struct AttentionReference {
  std::vector<double> o, lse, dq, dk, dv;
};

inline constexpr double kInfinity = std::numeric_limits<double>::infinity();

inline std::int64_t key_end(const AttentionProblem& p, std::int64_t i) {
  return p.causal ? std::clamp<std::int64_t>(i + p.tk - p.tq + 1, 0, p.tk) : p.tk;
}

inline double mask_at(const AttentionProblem& p, const AttentionInputs& in, std::int64_t b, std::int64_t i,
                      std::int64_t j) {
  if (!p.mask) return 0;
  return p.padding_mask ? in.mask[b * p.tk + j] : in.mask[i * p.tk + j];
}

// Z[b, i, j]: 1 / (1 - p) where kept, 0 where dropped (uniform u of element e kept when u >= p in f32).
inline double dropout_factor(const AttentionProblem& p, std::int64_t b, std::int64_t i, std::int64_t j) {
  if (p.dropout <= 0) return 1;
  const auto e = static_cast<std::uint64_t>((b * p.tq + i) * p.tk + j);
  const auto u = static_cast<float>(philox::uniform(p.seed, p.stream + p.step, e));
  return u >= static_cast<float>(p.dropout) ? 1.0 / (1.0 - p.dropout) : 0.0;
}

inline double score(const AttentionProblem& p, const AttentionInputs& in, double scale, std::int64_t b, std::int64_t i,
                    std::int64_t j) {
  double dot = 0;
  for (std::int64_t x = 0; x < p.d; ++x) dot += double(in.q[(b * p.tq + i) * p.d + x]) * in.k[(b * p.tk + j) * p.d + x];
  return scale * dot + mask_at(p, in, b, i, j);
}

// o and lse; a row without a finite score gets o = 0, lse = -∞.
inline void reference_forward(const AttentionProblem& p, const AttentionInputs& in, double scale,
                              AttentionReference& r) {
  const std::int64_t d = p.d;
  r.o.assign(p.batch * p.tq * d, 0.0);
  r.lse.assign(p.batch * p.tq, -kInfinity);
  std::vector<double> s(p.tk);
  for (std::int64_t b = 0; b < p.batch; ++b)
    for (std::int64_t i = 0; i < p.tq; ++i) {
      double m = -kInfinity;
      for (std::int64_t j = 0; j < p.tk; ++j) {
        s[j] = j < key_end(p, i) ? score(p, in, scale, b, i, j) : -kInfinity;
        m = std::max(m, s[j]);
      }
      if (m == -kInfinity) continue;
      double sum = 0;
      for (std::int64_t j = 0; j < p.tk; ++j) sum += std::exp(s[j] - m);
      const double lse = m + std::log(sum);
      r.lse[b * p.tq + i] = lse;
      for (std::int64_t j = 0; j < p.tk; ++j) {
        const double w = std::exp(s[j] - lse) * dropout_factor(p, b, i, j);
        if (w == 0) continue;
        for (std::int64_t x = 0; x < d; ++x) r.o[(b * p.tq + i) * d + x] += w * in.v[(b * p.tk + j) * d + x];
      }
    }
}

// dq, dk, dv, given r.lse from reference_forward and the o the kernel is handed (rounded to 16 bits).
inline void reference_backward(const AttentionProblem& p, const AttentionInputs& in, double scale,
                               const std::vector<float>& o, AttentionReference& r) {
  const std::int64_t d = p.d;
  r.dq.assign(p.batch * p.tq * d, 0.0);
  r.dk.assign(p.batch * p.tk * d, 0.0);
  r.dv.assign(p.batch * p.tk * d, 0.0);
  for (std::int64_t b = 0; b < p.batch; ++b)
    for (std::int64_t i = 0; i < p.tq; ++i) {
      const double lse = r.lse[b * p.tq + i];
      if (lse == -kInfinity) continue;
      const std::int64_t row = (b * p.tq + i) * d;
      double delta = 0;
      for (std::int64_t x = 0; x < d; ++x) delta += double(in.d_o[row + x]) * o[row + x];
      for (std::int64_t j = 0; j < key_end(p, i); ++j) {
        const double probability = std::exp(score(p, in, scale, b, i, j) - lse);
        if (probability == 0) continue;
        const std::int64_t key = (b * p.tk + j) * d;
        double dp = 0;
        for (std::int64_t x = 0; x < d; ++x) dp += double(in.d_o[row + x]) * in.v[key + x];
        const double z = dropout_factor(p, b, i, j);
        const double ds = probability * (z * dp - delta);
        for (std::int64_t x = 0; x < d; ++x) {
          r.dv[key + x] += z * probability * in.d_o[row + x];
          r.dq[row + x] += scale * ds * in.k[key + x];
          r.dk[key + x] += scale * ds * in.q[row + x];
        }
      }
    }
}

}  // namespace fovea::cuda_emulation
