#include "fovea/nn/transformer.h"

#include <cmath>

#include <fmt/format.h>

#include "fovea/ops/elementwise.h"

namespace fovea::nn {

namespace {

std::string scoped(const Graph& g, const std::string& name) {
  return g.current_scope().empty() ? name : g.current_scope() + "/" + name;
}

// x + dropout(y): a residual connection around a sub-layer.
Value residual(Value x, Value y, double p, const Mode& mode) { return x + dropout(y, p, mode); }

void check_ids(Value ids, std::int64_t max_len, const std::string& what, const std::string& node, SourceLoc where) {
  if (!ids.defined()) throw Error(fmt::format("the {} ids are an undefined Value", what), "transformer", node, where);
  if (ids.rank() != 2 || !is_integer(ids.dtype()) || ids.shape()[1] > max_len)
    throw Error(fmt::format("expects {} token ids [B,T] (i32 or i64) with T <= max_len = {}, got {}", what, max_len,
                            ids.type().to_string()),
                "transformer", node, where);
}

}  // namespace

// --- Encoder layer --------------------------------------------------------------------------

TransformerEncoderLayer::TransformerEncoderLayer(Graph& g, const std::string& layer_name, const BlockConfig& c,
                                                 std::source_location where)
    : self_attn(in_scope(g, layer_name, where,
                         [&] { return MultiHeadAttention(g, "self_attn", c.d_model, c.heads, c.dropout, c.dtype); })),
      feed_forward(in_scope(
          g, layer_name, where,
          [&] { return FeedForward(g, "feed_forward", c.d_model, c.d_ff, c.activation, c.dropout, c.dtype); })),
      norm1(in_scope(g, layer_name, where, [&] { return LayerNorm(g, "norm1", c.d_model, c.norm_eps, c.dtype); })),
      norm2(in_scope(g, layer_name, where, [&] { return LayerNorm(g, "norm2", c.d_model, c.norm_eps, c.dtype); })),
      dropout(c.dropout),
      pre_norm(c.pre_norm),
      name(layer_name) {}

Value TransformerEncoderLayer::operator()(Value x, const AttentionMask& mask, const Mode& mode, Value* probabilities,
                                          std::source_location where) const {
  if (!x.defined()) throw Error("the input is an undefined Value", "transformer_encoder_layer", name, where);
  auto at = x.graph().at(where);
  auto scope = x.graph().scope(name);
  if (pre_norm) {
    const Value h = norm1(x);
    x = residual(x, self_attn(h, h, mask, mode, probabilities), dropout, mode);
    return residual(x, feed_forward(norm2(x), mode), dropout, mode);
  }
  x = norm1(residual(x, self_attn(x, x, mask, mode, probabilities), dropout, mode));
  return norm2(residual(x, feed_forward(x, mode), dropout, mode));
}

// --- Decoder layer --------------------------------------------------------------------------

TransformerDecoderLayer::TransformerDecoderLayer(Graph& g, const std::string& layer_name, const BlockConfig& c,
                                                 std::source_location where)
    : self_attn(in_scope(g, layer_name, where,
                         [&] { return MultiHeadAttention(g, "self_attn", c.d_model, c.heads, c.dropout, c.dtype); })),
      cross_attn(in_scope(g, layer_name, where,
                          [&] { return MultiHeadAttention(g, "cross_attn", c.d_model, c.heads, c.dropout, c.dtype); })),
      feed_forward(in_scope(
          g, layer_name, where,
          [&] { return FeedForward(g, "feed_forward", c.d_model, c.d_ff, c.activation, c.dropout, c.dtype); })),
      norm1(in_scope(g, layer_name, where, [&] { return LayerNorm(g, "norm1", c.d_model, c.norm_eps, c.dtype); })),
      norm2(in_scope(g, layer_name, where, [&] { return LayerNorm(g, "norm2", c.d_model, c.norm_eps, c.dtype); })),
      norm3(in_scope(g, layer_name, where, [&] { return LayerNorm(g, "norm3", c.d_model, c.norm_eps, c.dtype); })),
      dropout(c.dropout),
      pre_norm(c.pre_norm),
      name(layer_name) {}

Value TransformerDecoderLayer::operator()(Value x, Value memory, const AttentionMask& self_mask,
                                          const AttentionMask& memory_mask, const Mode& mode, Value* self_probabilities,
                                          Value* cross_probabilities, std::source_location where) const {
  if (!x.defined() || !memory.defined())
    throw Error("the input and the memory must be defined Values", "transformer_decoder_layer", name, where);
  Graph& g = x.graph();
  auto at = g.at(where);
  auto scope = g.scope(name);
  if (x.rank() != 3)
    throw Error(fmt::format("expects x [B,T,d_model], got {}", x.type().to_string()), "transformer_decoder_layer",
                g.current_scope(), at.where());
  const std::int64_t length = x.shape()[1];
  const AttentionMask causal = combine(causal_mask(g, length, length, x.dtype()), self_mask);
  if (pre_norm) {
    const Value h = norm1(x);
    x = residual(x, self_attn(h, h, causal, mode, self_probabilities), dropout, mode);
    x = residual(x, cross_attn(norm2(x), memory, memory_mask, mode, cross_probabilities), dropout, mode);
    return residual(x, feed_forward(norm3(x), mode), dropout, mode);
  }
  x = norm1(residual(x, self_attn(x, x, causal, mode, self_probabilities), dropout, mode));
  x = norm2(residual(x, cross_attn(x, memory, memory_mask, mode, cross_probabilities), dropout, mode));
  return norm3(residual(x, feed_forward(x, mode), dropout, mode));
}

// --- Transformer ----------------------------------------------------------------------------

Transformer::Transformer(Graph& g, const Config& c, const std::string& model_name, std::source_location where)
    : config(c),
      // N(0, 1/d_model): scaled by √d_model in embed(), the embeddings start with unit variance.
      source_embedding(in_scope(g, model_name, where,
                                [&] {
                                  return Embedding(g, "source_embedding", c.source_vocab, c.d_model, c.dtype,
                                                   init::normal(0.0, 1.0 / std::sqrt(double(c.d_model))));
                                })),
      target_embedding(in_scope(g, model_name, where,
                                [&] {
                                  return Embedding(g, "target_embedding", c.target_vocab, c.d_model, c.dtype,
                                                   init::normal(0.0, 1.0 / std::sqrt(double(c.d_model))));
                                })),
      output(in_scope(g, model_name, where,
                      [&] { return Linear(g, "output", c.d_model, c.target_vocab, true, c.dtype); })),
      name(model_name) {
  auto at = g.at(where);
  if (c.source_vocab < 1 || c.target_vocab < 1 || c.layers < 0 || c.max_len < 1)
    throw Error(fmt::format("needs vocabularies >= 1, layers >= 0 and max_len >= 1, got source_vocab {}, "
                            "target_vocab {}, layers {}, max_len {}",
                            c.source_vocab, c.target_vocab, c.layers, c.max_len),
                "transformer", scoped(g, model_name), at.where());
  auto scope = g.scope(model_name);
  if (c.learned_positions) {
    source_positions.emplace(g, "source_positions", c.max_len, c.d_model, c.dtype);
    target_positions.emplace(g, "target_positions", c.max_len, c.d_model, c.dtype);
  }
  {
    auto stack = g.scope("encoder");
    for (std::int64_t i = 0; i < c.layers; ++i) encoder.emplace_back(g, fmt::format("layer{}", i), block());
    if (c.pre_norm) encoder_norm.emplace(g, "norm", c.d_model, 1e-5, c.dtype);
  }
  {
    auto stack = g.scope("decoder");
    for (std::int64_t i = 0; i < c.layers; ++i) decoder.emplace_back(g, fmt::format("layer{}", i), block());
    if (c.pre_norm) decoder_norm.emplace(g, "norm", c.d_model, 1e-5, c.dtype);
  }
}

BlockConfig Transformer::block() const {
  return {.d_model = config.d_model,
          .heads = config.heads,
          .d_ff = config.d_ff,
          .dropout = config.dropout,
          .pre_norm = config.pre_norm,
          .activation = config.activation,
          .dtype = config.dtype};
}

// dropout(embedding(ids)·√d_model + PE[0..T))
Value Transformer::embed(const Embedding& embedding, const std::optional<LearnedPositions>& positions, Value ids,
                         const Mode& mode) const {
  Graph& g = ids.graph();
  const std::int64_t length = ids.shape()[1];
  const Value tokens = embedding(ids) * g.scalar(std::sqrt(double(config.d_model)), config.dtype);
  const Value position =
      positions ? (*positions)(length) : sinusoidal_positions(g, length, config.d_model, config.dtype);
  return dropout(tokens + position, config.dropout, mode);
}

Value Transformer::encode(Value source, const AttentionMask& source_mask, const Mode& mode, AttentionMaps* maps,
                          std::source_location where) const {
  Graph& g = source_embedding.table.graph();
  auto at = g.at(where);
  auto scope = g.scope(name);
  check_ids(source, config.max_len, "source", g.current_scope(), at.where());
  Value x = embed(source_embedding, source_positions, source, mode);
  auto stack = g.scope("encoder");
  for (const TransformerEncoderLayer& layer : encoder) {
    Value probabilities;
    x = layer(x, source_mask, mode, &probabilities);
    if (maps) maps->encoder.push_back(probabilities);
  }
  return encoder_norm ? (*encoder_norm)(x) : x;
}

Value Transformer::decode(Value target, Value memory, const AttentionMask& source_mask, const Mode& mode,
                          AttentionMaps* maps, std::source_location where) const {
  Graph& g = target_embedding.table.graph();
  auto at = g.at(where);
  auto scope = g.scope(name);
  check_ids(target, config.max_len, "target", g.current_scope(), at.where());
  Value x = embed(target_embedding, target_positions, target, mode);
  {
    auto stack = g.scope("decoder");
    for (const TransformerDecoderLayer& layer : decoder) {
      Value self_probabilities, cross_probabilities;
      x = layer(x, memory, {}, source_mask, mode, &self_probabilities, &cross_probabilities);
      if (maps) {
        maps->decoder_self.push_back(self_probabilities);
        maps->decoder_cross.push_back(cross_probabilities);
      }
    }
    if (decoder_norm) x = (*decoder_norm)(x);
  }
  return output(x);
}

Value Transformer::operator()(Value source, Value target, const AttentionMask& source_mask, const Mode& mode,
                              AttentionMaps* maps, std::source_location where) const {
  auto at = source_embedding.table.graph().at(where);
  return decode(target, encode(source, source_mask, mode, maps), source_mask, mode, maps);
}

// --- GPT ------------------------------------------------------------------------------------

GPT::GPT(Graph& g, const Config& c, const std::string& model_name, std::source_location where)
    : config(c),
      token_embedding(in_scope(
          g, model_name, where,
          [&] { return Embedding(g, "token_embedding", c.vocab, c.d_model, c.dtype, init::normal(0.0, 0.02)); })),
      position_embedding(
          in_scope(g, model_name, where,
                   [&] { return LearnedPositions(g, "position_embedding", c.max_len, c.d_model, c.dtype); })),
      lm_head(in_scope(g, model_name, where, [&] { return Linear(g, "lm_head", c.d_model, c.vocab, false, c.dtype); })),
      name(model_name) {
  auto at = g.at(where);
  if (c.vocab < 1 || c.layers < 0 || c.max_len < 1)
    throw Error(fmt::format("needs vocab >= 1, layers >= 0 and max_len >= 1, got vocab {}, layers {}, max_len {}",
                            c.vocab, c.layers, c.max_len),
                "gpt", scoped(g, model_name), at.where());
  auto scope = g.scope(model_name);
  const BlockConfig block{.d_model = c.d_model,
                          .heads = c.heads,
                          .d_ff = c.d_ff,
                          .dropout = c.dropout,
                          .pre_norm = c.pre_norm,
                          .activation = c.activation,
                          .dtype = c.dtype};
  for (std::int64_t i = 0; i < c.layers; ++i) blocks.emplace_back(g, fmt::format("block{}", i), block);
  if (c.pre_norm) final_norm.emplace(g, "final_norm", c.d_model, 1e-5, c.dtype);
}

Value GPT::operator()(Value ids, const Mode& mode, std::vector<Value>* maps, std::source_location where) const {
  Graph& g = token_embedding.table.graph();
  auto at = g.at(where);
  auto scope = g.scope(name);
  if (!ids.defined()) throw Error("the ids are an undefined Value", "gpt", g.current_scope(), at.where());
  if (ids.rank() != 2 || !is_integer(ids.dtype()) || ids.shape()[1] > config.max_len)
    throw Error(fmt::format("expects token ids [B,T] (i32 or i64) with T <= max_len = {}, got {}", config.max_len,
                            ids.type().to_string()),
                "gpt", g.current_scope(), at.where());
  const std::int64_t length = ids.shape()[1];
  Value x = token_embedding(ids) + position_embedding(length);
  x = dropout(x, config.dropout, mode);
  const AttentionMask causal = causal_mask(g, length, length, config.dtype);
  for (const TransformerEncoderLayer& block : blocks) {
    Value probabilities;
    x = block(x, causal, mode, &probabilities);
    if (maps) maps->push_back(probabilities);
  }
  if (final_norm) x = (*final_norm)(x);
  return lm_head(x);
}

}  // namespace fovea::nn
