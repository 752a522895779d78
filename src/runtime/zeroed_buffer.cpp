#include "runtime/zeroed_buffer.h"

#include <sys/mman.h>

#include <cstdlib>
#include <string>
#include <utility>

#include "errors.h"

namespace mambalite {
namespace {

// From this size a buffer is a mapping (below it, zeroed heap memory is as cheap).
constexpr size_t kMapFrom = size_t{64} << 10;

}  // namespace

ZeroedBuffer::ZeroedBuffer(size_t bytes, bool populate) : size_(bytes), populated_(populate) {
  if (bytes == 0) return;
  if (bytes >= kMapFrom) {
    const int flags = MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0);
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p != MAP_FAILED) {
      data_ = static_cast<uint8_t*>(p);
      mapped_ = true;
      return;
    }
  } else {
    data_ = static_cast<uint8_t*>(std::calloc(bytes, 1));
    if (data_ != nullptr) return;
  }
  size_ = 0;
  throw ResourceError("could not reserve " + std::to_string(bytes >> 20) +
                      " MB for a KV cache: choose a smaller n_ctx");
}

ZeroedBuffer::~ZeroedBuffer() { release(); }

ZeroedBuffer::ZeroedBuffer(ZeroedBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      mapped_(std::exchange(o.mapped_, false)),
      populated_(o.populated_) {}

ZeroedBuffer& ZeroedBuffer::operator=(ZeroedBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, false);
    populated_ = o.populated_;
  }
  return *this;
}

void ZeroedBuffer::release() {
  if (data_ == nullptr) return;
  if (mapped_) {
    ::munmap(data_, size_);
  } else {
    std::free(data_);
  }
  data_ = nullptr;
}

}  // namespace mambalite
