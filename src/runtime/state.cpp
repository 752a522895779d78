#include "runtime/state.h"

#include <cstring>

#include "errors.h"

namespace mambalite {
namespace {

// memcpy that takes empty ranges, whose pointers may be null (a state without Mamba layers has
// no conv values), which memcpy's contract does not allow.
void copy_bytes(void* dst, const void* src, size_t n) {
  if (n > 0) std::memcpy(dst, src, n);
}

constexpr char kMagic[8] = {'M', 'L', 'S', 'T', 'A', 'T', 'E', '\0'};
// 2 added conv_dim (version 1 implies conv_dim = d_inner); 3 added the KV caches.
constexpr uint32_t kVersion = 3;

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <typename T>
T get(std::string_view in, size_t& pos) {
  if (in.size() - pos < sizeof(T)) {
    throw InvalidArgument("state bytes are truncated at byte " + std::to_string(pos) + " of " +
                          std::to_string(in.size()));
  }
  T v;
  std::memcpy(&v, in.data() + pos, sizeof(T));
  pos += sizeof(T);
  return v;
}

bool kv_type_ok(GgmlType t) {
  return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::Q8_0;
}

}  // namespace

StateShape StateShape::of(const ModelConfig& c, int64_t n_ctx, GgmlType kv_type) {
  StateShape s;
  s.architecture = c.architecture;
  s.n_ssm_layers = c.count_blocks(BlockKind::kMamba1) + c.count_blocks(BlockKind::kMamba2);
  if (s.n_ssm_layers > 0) {
    s.d_inner = c.d_inner;
    s.d_state = c.d_state;
    s.d_conv = c.d_conv;
    s.conv_dim = c.conv_dim();
  }
  for (const BlockSpec& b : c.blocks) {
    if (b.kind == BlockKind::kAttention) s.kv_widths.push_back(b.n_head_kv * c.head_dim);
  }
  if (!s.kv_widths.empty()) {
    s.n_ctx = n_ctx;
    s.kv_type = kv_type;
  }
  return s;
}

bool StateShape::same_layout(const StateShape& o) const {
  return architecture == o.architecture && n_ssm_layers == o.n_ssm_layers && d_inner == o.d_inner &&
         d_state == o.d_state && d_conv == o.d_conv && conv_dim == o.conv_dim &&
         kv_widths == o.kv_widths && kv_type == o.kv_type;
}

bool StateShape::operator==(const StateShape& o) const {
  return same_layout(o) && n_ctx == o.n_ctx;
}

std::string StateShape::describe() const {
  std::string s = architecture + ", " + std::to_string(n_ssm_layers) + " Mamba layers";
  if (n_ssm_layers > 0) {
    s += ", d_inner " + std::to_string(d_inner) + ", d_state " + std::to_string(d_state) +
         ", d_conv " + std::to_string(d_conv) + ", conv channels " + std::to_string(conv_dim);
  }
  if (!kv_widths.empty()) {
    s += ", " + std::to_string(kv_widths.size()) + " attention layers (KV widths";
    for (const int64_t w : kv_widths) s += " " + std::to_string(w);
    s += std::string(", ") + ggml_type_name(kv_type) + " cache of " + std::to_string(n_ctx) +
         " positions)";
  }
  return s;
}

size_t StateShape::kv_row_bytes(size_t slot) const {
  return ggml_row_size(kv_type, kv_widths[slot]);
}

size_t StateShape::ssm_bytes() const {
  return static_cast<size_t>(n_ssm_layers * ((d_conv - 1) * conv_dim + d_inner * d_state)) *
         sizeof(float);
}

size_t StateShape::kv_bytes_per_token() const {
  size_t b = 0;
  for (size_t i = 0; i < kv_widths.size(); ++i) b += 2 * kv_row_bytes(i);
  return b;
}

State::State(const StateShape& shape, bool populate_kv)
    : shape_(shape),
      conv_(static_cast<size_t>(shape.n_ssm_layers * (shape.d_conv - 1) * shape.conv_dim), 0.0f),
      ssm_(static_cast<size_t>(shape.n_ssm_layers * shape.d_inner * shape.d_state), 0.0f) {
  for (size_t i = 0; i < shape.kv_widths.size(); ++i) {
    kv_.emplace_back(2 * kv_half_bytes(i), populate_kv);
  }
}

State::State(const State& o) : shape_(o.shape_), n_tokens_(o.n_tokens_) {
  o.sync_host();
  conv_ = o.conv_;
  ssm_ = o.ssm_;
  for (size_t i = 0; i < o.kv_.size(); ++i) {  // the positions in use of K and of V
    kv_.emplace_back(o.kv_[i].size(), o.kv_[i].populated());
    const size_t used = shape_.kv_row_bytes(i) * static_cast<size_t>(n_tokens_);
    copy_bytes(kv_[i].data(), o.kv_[i].data(), used);
    copy_bytes(kv_[i].data() + kv_half_bytes(i), o.kv_[i].data() + kv_half_bytes(i), used);
  }
}

State& State::operator=(const State& o) {
  if (this != &o) *this = State(o);
  return *this;
}

size_t State::kv_bytes() const {
  size_t b = 0;
  for (const ZeroedBuffer& v : kv_) b += v.size();
  return b;
}

size_t State::n_bytes() const { return ssm_bytes() + kv_bytes(); }

void State::sync_host() const {
  if (host_valid_) return;
  mirror_->download(conv_.data(), ssm_.data());
  host_valid_ = true;
}

void State::use_host() {
  sync_host();
  mirror_valid_ = false;
}

StateMirror* State::use_mirror(int device) {
  if (mirror_ == nullptr) return nullptr;
  if (mirror_->device() != device) {  // moving to another GPU: through the host
    sync_host();
    mirror_.reset();
    mirror_valid_ = false;
    return nullptr;
  }
  if (!mirror_valid_) {
    mirror_->upload(conv_.data(), ssm_.data());
    mirror_valid_ = true;
  }
  return mirror_.get();
}

void State::set_mirror(std::unique_ptr<StateMirror> mirror) {
  sync_host();
  mirror_ = std::move(mirror);
  mirror_->upload(conv_.data(), ssm_.data());
  mirror_valid_ = true;
}

std::string State::to_bytes() const {
  sync_host();
  const size_t used_kv = shape_.kv_bytes_per_token() * static_cast<size_t>(n_tokens_);
  std::string out;
  out.reserve(128 + shape_.architecture.size() + ssm_bytes() + used_kv);
  out.append(kMagic, sizeof(kMagic));
  put<uint32_t>(out, kVersion);
  put<uint32_t>(out, static_cast<uint32_t>(shape_.architecture.size()));
  out.append(shape_.architecture);
  put<int64_t>(out, shape_.n_ssm_layers);
  put<int64_t>(out, shape_.d_inner);
  put<int64_t>(out, shape_.d_state);
  put<int64_t>(out, shape_.d_conv);
  put<int64_t>(out, shape_.conv_dim);
  put<int64_t>(out, n_tokens_);
  put<uint32_t>(out, static_cast<uint32_t>(shape_.kv_widths.size()));
  for (const int64_t w : shape_.kv_widths) put<int64_t>(out, w);
  put<uint32_t>(out, static_cast<uint32_t>(shape_.kv_type));
  put<int64_t>(out, shape_.n_ctx);
  out.append(reinterpret_cast<const char*>(conv_.data()), conv_.size() * sizeof(float));
  out.append(reinterpret_cast<const char*>(ssm_.data()), ssm_.size() * sizeof(float));
  for (size_t i = 0; i < kv_.size(); ++i) {  // only the positions in use
    const size_t used = shape_.kv_row_bytes(i) * static_cast<size_t>(n_tokens_);
    out.append(reinterpret_cast<const char*>(kv_[i].data()), used);
    out.append(reinterpret_cast<const char*>(kv_[i].data() + kv_half_bytes(i)), used);
  }
  return out;
}

State State::from_bytes(std::string_view in, const StateShape* want) {
  if (in.size() < sizeof(kMagic) || std::memcmp(in.data(), kMagic, sizeof(kMagic)) != 0) {
    throw InvalidArgument(
        "these bytes are not a mambalite state (they should come from "
        "State.to_bytes())");
  }
  size_t pos = sizeof(kMagic);
  const uint32_t version = get<uint32_t>(in, pos);
  if (version < 1 || version > kVersion) {
    throw InvalidArgument("state format version " + std::to_string(version) +
                          " is not supported (this mambalite reads versions 1 to " +
                          std::to_string(kVersion) + ")");
  }
  const uint32_t arch_len = get<uint32_t>(in, pos);
  if (arch_len > 64 || in.size() - pos < arch_len) {
    throw InvalidArgument("state bytes are corrupt (architecture name)");
  }
  StateShape shape;
  shape.architecture = std::string(in.substr(pos, arch_len));
  pos += arch_len;
  shape.n_ssm_layers = get<int64_t>(in, pos);
  shape.d_inner = get<int64_t>(in, pos);
  shape.d_state = get<int64_t>(in, pos);
  shape.d_conv = get<int64_t>(in, pos);
  shape.conv_dim = version >= 2 ? get<int64_t>(in, pos) : shape.d_inner;
  const int64_t n_tokens = get<int64_t>(in, pos);
  const int64_t lim = int64_t{1} << 20;
  if (version >= 3) {
    const uint32_t n_kv = get<uint32_t>(in, pos);
    if (n_kv > 4096) throw InvalidArgument("state bytes are corrupt (attention layer count)");
    for (uint32_t i = 0; i < n_kv; ++i) {
      const int64_t w = get<int64_t>(in, pos);
      if (w <= 0 || w > lim) throw InvalidArgument("state bytes are corrupt (KV width)");
      shape.kv_widths.push_back(w);
    }
    shape.kv_type = static_cast<GgmlType>(get<uint32_t>(in, pos));
    shape.n_ctx = get<int64_t>(in, pos);
    if (!kv_type_ok(shape.kv_type) || shape.n_ctx < 0 || shape.n_ctx > (int64_t{1} << 24) ||
        (n_kv > 0 && (shape.n_ctx == 0 || n_tokens > shape.n_ctx))) {
      throw InvalidArgument("state bytes are corrupt (KV cache type or size)");
    }
  }
  const bool ssm = shape.n_ssm_layers > 0;
  // Every field in range, also those a state without Mamba layers does not use: sizes are
  // computed from them (a fuzzed d_conv of -2^63 overflowed d_conv - 1).
  const bool in_range = shape.d_inner >= 0 && shape.d_inner <= lim && shape.d_state >= 0 &&
                        shape.d_state <= lim && shape.d_conv >= 0 && shape.d_conv <= 64 &&
                        shape.conv_dim >= 0 && shape.conv_dim <= 2 * lim;
  if (!in_range || shape.n_ssm_layers < 0 || shape.n_ssm_layers > lim ||
      (ssm && (shape.d_inner <= 0 || shape.d_inner > lim || shape.d_state <= 0 ||
               shape.d_state > lim || shape.d_conv <= 0 || shape.d_conv > 64 ||
               shape.conv_dim < shape.d_inner || shape.conv_dim > 2 * lim)) ||
      (!ssm && shape.kv_widths.empty()) || n_tokens < 0) {
    throw InvalidArgument("state bytes are corrupt (shape fields out of range)");
  }
  if (want != nullptr) {
    if (!shape.same_layout(*want)) {
      throw InvalidArgument("this state belongs to a model of another shape (" + shape.describe() +
                            "), but this model is (" + want->describe() +
                            "). Restore it with the model that saved it.");
    }
    if (!want->kv_widths.empty() && n_tokens > want->n_ctx) {
      throw InvalidArgument("this state holds " + std::to_string(n_tokens) +
                            " tokens, more than this model's n_ctx of " +
                            std::to_string(want->n_ctx) +
                            ": load the model with n_ctx=" + std::to_string(n_tokens) + " or more");
    }
  }
  const uint64_t n_floats =
      static_cast<uint64_t>(shape.n_ssm_layers) *
      (static_cast<uint64_t>(shape.conv_dim) * static_cast<uint64_t>(shape.d_conv - 1) +
       static_cast<uint64_t>(shape.d_inner) * static_cast<uint64_t>(shape.d_state));
  const uint64_t kv = shape.kv_bytes_per_token() * static_cast<uint64_t>(n_tokens);
  if (in.size() - pos != n_floats * sizeof(float) + kv) {
    throw InvalidArgument("state bytes have the wrong length: " + std::to_string(in.size()) +
                          " bytes for a state of shape (" + shape.describe() + ") and " +
                          std::to_string(n_tokens) + " tokens");
  }
  // Without a model the capacity is the bytes' word: reserved, taken only as it fills.
  auto make = [&]() -> State {
    if (want != nullptr) return State(*want);
    try {
      return State(shape, false);
    } catch (const ResourceError&) {
      throw InvalidArgument(
          "state bytes declare KV caches of " +
          std::to_string(shape.kv_bytes_per_token() * static_cast<uint64_t>(shape.n_ctx) >> 20) +
          " MB (" + shape.describe() +
          "), more than this machine can reserve: they are corrupt, or restore "
          "them with their model (Model.state_from_bytes)");
    }
  };
  State s = make();
  s.n_tokens_ = n_tokens;
  copy_bytes(s.conv_.data(), in.data() + pos, s.conv_.size() * sizeof(float));
  pos += s.conv_.size() * sizeof(float);
  copy_bytes(s.ssm_.data(), in.data() + pos, s.ssm_.size() * sizeof(float));
  pos += s.ssm_.size() * sizeof(float);
  for (size_t i = 0; i < s.kv_.size(); ++i) {
    const size_t used = s.shape_.kv_row_bytes(i) * static_cast<size_t>(n_tokens);
    copy_bytes(s.keys(i), in.data() + pos, used);
    pos += used;
    copy_bytes(s.values(i), in.data() + pos, used);
    pos += used;
  }
  return s;
}

}  // namespace mambalite
