// A zero-filled byte buffer for the KV caches. Large ones are private anonymous mappings: either
// populated at once (the caches of a model's states: memory stays fixed while they fill), or
// committed page by page as they are written (a state restored from bytes without its model,
// whose n_ctx the untrusted bytes declare: a small file must not make the engine take gigabytes
// of memory). Move-only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mambalite {

class ZeroedBuffer {
 public:
  ZeroedBuffer() = default;
  // Throws ResourceError when the bytes cannot be reserved.
  ZeroedBuffer(size_t bytes, bool populate);
  ~ZeroedBuffer();
  ZeroedBuffer(ZeroedBuffer&& o) noexcept;
  ZeroedBuffer& operator=(ZeroedBuffer&& o) noexcept;
  ZeroedBuffer(const ZeroedBuffer&) = delete;
  ZeroedBuffer& operator=(const ZeroedBuffer&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool populated() const { return populated_; }

 private:
  void release();

  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  bool populated_ = true;
};

}  // namespace mambalite
