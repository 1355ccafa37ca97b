// A sum-tree over float64 priorities, for proportional prioritized replay.
//
// Layout: a complete binary tree in one array. With L = the smallest power of
// two >= capacity, node 1 is the root, node k has children 2k and 2k+1, and
// leaf i (0 <= i < capacity) lives at node L + i. Leaves in [capacity, L) are
// padding and always hold 0. Every internal node holds fl(left + right) of its
// two children, recomputed from the children (never adjusted by a delta) on
// every update, so no round-off drift accumulates however many updates run.
//
// All batched methods validate their whole input before touching the tree:
// on a bad index or priority they throw std::invalid_argument and the tree is
// left exactly as it was. The class is thread-safe: a mutex serialises the
// methods, so the Python bindings can release the GIL around the loops.

#ifndef SEED_RL_OPS_SUM_TREE_H_
#define SEED_RL_OPS_SUM_TREE_H_

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace seed_rl {

class SumTree {
 public:
  // Largest capacity accepted (2^40 leaves would already need 16 TiB).
  static constexpr int64_t kMaxCapacity = int64_t{1} << 40;

  // A tree of `capacity` leaves, all with priority 0. Throws
  // std::invalid_argument when capacity is not in [1, kMaxCapacity].
  explicit SumTree(int64_t capacity);

  int64_t capacity() const { return capacity_; }

  // Sum of all priorities.
  double total() const;

  // Sets priorities[k] at leaf indices[k], k = 0..n-1, in order (a repeated
  // index keeps its last priority). Throws std::invalid_argument, mutating
  // nothing, if any index is outside [0, capacity) or any priority is
  // negative, NaN or infinite. Throws std::overflow_error, after restoring
  // the previous priorities, if the total would overflow to infinity.
  void Update(const int64_t* indices, const double* priorities, int64_t n);

  // For each target t in [0, total] writes the leaf i whose prefix-sum
  // interval [sum_{j<i} p_j, sum_{j<=i} p_j) contains it. The result is always
  // a leaf with a positive priority, even when round-off makes t reach or
  // pass the end of the last interval. Throws std::invalid_argument if the
  // tree's total is 0 or any target is NaN or outside [0, total].
  void Sample(const double* targets, int64_t n, int64_t* out) const;

  // Writes the priorities of the given leaves. Throws std::invalid_argument
  // if any index is outside [0, capacity).
  void Get(const int64_t* indices, int64_t n, double* out) const;

  // Copies all `capacity` leaf priorities to out.
  void ToArray(double* out) const;

  // Replaces all leaf priorities with values[0..capacity) and rebuilds the
  // internal nodes in O(capacity). Same validation as Update.
  void FromArray(const double* values);

 private:
  void CheckIndices(const int64_t* indices, int64_t n) const;
  static void CheckPriorities(const double* priorities, const int64_t* indices, int64_t n);
  void SetLeaf(int64_t leaf, double priority);
  void Rebuild();

  int64_t capacity_;
  int64_t num_leaves_;  // L: a power of two >= capacity_.
  std::vector<double> nodes_;  // 2 * L entries; nodes_[0] is unused.
  mutable std::mutex mutex_;
};

}  // namespace seed_rl

#endif  // SEED_RL_OPS_SUM_TREE_H_
