// A small translator (nn::Transformer) set up for training, shared by the tests that train one on
// two paths and compare: its placeholders, a padded batch of token ids, and the loss; and the
// configurations of the tiny translator and GPT those tests use.
#pragma once

#include "testing.h"

namespace fovea::testing {

// The tiny models the training-equivalence tests share: small enough for f64 and for CI, with
// dropout so that its mask is exercised too.
inline nn::Transformer::Config tiny_translator_config(DType dtype = DType::f32) {
  return {.source_vocab = 13,
          .target_vocab = 12,
          .d_model = 16,
          .heads = 2,
          .d_ff = 32,
          .layers = 1,
          .max_len = 8,
          .dropout = 0.1,
          .dtype = dtype};
}
inline nn::GPT::Config tiny_gpt_config(DType dtype = DType::f32) {
  return {
      .vocab = 11, .d_model = 16, .heads = 2, .d_ff = 32, .layers = 2, .max_len = 8, .dropout = 0.1, .dtype = dtype};
}

struct TrainingTranslator {
  Value source, target_in, target_out, step, loss;
  Tensor source_ids, target_in_ids, target_out_ids;

  // A model of `config` on [batch, source_length] sources and [batch, target_length] targets,
  // in training mode (dropout drawn from `step`), with a padding mask over the sources (whose
  // item b ends in b padded positions, the first item in one) and cross-entropy ignoring id 0.
  TrainingTranslator(Graph& g, const nn::Transformer::Config& config, std::int64_t batch, std::int64_t source_length,
                     std::int64_t target_length) {
    const nn::Transformer model(g, config);
    source = g.placeholder("source", i64, {batch, source_length});
    target_in = g.placeholder("target_in", i64, {batch, target_length});
    target_out = g.placeholder("target_out", i64, {batch, target_length});
    step = g.placeholder("step", i64, {});
    const nn::AttentionMask mask = nn::padding_mask(equal(source, scalar_like(source, 0.0)), config.dtype);
    const Value logits = model(source, target_in, mask, {.training = true, .step = step});
    loss = nn::cross_entropy(logits, target_out, {.ignore_index = 0});
    source_ids = random_tensor(i64, {batch, source_length}, 8, 1, static_cast<double>(config.source_vocab));
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t t = source_length - std::max<std::int64_t>(b, 1); t < source_length; ++t)
        source_ids.data<std::int64_t>()[static_cast<std::size_t>(b * source_length + t)] = 0;
    target_in_ids = random_tensor(i64, {batch, target_length}, 9, 1, static_cast<double>(config.target_vocab));
    target_out_ids = random_tensor(i64, {batch, target_length}, 10, 0, static_cast<double>(config.target_vocab));
  }

  // The feeds of training step i.
  Feeds feeds(std::int64_t i) const {
    return {{source, source_ids}, {target_in, target_in_ids}, {target_out, target_out_ids}, {step, Tensor::scalar(i)}};
  }
};

}  // namespace fovea::testing
