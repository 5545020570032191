// Datasets for training: Fashion-MNIST from its IDX files, and a Batcher that cuts a dataset
// into shuffled minibatches.
//
//   fovea::Dataset train = fovea::load_fashion_mnist("train");
//   fovea::Batcher batches(train, 128, /*seed=*/42);
//   fovea::Tensor x = fovea::Tensor::empty(fovea::f32, {128, 784});
//   fovea::Tensor y = fovea::Tensor::empty(fovea::i32, {128});
//   for (std::int64_t epoch = 0; epoch < 10; ++epoch)
//     for (std::int64_t i = 0; i < batches.batches_per_epoch(); ++i) {
//       batches.batch(epoch, i, x, y);  // fills x and y in place
//       exe.run({{images, x}, {labels, y}});
//     }
//
// The order of an epoch is a pure function of (seed, epoch): a run resumed from a checkpoint at
// (epoch, index) sees exactly the batches an uninterrupted run would have seen.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fovea/core/tensor.h"

namespace fovea {

// Examples and their labels: row i of `images` is example i, labels[i] its class.
struct Dataset {
  Tensor images;  // f32 [N, features]; Fashion-MNIST: [N, 784], pixels scaled to [0, 1]
  Tensor labels;  // i32 [N]

  std::int64_t size() const { return labels.defined() ? labels.numel() : 0; }
};

// Where the Debian package dataset-fashion-mnist installs the files.
inline constexpr const char* fashion_mnist_default_dir = "/usr/share/datasets/fashion-mnist";

// Loads the "train" (60000 examples) or "test" (10000) split of Fashion-MNIST from `dir`, which
// holds {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz. Checks the counts, the 28×28 image
// size and that every label is in 0..9; throws fovea::Error naming the file otherwise.
Dataset load_fashion_mnist(const std::string& split, const std::string& dir = fashion_mnist_default_dir);

// "T-shirt/top", "Trouser", ..., "Ankle boot" for labels 0..9.
std::string fashion_mnist_class_name(int label);

// Cuts a dataset into minibatches, in a fresh shuffled order every epoch.
class Batcher {
 public:
  // drop_last: an epoch ends with the last full batch (so every batch has `batch_size` rows and
  // one compiled executable serves them all); otherwise the last batch holds the remainder.
  // The dataset's tensors are shared, not copied.
  Batcher(const Dataset& dataset, std::int64_t batch_size, std::uint64_t seed, bool shuffle = true,
          bool drop_last = true);

  // Data-parallel training (nn/data_parallel.h): every global batch of batch_size rows is cut
  // into `ranks` equal shares, and this Batcher yields share `rank` of each: batch_size / ranks
  // rows. Every rank's Batcher must have the same seed, so that the shares are of the same global
  // batch. Needs drop_last and a batch size that `ranks` divides.
  void shard(int rank, int ranks);

  std::int64_t batch_size() const { return batch_size_; }
  std::int64_t batches_per_epoch() const;
  // Rows in batch `index`: batch_size (over the ranks when sharded), except for a short last
  // batch when drop_last is false.
  std::int64_t rows_in_batch(std::int64_t index) const;

  // Fills `images_out` (f32 [rows, features]) and `labels_out` (i32 [rows]) in place with batch
  // `index` of epoch `epoch`, rows = rows_in_batch(index). Nothing is allocated after the first
  // call of an epoch.
  void batch(std::int64_t epoch, std::int64_t index, Tensor& images_out, Tensor& labels_out);

  // The order of the examples in epoch `epoch`: a permutation of 0..N-1 (the identity when not
  // shuffling). Fisher-Yates driven by Philox keyed by the seed, with the epoch as the stream.
  std::vector<std::int64_t> permutation(std::int64_t epoch) const;

 private:
  const std::vector<std::int64_t>& order(std::int64_t epoch);

  Dataset dataset_;
  std::int64_t batch_size_;
  std::uint64_t seed_;
  bool shuffle_, drop_last_;
  int rank_ = 0, ranks_ = 1;
  std::int64_t cached_epoch_ = -1;  // no epoch yet (epochs are never negative)
  std::vector<std::int64_t> cached_order_;
};

}  // namespace fovea
