// Python bindings of the engine (mambalite._core). Thin glue: argument conversion, exception
// translation, and the GIL released around every computation.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "format/gguf.h"
#include "kernel_bindings.h"
#include "model.h"
#include "runtime/sampler.h"
#include "runtime/state.h"

namespace py = pybind11;
using namespace mambalite;

namespace {

py::object to_python_string(std::string_view s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict");
  if (o == nullptr) {  // not UTF-8: give the raw bytes rather than fail
    PyErr_Clear();
    return py::bytes(s.data(), s.size());
  }
  return py::reinterpret_steal<py::object>(o);
}

template <typename T>
py::array copy_array(const uint8_t* raw, uint64_t count) {
  py::array_t<T> a(static_cast<py::ssize_t>(count));
  if (count) std::memcpy(a.mutable_data(), raw, count * sizeof(T));
  return std::move(a);
}

py::object to_python(const GgufValue& v) {
  switch (v.type) {
    case GgufType::BOOL:
      return py::bool_(v.u != 0);
    case GgufType::FLOAT32:
    case GgufType::FLOAT64:
      return py::float_(v.f);
    case GgufType::STRING:
      return to_python_string(v.str);
    case GgufType::UINT8:
    case GgufType::UINT16:
    case GgufType::UINT32:
    case GgufType::UINT64:
      return py::int_(v.u);
    case GgufType::ARRAY:
      switch (v.elem_type) {
        case GgufType::STRING: {
          py::list out(v.strings.size());
          for (size_t i = 0; i < v.strings.size(); ++i) out[i] = to_python_string(v.strings[i]);
          return std::move(out);
        }
        case GgufType::UINT8:
          return copy_array<uint8_t>(v.raw, v.count);
        case GgufType::INT8:
          return copy_array<int8_t>(v.raw, v.count);
        case GgufType::UINT16:
          return copy_array<uint16_t>(v.raw, v.count);
        case GgufType::INT16:
          return copy_array<int16_t>(v.raw, v.count);
        case GgufType::UINT32:
          return copy_array<uint32_t>(v.raw, v.count);
        case GgufType::INT32:
          return copy_array<int32_t>(v.raw, v.count);
        case GgufType::UINT64:
          return copy_array<uint64_t>(v.raw, v.count);
        case GgufType::INT64:
          return copy_array<int64_t>(v.raw, v.count);
        case GgufType::FLOAT32:
          return copy_array<float>(v.raw, v.count);
        case GgufType::FLOAT64:
          return copy_array<double>(v.raw, v.count);
        case GgufType::BOOL: {
          py::list out(v.count);
          for (uint64_t i = 0; i < v.count; ++i) out[i] = py::bool_(v.raw[i] != 0);
          return std::move(out);
        }
        default:
          return py::none();
      }
    default:
      return py::int_(v.i);
  }
}

py::dict metadata_dict(const GgufFile& f) {
  py::dict d;
  for (const std::string& key : f.keys()) d[py::str(key)] = to_python(*f.find(key));
  return d;
}

py::list tensor_list(const GgufFile& f) {
  py::list out;
  for (const GgufTensor& t : f.tensors()) {
    py::list shape;
    for (int d = 0; d < t.n_dims; ++d) shape.append(t.ne[d]);
    py::dict info;
    info["name"] = t.name;
    info["type"] = ggml_type_name(t.type);
    info["shape"] = py::tuple(shape);  // ggml order: contiguous dimension first
    info["offset"] = f.data_offset() + t.offset;
    info["nbytes"] = t.nbytes;
    out.append(info);
  }
  return out;
}

using IdArray = py::array_t<int32_t, py::array::c_style>;

// The hyper-parameters as Python values (the one field list is ModelConfig).
py::dict config_dict(const ModelConfig& c) {
  py::dict d;
  d["architecture"] = c.architecture;
  d["d_model"] = c.d_model;
  d["n_layer"] = c.n_layer;
  d["n_vocab"] = c.n_vocab;
  d["norm_eps"] = c.norm_eps;  // float32, as stored in the file
  d["tied_embeddings"] = c.tied_embeddings;
  d["n_ctx_train"] = c.n_ctx_train;
  d["d_inner"] = c.d_inner;
  d["d_state"] = c.d_state;
  d["d_conv"] = c.d_conv;
  d["dt_rank"] = c.dt_rank;
  d["n_head"] = c.n_head;
  d["n_group"] = c.n_group;
  d["dt_b_c_rms"] = c.dt_b_c_rms;
  d["mixer_eps"] = c.mixer_eps;
  d["head_dim"] = c.head_dim;
  d["n_rot"] = c.n_rot;
  d["rope_base"] = c.rope_base;
  d["rope_neox"] = c.rope_neox;
  d["attn_scale"] = c.attn_scale;
  d["n_expert"] = c.n_expert;
  d["n_expert_used"] = c.n_expert_used;
  d["n_ff_shexp"] = c.n_ff_shexp;
  d["embedding_scale"] = c.embedding_scale;
  d["residual_scale"] = c.residual_scale;
  d["logit_scale"] = c.logit_scale;
  return d;
}

// Logits scratch travels with the sampler: one per generation, so concurrent generations on
// one model never share it.
struct SamplerHandle {
  Sampler sampler;
  std::vector<float> logits;  // (n_vocab)
  SamplerHandle(const SamplerParams& p, int64_t n_vocab, const std::vector<int32_t>& banned)
      : sampler(p, n_vocab, banned), logits(static_cast<size_t>(n_vocab)) {}
};

int32_t eval_and_sample(Model& m, State& s, const int32_t* ids, int64_t n, SamplerHandle& h) {
  if (static_cast<int64_t>(h.logits.size()) != m.config().n_vocab) {
    throw InvalidArgument("this sampler was made for a vocabulary of " +
                          std::to_string(h.logits.size()) + " ids, but the model has " +
                          std::to_string(m.config().n_vocab));
  }
  m.eval(s, ids, n, LogitsMode::kLast, h.logits.data());
  return h.sampler.sample(h.logits.data());
}

}  // namespace

PYBIND11_MODULE(_core, mod) {
  mod.doc() = "mambalite C++ engine";
  bind_kernels(mod);
  mod.def("cuda_built", &cuda_built, "Whether this build has the CUDA backend");
  mod.def("cuda_device_count", &cuda_device_count,
          "Number of usable CUDA devices (0 without the backend, a driver or a GPU)");

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const FileError& e) {
      PyErr_SetString(e.not_found() ? PyExc_FileNotFoundError : PyExc_OSError, e.what());
    } catch (const FormatError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const InvalidArgument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const ResourceError& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    }
  });

  py::class_<GgufFile, std::shared_ptr<GgufFile>>(mod, "GgufFile")
      .def(py::init<const std::string&>(), py::arg("path"))
      .def_property_readonly("path", &GgufFile::path)
      .def_property_readonly("version", &GgufFile::version)
      .def_property_readonly("alignment", &GgufFile::alignment)
      .def_property_readonly("file_size", &GgufFile::file_size)
      .def_property_readonly("data_offset", &GgufFile::data_offset)
      .def("metadata", &metadata_dict)
      .def("tensors", &tensor_list);

  py::class_<State>(mod, "State")
      .def_property_readonly("n_tokens", &State::n_tokens)
      .def_property_readonly("nbytes", &State::n_bytes)
      .def_property_readonly("ssm_nbytes", &State::ssm_bytes)
      .def_property_readonly("kv_nbytes", &State::kv_bytes)
      .def_property_readonly("on_device", &State::on_device)
      .def("copy", [](const State& s) { return State(s); })
      .def("to_bytes", [](const State& s) { return py::bytes(s.to_bytes()); })
      .def_static("from_bytes", [](const py::bytes& b) {
        std::string_view v(b);
        return State::from_bytes(v);
      });

  py::class_<SamplerHandle>(mod, "Sampler")
      .def(py::init([](double temperature, int64_t top_k, double top_p, double min_p,
                       double repetition_penalty, uint64_t seed, int64_t n_vocab,
                       const std::vector<int32_t>& banned, double presence_penalty,
                       double frequency_penalty,
                       const std::vector<std::pair<int32_t, float>>& logit_bias,
                       int64_t n_logprobs) {
             SamplerParams p;
             p.temperature = temperature;
             p.top_k = top_k;
             p.top_p = top_p;
             p.min_p = min_p;
             p.repetition_penalty = repetition_penalty;
             p.presence_penalty = presence_penalty;
             p.frequency_penalty = frequency_penalty;
             p.logit_bias = logit_bias;
             p.n_logprobs = n_logprobs;
             p.seed = seed;
             return std::make_unique<SamplerHandle>(p, n_vocab, banned);
           }),
           py::arg("temperature"), py::arg("top_k"), py::arg("top_p"), py::arg("min_p"),
           py::arg("repetition_penalty"), py::arg("seed"), py::arg("n_vocab"), py::arg("banned"),
           py::arg("presence_penalty") = 0.0, py::arg("frequency_penalty") = 0.0,
           py::arg("logit_bias") = std::vector<std::pair<int32_t, float>>{},
           py::arg("n_logprobs") = -1)
      .def(
          "accept",
          [](SamplerHandle& h, int32_t id, bool generated) { h.sampler.accept(id, generated); },
          py::arg("id"), py::arg("generated") = false)
      .def("set_allowed",
           [](SamplerHandle& h,
              py::array_t<uint32_t, py::array::c_style | py::array::forcecast> bits) {
             std::vector<uint32_t> v(bits.data(), bits.data() + bits.size());
             h.sampler.set_allowed(v);
           })
      .def("last_logprobs",
           [](const SamplerHandle& h) {
             return py::make_tuple(h.sampler.last_logprob(), h.sampler.last_top());
           })
      .def("sample", [](SamplerHandle& h,
                        py::array_t<float, py::array::c_style | py::array::forcecast> logits) {
        if (logits.ndim() != 1 || logits.shape(0) != static_cast<py::ssize_t>(h.logits.size())) {
          throw InvalidArgument("logits must be a 1-D array of " + std::to_string(h.logits.size()) +
                                " values");
        }
        return h.sampler.sample(logits.data());
      });

  py::class_<Model>(mod, "Model")
      .def(py::init([](const std::string& path, int threads, const std::string& device,
                       int64_t n_ctx, const std::string& kv_type, int mmap) {
             LoadOptions o;
             o.n_threads = threads;
             o.device = device;
             o.n_ctx = n_ctx;
             o.kv_type = kv_type;
             // mmap: -1 as the engine sees fit, 1 mapped, 0 read into memory.
             o.file_mode = mmap < 0 ? FileMode::kAuto : mmap ? FileMode::kMap : FileMode::kRead;
             py::gil_scoped_release nogil;
             return std::make_unique<Model>(path, o);
           }),
           py::arg("path"), py::arg("threads") = 0, py::arg("device") = "cpu", py::arg("n_ctx") = 0,
           py::arg("kv_type") = "f16", py::arg("mmap") = -1)
      .def_property_readonly("mmap", [](const Model& m) { return m.file().mapped(); })
      .def_property_readonly("n_threads", &Model::n_threads)
      .def_property_readonly("n_ctx", &Model::n_ctx)
      .def_property_readonly("device", &Model::device)
      .def_property_readonly("isa", [](const Model& m) { return m.kernel_table().name; })
      .def("config", [](const Model& m) { return config_dict(m.config()); })
      .def("layers",
           [](const Model& m) {
             // The plan of blocks: (layer, kind, n_head, n_head_kv, n_ff, parallel) in
             // evaluation order.
             py::list out;
             for (const BlockSpec& b : m.config().blocks) {
               out.append(py::make_tuple(b.layer, block_kind_name(b.kind), b.n_head, b.n_head_kv,
                                         b.n_ff, b.parallel));
             }
             return out;
           })
      .def("state_bytes",
           [](const Model& m) {
             const StateShape s = m.state_shape();
             return py::make_tuple(s.ssm_bytes(), s.kv_bytes_per_token());
           })
      .def("metadata", [](const Model& m) { return metadata_dict(m.file()); })
      .def("tensors", [](const Model& m) { return tensor_list(m.file()); })
      .def("read_bandwidth", &Model::read_bandwidth, py::arg("n_bytes"), py::arg("repeats") = 5,
           py::call_guard<py::gil_scoped_release>(),
           "median bytes/s of the model's threads streaming a fresh buffer of n_bytes")
      .def("new_state", [](const Model& m) { return State(m.state_shape()); })
      .def("check_state", &Model::check_state)
      .def("state_from_bytes",
           [](const Model& m, const py::bytes& b) {
             std::string_view v(b);
             return m.state_from_bytes(v);
           })
      .def("forward",
           [](Model& m, const IdArray& ids) {
             const int64_t n = ids.size();
             const int64_t V = m.config().n_vocab;
             py::array_t<float> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(V)});
             float* dst = out.mutable_data();
             State s(m.state_shape());
             {
               py::gil_scoped_release nogil;
               m.eval(s, ids.data(), n, LogitsMode::kAll, dst);
             }
             return out;
           })
      .def("forward_state",
           [](Model& m, State& s, const IdArray& ids) {
             // Logits at every position (n, n_vocab), continuing `s` (which advances).
             const int64_t n = ids.size();
             const int64_t V = m.config().n_vocab;
             py::array_t<float> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(V)});
             float* dst = out.mutable_data();
             {
               py::gil_scoped_release nogil;
               m.eval(s, ids.data(), n, LogitsMode::kAll, dst);
             }
             return out;
           })
      .def("prefill",
           [](Model& m, State& s, const IdArray& ids) {
             py::array_t<float> out(static_cast<py::ssize_t>(m.config().n_vocab));
             float* dst = out.mutable_data();
             {
               py::gil_scoped_release nogil;
               m.eval(s, ids.data(), ids.size(), LogitsMode::kLast, dst);
             }
             return out;
           })
      .def("prefill_batch",
           [](Model& m, const std::vector<State*>& states, const std::vector<IdArray>& ids) {
             // Logits (N, n_vocab) after each sequence's last id; a ragged batch in one pass.
             std::vector<std::vector<int32_t>> lists;
             for (const IdArray& a : ids) lists.emplace_back(a.data(), a.data() + a.size());
             const auto N = static_cast<py::ssize_t>(states.size());
             py::array_t<float> out({N, static_cast<py::ssize_t>(m.config().n_vocab)});
             float* dst = out.mutable_data();
             {
               py::gil_scoped_release nogil;
               m.eval_batch(states, lists, dst);
             }
             return out;
           })
      .def("advance",
           [](Model& m, State& s, const IdArray& ids) {
             py::gil_scoped_release nogil;
             m.eval(s, ids.data(), ids.size(), LogitsMode::kNone, nullptr);
           })
      .def("prefill_and_sample",
           [](Model& m, State& s, const IdArray& ids, SamplerHandle& h) {
             py::gil_scoped_release nogil;
             return eval_and_sample(m, s, ids.data(), ids.size(), h);
           })
      .def("step_and_sample", [](Model& m, State& s, int32_t id, SamplerHandle& h) {
        py::gil_scoped_release nogil;
        return eval_and_sample(m, s, &id, 1, h);
      });
}
