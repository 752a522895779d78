#include "format/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "errors.h"

namespace mambalite {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Whether the kernel gives private memory transparent huge pages on request.
bool huge_pages_available() {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(f, line);
  return line.find("[always]") != std::string::npos || line.find("[madvise]") != std::string::npos;
#else
  return false;
#endif
}

// MemAvailable from /proc/meminfo, in bytes (0 where unknown).
size_t memory_available() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  size_t kb = 0;
  while (f >> key) {
    if (key == "MemAvailable:") {
      f >> kb;
      return kb * 1024;
    }
    f.ignore(256, '\n');
  }
  return 0;
}

bool read_all(int fd, uint8_t* out, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t r = ::pread(fd, out + done, size - done, static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

MappedFile::MappedFile(const std::string& path, FileMode mode) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    throw FileError("cannot open '" + path + "': " + std::strerror(err), err == ENOENT);
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FileError("'" + path + "' is not a regular file", false);
  }
  size_ = static_cast<size_t>(st.st_size);
  const bool chosen = mode == FileMode::kAuto;
  if (chosen) {
    const size_t available = size_ > 0 ? memory_available() : 0;
    mode = size_ > 0 && huge_pages_available() && size_ <= available / 2 ? FileMode::kRead
                                                                         : FileMode::kMap;
  }
  void* p = MAP_FAILED;
  const size_t reserved = (size_ + kHugePage - 1) / kHugePage * kHugePage;
  if (size_ > 0 && mode == FileMode::kRead) {
    p = ::mmap(nullptr, reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED && chosen) mode = FileMode::kMap;  // the engine's choice: map instead
  }
  if (size_ > 0 && mode == FileMode::kRead) {
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw FileError("cannot allocate " + std::to_string(reserved >> 20) + " MB to read '" + path +
                          "' into: " + std::strerror(err) +
                          "; load it with mmap=True to map it instead",
                      false);
    }
#if defined(MADV_HUGEPAGE)
    ::madvise(p, reserved, MADV_HUGEPAGE);  // a hint: without huge pages the copy still works
#endif
    if (!read_all(fd, static_cast<uint8_t*>(p), size_)) {
      const int err = errno;
      ::munmap(p, reserved);
      ::close(fd);
      throw FileError("cannot read '" + path + "': " + std::strerror(err), false);
    }
    ::mprotect(p, reserved, PROT_READ);  // as read-only as a mapping
    data_ = static_cast<const uint8_t*>(p);
    reserved_ = reserved;
    mapped_ = false;
  } else if (size_ > 0) {
    p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw FileError("cannot map '" + path + "': " + std::strerror(err), false);
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), mapped_ ? size_ : reserved_);
}

}  // namespace mambalite
