// Python bindings of seed_rl._ops: batched numpy in, numpy out, and the loops
// run in C++ with the GIL released (SumTree has its own mutex).

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>

#include "sum_tree.h"

namespace py = pybind11;

namespace {

using seed_rl::SumTree;
using IndexArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using FloatArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

// Converts obj (an array or a sequence) to a 1-D array of `kinds` numpy dtype
// kinds, cast to T. Raises TypeError for another dtype kind (so float indices
// are not silently truncated), ValueError for another number of dimensions.
template <typename Array>
Array AsVector(const py::handle& obj, const char* name, const char* kinds) {
  py::array array = py::array::ensure(obj);
  if (!array) {
    throw py::type_error(std::string(name) + " must be convertible to a numpy array");
  }
  if (array.ndim() != 1) {
    throw py::value_error(std::string(name) + " must be 1-D, got " +
                          std::to_string(array.ndim()) + " dimensions");
  }
  const char kind = array.dtype().kind();
  // An empty sequence becomes float64; accept it whatever is asked for.
  if (array.size() != 0 && std::string(kinds).find(kind) == std::string::npos) {
    throw py::type_error(std::string(name) + " has dtype " +
                         py::str(array.dtype()).cast<std::string>() +
                         ", expected numpy dtype kind(s) '" + kinds + "'");
  }
  Array result = Array::ensure(array);
  if (!result) throw py::error_already_set();
  return result;
}

IndexArray AsIndices(const py::handle& obj) { return AsVector<IndexArray>(obj, "indices", "iu"); }

FloatArray AsFloats(const py::handle& obj, const char* name) {
  return AsVector<FloatArray>(obj, name, "fiu");
}

}  // namespace

PYBIND11_MODULE(_ops, m) {
  m.doc() = "C++ kernels of seed_rl: a batched sum-tree for prioritized replay.";

  py::class_<SumTree>(m, "SumTree", R"doc(
A binary sum-tree of ``capacity`` float64 priorities, all 0 at first.

Batched: every method takes and returns 1-D numpy arrays and loops in C++
with the GIL released. Invalid input raises ValueError naming the offending
entry, and leaves the tree unchanged. Picklable (leaf priorities are kept).
)doc")
      .def(py::init<int64_t>(), py::arg("capacity"))
      .def_property_readonly("capacity", &SumTree::capacity, "Number of leaves.")
      .def("total", &SumTree::total, "Sum of all priorities.")
      .def(
          "update",
          [](SumTree& self, const py::object& indices, const py::object& priorities) {
            IndexArray idx = AsIndices(indices);
            FloatArray pri = AsFloats(priorities, "priorities");
            if (idx.size() != pri.size()) {
              throw py::value_error("update: got " + std::to_string(idx.size()) +
                                    " indices but " + std::to_string(pri.size()) + " priorities");
            }
            const int64_t* idx_data = idx.data();
            const double* pri_data = pri.data();
            const int64_t n = idx.size();
            py::gil_scoped_release release;
            self.Update(idx_data, pri_data, n);
          },
          py::arg("indices"), py::arg("priorities"),
          R"doc(
Sets ``priorities[k]`` (float64[n], finite, >= 0) at leaf ``indices[k]``
(int64[n], in [0, capacity)); a repeated index keeps its last priority.
O(n log capacity). All entries are validated before any is written: on a
bad one, ValueError and no change. OverflowError (and no change) if the
total would become infinite.
)doc")
      .def(
          "sample",
          [](const SumTree& self, const py::object& targets) {
            FloatArray tgt = AsFloats(targets, "targets");
            const int64_t n = tgt.size();
            IndexArray out(n);
            const double* tgt_data = tgt.data();
            int64_t* out_data = out.mutable_data();
            {
              py::gil_scoped_release release;
              self.Sample(tgt_data, n, out_data);
            }
            return out;
          },
          py::arg("targets"),
          R"doc(
For each target (float64[n], in [0, total()]) returns the leaf index (int64[n])
whose prefix-sum interval contains it, O(log capacity) each; with targets
uniform in [0, total) leaf i is drawn with probability p_i / total. Always
returns a leaf with a positive priority (round-off at the top end included).
ValueError for a target outside [0, total()] or NaN, or if total() is 0.
)doc")
      .def(
          "get",
          [](const SumTree& self, const py::object& indices) {
            IndexArray idx = AsIndices(indices);
            const int64_t n = idx.size();
            FloatArray out(n);
            const int64_t* idx_data = idx.data();
            double* out_data = out.mutable_data();
            {
              py::gil_scoped_release release;
              self.Get(idx_data, n, out_data);
            }
            return out;
          },
          py::arg("indices"), "Priorities (float64[n]) of the leaves ``indices`` (int64[n]).")
      .def(
          "to_array",
          [](const SumTree& self) {
            FloatArray out(self.capacity());
            double* out_data = out.mutable_data();
            {
              py::gil_scoped_release release;
              self.ToArray(out_data);
            }
            return out;
          },
          "All leaf priorities, float64[capacity] (a copy).")
      .def_static(
          "from_array",
          [](const py::object& priorities) {
            FloatArray pri = AsFloats(priorities, "priorities");
            auto tree = std::make_unique<SumTree>(pri.size());
            const double* data = pri.data();
            {
              py::gil_scoped_release release;
              tree->FromArray(data);
            }
            return tree;
          },
          py::arg("priorities"),
          "A tree with capacity len(priorities) holding these leaf priorities; O(capacity).")
      .def("__repr__",
           [](const SumTree& self) {
             return "SumTree(capacity=" + std::to_string(self.capacity()) +
                    ", total=" + py::repr(py::float_(self.total())).cast<std::string>() + ")";
           })
      .def(py::pickle(
          [](const SumTree& self) {
            FloatArray leaves(self.capacity());
            self.ToArray(leaves.mutable_data());
            return py::make_tuple(self.capacity(), leaves);
          },
          [](const py::tuple& state) {
            if (state.size() != 2) throw std::runtime_error("SumTree: invalid pickled state");
            const auto capacity = state[0].cast<int64_t>();
            FloatArray pri = AsFloats(state[1], "priorities");
            if (pri.size() != capacity) throw std::runtime_error("SumTree: invalid pickled state");
            auto tree = std::make_unique<SumTree>(capacity);
            tree->FromArray(pri.data());
            return tree;
          }));
}
