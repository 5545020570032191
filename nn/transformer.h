// Transformer layers and models, as compositions of the layers in nn/layers.h and
// nn/attention.h: no op or kernel of their own.
//
// A block adds each sub-layer's output to its input (a residual connection) and normalises
// either before the sub-layer (pre-norm, GPT-2 and most models since: trains without warm-up
// tricks) or after the sum (post-norm, the original Transformer):
//
//   pre-norm:   x = x + dropout(sublayer(norm(x)))
//   post-norm:  x = norm(x + dropout(sublayer(x)))
//
// An encoder layer has two sub-layers (self-attention, feed-forward); a decoder layer three
// (causal self-attention, cross-attention to the encoder's output, feed-forward). The models:
//
//   Transformer   Vaswani et al. (2017): source and target embeddings scaled by √d_model plus
//                 positional encodings, N encoder and N decoder layers, a final LayerNorm on
//                 each stack when pre-norm, and a projection to the target vocabulary.
//   GPT           Radford et al. (2018, 2019): decoder-only; token plus learned position
//                 embeddings, N causal self-attention blocks, a final LayerNorm when pre-norm,
//                 and the language-model head.
//
// Both return logits [B,T,V] and can hand back every layer's attention weights for heatmaps:
//
//   nn::GPT gpt(g, {.vocab = 256, .d_model = 128, .heads = 4, .d_ff = 512, .layers = 4, .max_len = 64});
//   std::vector<Value> maps;
//   Value logits = gpt(ids, {.training = true, .step = step}, &maps);   // maps[l]: [B,H,T,T]
#pragma once

#include <cstdint>
#include <optional>
#include <source_location>
#include <string>
#include <vector>

#include "fovea/core/graph.h"
#include "fovea/nn/attention.h"
#include "fovea/nn/layers.h"
#include "fovea/nn/linear.h"

namespace fovea::nn {

// The sizes and choices every block of a model shares.
struct BlockConfig {
  std::int64_t d_model = 512;
  std::int64_t heads = 8;
  std::int64_t d_ff = 2048;
  double dropout = 0.1;  // on attention weights, sub-layer outputs and the feed-forward hidden layer
  bool pre_norm = true;
  Activation activation = Activation::relu;
  double norm_eps = 1e-5;
  DType dtype = DType::f32;
};

// Self-attention and feed-forward, each wrapped in a residual connection and a LayerNorm.
struct TransformerEncoderLayer {
  MultiHeadAttention self_attn;
  FeedForward feed_forward;
  LayerNorm norm1, norm2;  // before (pre-norm) or after (post-norm) self_attn and feed_forward
  double dropout = 0.0;
  bool pre_norm = true;

  TransformerEncoderLayer(Graph& g, const std::string& name, const BlockConfig& config,
                          std::source_location where = std::source_location::current());

  // x [B,T,d_model] → [B,T,d_model]. `mask` is added to the self-attention scores (padding, or
  // a causal mask: GPT's blocks are encoder layers with one); `probabilities` receives the
  // self-attention weights [B,H,T,T].
  Value operator()(Value x, const AttentionMask& mask = {}, const Mode& mode = {}, Value* probabilities = nullptr,
                   std::source_location where = std::source_location::current()) const;

  std::string name;
};

// Causal self-attention, cross-attention to the encoder's output, feed-forward.
struct TransformerDecoderLayer {
  MultiHeadAttention self_attn, cross_attn;
  FeedForward feed_forward;
  LayerNorm norm1, norm2, norm3;
  double dropout = 0.0;
  bool pre_norm = true;

  TransformerDecoderLayer(Graph& g, const std::string& name, const BlockConfig& config,
                          std::source_location where = std::source_location::current());

  // x [B,T,d_model] attends causally to itself (plus `self_mask`, e.g. target padding) and to
  // `memory` [B,S,d_model] (plus `memory_mask`, e.g. source padding) → [B,T,d_model].
  // `self_probabilities` gets [B,H,T,T], `cross_probabilities` [B,H,T,S].
  Value operator()(Value x, Value memory, const AttentionMask& self_mask = {}, const AttentionMask& memory_mask = {},
                   const Mode& mode = {}, Value* self_probabilities = nullptr, Value* cross_probabilities = nullptr,
                   std::source_location where = std::source_location::current()) const;

  std::string name;
};

// Every attention map of one forward pass of a Transformer, layer by layer.
struct AttentionMaps {
  std::vector<Value> encoder;        // [B,H,S,S] per encoder layer
  std::vector<Value> decoder_self;   // [B,H,T,T] per decoder layer
  std::vector<Value> decoder_cross;  // [B,H,T,S] per decoder layer
};

// The encoder-decoder Transformer.
struct Transformer {
  struct Config {
    std::int64_t source_vocab = 0;
    std::int64_t target_vocab = 0;
    std::int64_t d_model = 512;
    std::int64_t heads = 8;
    std::int64_t d_ff = 2048;
    std::int64_t layers = 6;  // in each stack
    std::int64_t max_len = 512;
    double dropout = 0.1;
    bool pre_norm = true;
    Activation activation = Activation::relu;
    bool learned_positions = false;  // sinusoidal by default
    DType dtype = DType::f32;
  };

  Config config;
  Embedding source_embedding, target_embedding;
  std::optional<LearnedPositions> source_positions, target_positions;  // when learned_positions
  std::vector<TransformerEncoderLayer> encoder;
  std::vector<TransformerDecoderLayer> decoder;
  std::optional<LayerNorm> encoder_norm, decoder_norm;  // when pre_norm
  Linear output;                                        // d_model → target_vocab

  Transformer(Graph& g, const Config& config, const std::string& name = "transformer",
              std::source_location where = std::source_location::current());

  // source ids [B,S] and target ids [B,T] (i32 or i64; the decoder's input, shifted right) →
  // logits [B,T,target_vocab]. `source_mask` (say padding_mask(source == pad)) applies to the
  // encoder's self-attention and the decoder's cross-attention; `maps` receives every layer's
  // attention weights.
  Value operator()(Value source, Value target, const AttentionMask& source_mask = {}, const Mode& mode = {},
                   AttentionMaps* maps = nullptr, std::source_location where = std::source_location::current()) const;

  // The two halves, for decoding one token at a time: memory = encode(source); then
  // decode(target so far, memory) → logits.
  Value encode(Value source, const AttentionMask& source_mask = {}, const Mode& mode = {},
               AttentionMaps* maps = nullptr, std::source_location where = std::source_location::current()) const;
  Value decode(Value target, Value memory, const AttentionMask& source_mask = {}, const Mode& mode = {},
               AttentionMaps* maps = nullptr, std::source_location where = std::source_location::current()) const;

  std::string name;

 private:
  BlockConfig block() const;
  // Built inside encode's or decode's LocationScope.
  Value embed(const Embedding& embedding, const std::optional<LearnedPositions>& positions, Value ids,
              const Mode& mode) const;
};

// The decoder-only language model.
struct GPT {
  struct Config {
    std::int64_t vocab = 0;
    std::int64_t d_model = 768;
    std::int64_t heads = 12;
    std::int64_t d_ff = 3072;
    std::int64_t layers = 12;
    std::int64_t max_len = 1024;
    double dropout = 0.1;
    bool pre_norm = true;
    Activation activation = Activation::gelu;
    DType dtype = DType::f32;
  };

  Config config;
  Embedding token_embedding;
  LearnedPositions position_embedding;
  std::vector<TransformerEncoderLayer> blocks;  // with a causal mask
  std::optional<LayerNorm> final_norm;          // when pre_norm
  Linear lm_head;                               // d_model → vocab, no bias

  GPT(Graph& g, const Config& config, const std::string& name = "gpt",
      std::source_location where = std::source_location::current());

  // ids [B,T] (i32 or i64, T <= max_len) → logits [B,T,vocab]; position t sees tokens 0..t only.
  // `maps` receives each block's attention weights [B,H,T,T].
  Value operator()(Value ids, const Mode& mode = {}, std::vector<Value>* maps = nullptr,
                   std::source_location where = std::source_location::current()) const;

  std::string name;
};

}  // namespace fovea::nn
