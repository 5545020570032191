// Convolution fusion: a per-channel affine chain after a convolution is folded into the
// convolution's weights and one bias add. Its main customer is batch norm in inference, which
// nn::batch_norm writes as ((y - running_mean)·rsqrt(running_var + ε))·γ + β on y = conv2d(x, w):
//
//   before                                          after
//     %y = conv2d(%x, %w)        : f32[N,K,H,W]       %s  = rsqrt(%var + ε) · %γ        : f32[K]   (K values)
//     %c = sub(%y, %mean[K,1,1]) : f32[N,K,H,W]       %w' = mul(%w, reshape(%s, [K,1,1,1]))
//     %n = mul(%c, %rstd[K,1,1]) : f32[N,K,H,W]       %t  = β - mean·s                  : f32[K]
//     %g = mul(%n, %γ[K,1,1])    : f32[N,K,H,W]       %y' = conv2d(%x, %w')
//     %o = add(%g, %β[K,1,1])    : f32[N,K,H,W]       %o  = add(%y', reshape(%t, [1,K,1,1]))
//
// Four passes over the [N,K,H,W] activations become one (the bias add, which the epilogue fusion
// below then moves into the convolution), and the per-channel work is done on [K] vectors and on
// the weights (K·C·R·S values) instead.
//
// What it matches: starting at a conv2d, each following add, sub, mul or div whose other operand
// P is per channel (broadcasts to [1,K,1,1]: a scalar, [K,1,1], [1,K,1,1], ...), as long as
// every value before the chain's end has no other reader (and is not an output the caller
// keeps). That rule also keeps out operands computed from the convolution's output (a mean
// that reads y gives y a second reader). A training batch norm is one batch_norm op
// (ops/batch_norm.h), not such a chain, so training graphs keep it: the fold is for inference
// graphs, whose statistics are running ones. Chains without a mul or div are left alone:
// folding adds alone would save nothing.
//
// Why it is correct: conv2d is linear in w and each output channel k reads only w[k], so
//   conv2d(x, w)[:,k]·a_k + b_k = conv2d(x, w·a)[:,k] + b_k
// for per-channel a and b; the chain's ops compose to one such (a, b) (x - p = x·1 + (-p),
// p - x = x·(-1) + p, x/p = x·(1/p)). The results agree with the unfolded chain to rounding
// (the products are associated differently).
//
// Epilogue fusion (fuse_conv_epilogues, the next pass in the forward pipeline): a conv2d, an add
// of a bias with one value per output channel ([K], [K,1,1], [1,K,1,1], either operand) and
// optionally a ReLU become one fused_conv2d node, whose CPU kernel adds the bias and applies the
// ReLU to each block of output right after computing it, while it is in cache:
//
//   before                                          after
//     %y = conv2d(%x, %w)         : f32[N,K,H,W]      %b' = reshape(%b, [K])
//     %z = add(%y, %b[1,K,1,1])   : f32[N,K,H,W]      %o  = fused_conv2d(%x, %w, %b') {activation: relu}
//     %o = relu(%z)               : f32[N,K,H,W]
//
// The conv's output must have no reader but the add (and no caller keeping it); the ReLU joins
// only when it is the add's one reader, otherwise the fused node has no activation and the ReLU
// stays. After the fold above, an inference conv2d, batch norm and ReLU end as one node. The
// pass log counts "conv2d + bias → fused_conv2d" and "conv2d + bias + relu → fused_conv2d". In
// training graphs the fused op's gradient is the unfused chain's: g masked where y > 0, then
// conv2d's two gradients and the bias's sum over (N, H, W).
#pragma once

#include "fovea/passes/rewriter.h"

namespace fovea::passes {

PassResult fuse_convolutions(const Graph& graph, std::span<const ValueRef> roots);
PassResult fuse_conv_epilogues(const Graph& graph, std::span<const ValueRef> roots);

}  // namespace fovea::passes
