#include "runtime/state.h"

#include <cstring>

#include "errors.h"

namespace mambalite {
namespace {

constexpr char kMagic[8] = {'M', 'L', 'S', 'T', 'A', 'T', 'E', '\0'};
constexpr uint32_t kVersion = 2;  // 2 added conv_dim (version 1 implies conv_dim = d_inner)

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

}  // namespace

StateShape StateShape::of(const MambaConfig& c) {
  return {c.architecture, c.n_layer, c.d_inner, c.d_state, c.d_conv, c.conv_dim()};
}

bool StateShape::operator==(const StateShape& o) const {
  return architecture == o.architecture && n_layer == o.n_layer && d_inner == o.d_inner &&
         d_state == o.d_state && d_conv == o.d_conv && conv_dim == o.conv_dim;
}

std::string StateShape::describe() const {
  return architecture + ", " + std::to_string(n_layer) + " layers, d_inner " +
         std::to_string(d_inner) + ", d_state " + std::to_string(d_state) + ", d_conv " +
         std::to_string(d_conv) + ", conv channels " + std::to_string(conv_dim);
}

State::State(const StateShape& shape)
    : shape_(shape),
      conv_(static_cast<size_t>(shape.n_layer * (shape.d_conv - 1) * shape.conv_dim), 0.0f),
      ssm_(static_cast<size_t>(shape.n_layer * shape.d_inner * shape.d_state), 0.0f) {}

State::State(const State& o) : shape_(o.shape_), n_tokens_(o.n_tokens_) {
  o.sync_host();
  conv_ = o.conv_;
  ssm_ = o.ssm_;
}

State& State::operator=(const State& o) {
  if (this != &o) *this = State(o);
  return *this;
}

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
  std::string out;
  out.reserve(64 + shape_.architecture.size() + n_bytes());
  out.append(kMagic, sizeof(kMagic));
  put<uint32_t>(out, kVersion);
  put<uint32_t>(out, static_cast<uint32_t>(shape_.architecture.size()));
  out.append(shape_.architecture);
  put<int64_t>(out, shape_.n_layer);
  put<int64_t>(out, shape_.d_inner);
  put<int64_t>(out, shape_.d_state);
  put<int64_t>(out, shape_.d_conv);
  put<int64_t>(out, shape_.conv_dim);
  put<int64_t>(out, n_tokens_);
  out.append(reinterpret_cast<const char*>(conv_.data()), conv_.size() * sizeof(float));
  out.append(reinterpret_cast<const char*>(ssm_.data()), ssm_.size() * sizeof(float));
  return out;
}

State State::from_bytes(std::string_view in) {
  if (in.size() < sizeof(kMagic) || std::memcmp(in.data(), kMagic, sizeof(kMagic)) != 0) {
    throw InvalidArgument(
        "these bytes are not a mambalite state (they should come from "
        "State.to_bytes())");
  }
  size_t pos = sizeof(kMagic);
  const uint32_t version = get<uint32_t>(in, pos);
  if (version != 1 && version != kVersion) {
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
  shape.n_layer = get<int64_t>(in, pos);
  shape.d_inner = get<int64_t>(in, pos);
  shape.d_state = get<int64_t>(in, pos);
  shape.d_conv = get<int64_t>(in, pos);
  shape.conv_dim = version >= 2 ? get<int64_t>(in, pos) : shape.d_inner;
  const int64_t n_tokens = get<int64_t>(in, pos);
  const int64_t lim = int64_t{1} << 20;
  if (shape.n_layer <= 0 || shape.n_layer > lim || shape.d_inner <= 0 || shape.d_inner > lim ||
      shape.d_state <= 0 || shape.d_state > lim || shape.d_conv <= 0 || shape.d_conv > 64 ||
      shape.conv_dim < shape.d_inner || shape.conv_dim > 2 * lim || n_tokens < 0) {
    throw InvalidArgument("state bytes are corrupt (shape fields out of range)");
  }
  const uint64_t n_floats =
      static_cast<uint64_t>(shape.n_layer) *
      (static_cast<uint64_t>(shape.conv_dim) * static_cast<uint64_t>(shape.d_conv - 1) +
       static_cast<uint64_t>(shape.d_inner) * static_cast<uint64_t>(shape.d_state));
  if (in.size() - pos != n_floats * sizeof(float)) {
    throw InvalidArgument("state bytes have the wrong length: " + std::to_string(in.size()) +
                          " bytes for a state of shape (" + shape.describe() + ")");
  }
  State s(shape);
  s.n_tokens_ = n_tokens;
  std::memcpy(s.conv_.data(), in.data() + pos, s.conv_.size() * sizeof(float));
  pos += s.conv_.size() * sizeof(float);
  std::memcpy(s.ssm_.data(), in.data() + pos, s.ssm_.size() * sizeof(float));
  return s;
}

}  // namespace mambalite
