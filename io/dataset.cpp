#include "fovea/io/dataset.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <utility>

#include <fmt/format.h>

#include "fovea/core/philox.h"
#include "fovea/io/idx.h"

namespace fovea {

namespace {

constexpr std::int64_t image_side = 28;
constexpr int class_count = 10;

std::string dims_string(const std::vector<std::int64_t>& dims) {
  std::string s = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) s += fmt::format("{}{}", i ? "," : "", dims[i]);
  return s + "]";
}

void require_file(const std::string& path) {
  if (!std::filesystem::exists(path))
    throw Error(
        fmt::format("load_fashion_mnist: {}: no such file. Install the dataset with "
                    "`apt-get install dataset-fashion-mnist` (it goes to {}), or pass the "
                    "directory that holds the *-ubyte.gz files",
                    path, fashion_mnist_default_dir));
}

}  // namespace

Dataset load_fashion_mnist(const std::string& split, const std::string& dir) {
  std::string prefix;
  std::int64_t expected = 0;
  if (split == "train") {
    prefix = "train";
    expected = 60000;
  } else if (split == "test") {
    prefix = "t10k";
    expected = 10000;
  } else {
    throw Error(fmt::format("load_fashion_mnist: unknown split '{}': use \"train\" or \"test\"", split));
  }
  const std::string images_path = (std::filesystem::path(dir) / (prefix + "-images-idx3-ubyte.gz")).string();
  const std::string labels_path = (std::filesystem::path(dir) / (prefix + "-labels-idx1-ubyte.gz")).string();
  require_file(images_path);
  require_file(labels_path);

  const IdxFile images = read_idx_file(images_path);
  if (images.type != IdxType::u8 || images.dims.size() != 3 || images.dims[1] != image_side ||
      images.dims[2] != image_side || images.dims[0] != expected)
    throw Error(fmt::format("load_fashion_mnist: {}: expected u8 images of dims [{},28,28], found {} {}", images_path,
                            expected, idx_type_name(images.type), dims_string(images.dims)));
  const IdxFile labels = read_idx_file(labels_path);
  if (labels.type != IdxType::u8 || labels.dims.size() != 1 || labels.dims[0] != expected)
    throw Error(fmt::format("load_fashion_mnist: {}: expected u8 labels of dims [{}], found {} {}", labels_path,
                            expected, idx_type_name(labels.type), dims_string(labels.dims)));

  constexpr std::int64_t pixels = image_side * image_side;
  Dataset data;
  // image[n, p] = byte[n, p] / 255
  data.images = Tensor::empty(f32, {expected, pixels});
  float* out = data.images.data<float>().data();
  for (std::size_t i = 0; i < images.bytes.size(); ++i) out[i] = static_cast<float>(images.bytes[i]) * (1.0f / 255.0f);

  data.labels = Tensor::empty(i32, {expected});
  auto label = data.labels.data<std::int32_t>();
  for (std::int64_t n = 0; n < expected; ++n) {
    const int value = labels.bytes[static_cast<std::size_t>(n)];
    if (value >= class_count)
      throw Error(
          fmt::format("load_fashion_mnist: {}: label {} of example {} is not a class (0..9)", labels_path, value, n));
    label[static_cast<std::size_t>(n)] = value;
  }
  return data;
}

std::string fashion_mnist_class_name(int label) {
  static const std::array<const char*, class_count> names = {
      "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  if (label < 0 || label >= class_count)
    throw Error(fmt::format("fashion_mnist_class_name: label {} is not a class (0..9)", label));
  return names[static_cast<std::size_t>(label)];
}

// --- Batcher --------------------------------------------------------------------------------

Batcher::Batcher(const Dataset& dataset, std::int64_t batch_size, std::uint64_t seed, bool shuffle, bool drop_last)
    : dataset_(dataset), batch_size_(batch_size), seed_(seed), shuffle_(shuffle), drop_last_(drop_last) {
  const Tensor& images = dataset_.images;
  const Tensor& labels = dataset_.labels;
  if (!images.defined() || !labels.defined()) throw Error("Batcher: the dataset has no images or no labels");
  if (images.dtype() != f32 || images.rank() != 2)
    throw Error(fmt::format("Batcher: images must be f32 [N, features], got {}{}", dtype_name(images.dtype()),
                            images.shape().to_string()));
  if (labels.dtype() != i32 || labels.rank() != 1 || labels.shape()[0] != images.shape()[0])
    throw Error(fmt::format("Batcher: labels must be i32 [N] with N = {} images, got {}{}", images.shape()[0],
                            dtype_name(labels.dtype()), labels.shape().to_string()));
  if (batch_size <= 0) throw Error(fmt::format("Batcher: batch size must be positive, got {}", batch_size));
  if (drop_last && batch_size > dataset_.size())
    throw Error(
        fmt::format("Batcher: batch size {} is larger than the dataset ({} examples) and drop_last is set: "
                    "no batch would ever be produced",
                    batch_size, dataset_.size()));
}

void Batcher::shard(int rank, int ranks) {
  if (ranks <= 0 || rank < 0 || rank >= ranks)
    throw Error(fmt::format("Batcher: rank {} of {} ranks is not a rank", rank, ranks));
  if (batch_size_ % ranks != 0)
    throw Error(fmt::format("Batcher: a batch of {} rows does not split evenly over {} ranks", batch_size_, ranks));
  if (!drop_last_ && ranks > 1)
    throw Error("Batcher: sharding needs drop_last (a short last batch would not split evenly over the ranks)");
  rank_ = rank;
  ranks_ = ranks;
}

std::int64_t Batcher::batches_per_epoch() const {
  const std::int64_t n = dataset_.size();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

std::int64_t Batcher::rows_in_batch(std::int64_t index) const {
  if (index < 0 || index >= batches_per_epoch())
    throw Error(
        fmt::format("Batcher: batch index {} is out of range: an epoch has {} batches", index, batches_per_epoch()));
  return std::min(batch_size_, dataset_.size() - index * batch_size_) / ranks_;
}

// Fisher-Yates, from the back: for i = N-1 .. 1, swap order[i] with order[j], j uniform in
// [0, i], drawn from Philox block i of stream `epoch` under key `seed`. A 64-bit draw taken
// modulo i+1 is biased by less than (i+1)/2^64: far below anything a training run can see.
std::vector<std::int64_t> Batcher::permutation(std::int64_t epoch) const {
  if (epoch < 0) throw Error(fmt::format("Batcher: epoch must be non-negative, got {}", epoch));
  std::vector<std::int64_t> order(static_cast<std::size_t>(dataset_.size()));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  if (!shuffle_) return order;
  for (std::size_t i = order.size(); i-- > 1;) {
    const philox::Block b = philox::words(seed_, static_cast<std::uint64_t>(epoch), i);
    const std::uint64_t draw = (std::uint64_t{b.v[0]} << 32) | b.v[1];
    std::swap(order[i], order[draw % (i + 1)]);
  }
  return order;
}

const std::vector<std::int64_t>& Batcher::order(std::int64_t epoch) {
  if (epoch != cached_epoch_) {
    cached_order_ = permutation(epoch);
    cached_epoch_ = epoch;
  }
  return cached_order_;
}

// images_out[r, :] = images[order[index·B + first + r], :], labels_out[r] = labels[order[index·B + first + r]],
// where first = rank · rows is where this rank's share of the global batch begins.
void Batcher::batch(std::int64_t epoch, std::int64_t index, Tensor& images_out, Tensor& labels_out) {
  if (epoch < 0) throw Error(fmt::format("Batcher: epoch must be non-negative, got {}", epoch));
  const std::int64_t rows = rows_in_batch(index);
  const std::int64_t features = dataset_.images.shape()[1];
  if (!images_out.defined() || images_out.dtype() != f32 || images_out.shape() != Shape{rows, features})
    throw Error(fmt::format("Batcher: batch {} needs images_out of f32[{},{}], got {}{}", index, rows, features,
                            dtype_name(images_out.dtype()), images_out.shape().to_string()));
  if (!labels_out.defined() || labels_out.dtype() != i32 || labels_out.shape() != Shape{rows})
    throw Error(fmt::format("Batcher: batch {} needs labels_out of i32[{}], got {}{}", index, rows,
                            dtype_name(labels_out.dtype()), labels_out.shape().to_string()));

  const std::vector<std::int64_t>& examples = order(epoch);
  const float* images = dataset_.images.data<float>().data();
  const std::int32_t* labels = dataset_.labels.data<std::int32_t>().data();
  float* images_dst = images_out.data<float>().data();
  std::int32_t* labels_dst = labels_out.data<std::int32_t>().data();
  const auto row_bytes = static_cast<std::size_t>(features) * sizeof(float);
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t example = examples[static_cast<std::size_t>(index * batch_size_ + rank_ * rows + r)];
    std::memcpy(images_dst + r * features, images + example * features, row_bytes);
    labels_dst[r] = labels[example];
  }
}

}  // namespace fovea
