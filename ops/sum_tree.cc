#include "sum_tree.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace seed_rl {

namespace {

// The shortest decimal that reads back as `value` (like Python's repr).
std::string FormatDouble(double value) {
  char buffer[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::isnan(value) || std::strtod(buffer, nullptr) == value) break;
  }
  return buffer;
}

}  // namespace

SumTree::SumTree(int64_t capacity) : capacity_(capacity), num_leaves_(1) {
  if (capacity < 1 || capacity > kMaxCapacity) {
    throw std::invalid_argument("SumTree: capacity must be in [1, 2^40], got " +
                                std::to_string(capacity));
  }
  while (num_leaves_ < capacity_) num_leaves_ *= 2;
  nodes_.assign(static_cast<size_t>(2 * num_leaves_), 0.0);
}

double SumTree::total() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return nodes_[1];
}

void SumTree::CheckIndices(const int64_t* indices, int64_t n) const {
  for (int64_t k = 0; k < n; ++k) {
    const int64_t index = indices[k];
    if (index < 0 || index >= capacity_) {
      throw std::invalid_argument("SumTree: index " + std::to_string(index) + " (position " +
                                  std::to_string(k) + ") is out of range [0, " +
                                  std::to_string(capacity_) + ")");
    }
  }
}

void SumTree::CheckPriorities(const double* priorities, const int64_t* indices, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    const double p = priorities[k];
    const char* problem = nullptr;
    if (std::isnan(p)) {
      problem = "is NaN";
    } else if (std::isinf(p)) {
      problem = "is infinite";
    } else if (p < 0.0) {
      problem = "is negative";
    }
    if (problem != nullptr) {
      std::string where = "position " + std::to_string(k);
      if (indices != nullptr) where += ", index " + std::to_string(indices[k]);
      throw std::invalid_argument("SumTree: priority " + FormatDouble(p) + " (" + where + ") " +
                                  problem + "; priorities must be finite and >= 0");
    }
  }
}

void SumTree::SetLeaf(int64_t leaf, double priority) {
  int64_t node = num_leaves_ + leaf;
  nodes_[node] = priority;
  // Recompute every ancestor from its two children: exact and drift-free.
  for (node /= 2; node >= 1; node /= 2) {
    nodes_[node] = nodes_[2 * node] + nodes_[2 * node + 1];
  }
}

void SumTree::Update(const int64_t* indices, const double* priorities, int64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  CheckIndices(indices, n);
  CheckPriorities(priorities, indices, n);
  std::vector<double> previous(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    previous[k] = nodes_[num_leaves_ + indices[k]];
    SetLeaf(indices[k], priorities[k]);
  }
  if (!std::isfinite(nodes_[1])) {
    // Undo in reverse order so that repeated indices get their original value.
    for (int64_t k = n - 1; k >= 0; --k) SetLeaf(indices[k], previous[k]);
    throw std::overflow_error("SumTree: the total priority would overflow to infinity");
  }
}

void SumTree::Sample(const double* targets, int64_t n, int64_t* out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const double total = nodes_[1];
  if (!(total > 0.0)) {
    throw std::invalid_argument("SumTree: cannot sample, the total priority is 0");
  }
  for (int64_t k = 0; k < n; ++k) {
    const double t = targets[k];
    if (!(t >= 0.0 && t <= total)) {  // Also rejects NaN.
      throw std::invalid_argument("SumTree: target " + FormatDouble(t) + " (position " +
                                  std::to_string(k) + ") is outside [0, total=" +
                                  FormatDouble(total) + "]");
    }
  }
  // The descents of a group of targets advance level by level together: the
  // walks are independent, so their memory loads (mostly cache misses in the
  // lower levels of a large tree) overlap instead of waiting for each other.
  // About 20% faster than one walk at a time at capacity 1e6 (measured).
  constexpr int64_t kGroup = 8;
  const double* nodes = nodes_.data();
  int64_t node[kGroup];
  double t[kGroup];
  for (int64_t base = 0; base < n; base += kGroup) {
    const int64_t m = std::min(kGroup, n - base);
    for (int64_t j = 0; j < m; ++j) {
      node[j] = 1;
      t[j] = targets[base + j];
    }
    // Invariant: nodes[node] > 0. Going left needs left > t >= 0, or a zero
    // right sibling (then left == parent > 0); going right happens only when
    // the right child is positive. So the walk ends on a positive leaf, which
    // also rules out the zero padding leaves at and past capacity.
    for (int64_t width = 1; width < num_leaves_; width *= 2) {
      for (int64_t j = 0; j < m; ++j) {
        const int64_t left = 2 * node[j];
        const double left_sum = nodes[left];
        const bool go_left = t[j] < left_sum || nodes[left + 1] == 0.0;
        t[j] = go_left ? t[j] : t[j] - left_sum;
        node[j] = go_left ? left : left + 1;
      }
    }
    for (int64_t j = 0; j < m; ++j) out[base + j] = node[j] - num_leaves_;
  }
}

void SumTree::Get(const int64_t* indices, int64_t n, double* out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  CheckIndices(indices, n);
  for (int64_t k = 0; k < n; ++k) out[k] = nodes_[num_leaves_ + indices[k]];
}

void SumTree::ToArray(double* out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (int64_t i = 0; i < capacity_; ++i) out[i] = nodes_[num_leaves_ + i];
}

void SumTree::Rebuild() {
  for (int64_t node = num_leaves_ - 1; node >= 1; --node) {
    nodes_[node] = nodes_[2 * node] + nodes_[2 * node + 1];
  }
}

void SumTree::FromArray(const double* values) {
  std::lock_guard<std::mutex> lock(mutex_);
  CheckPriorities(values, nullptr, capacity_);
  const auto leaves = nodes_.begin() + num_leaves_;
  std::vector<double> previous(leaves, leaves + capacity_);
  for (int64_t i = 0; i < capacity_; ++i) nodes_[num_leaves_ + i] = values[i];
  Rebuild();
  if (!std::isfinite(nodes_[1])) {
    for (int64_t i = 0; i < capacity_; ++i) nodes_[num_leaves_ + i] = previous[i];
    Rebuild();
    throw std::overflow_error("SumTree: the total priority would overflow to infinity");
  }
}

}  // namespace seed_rl
