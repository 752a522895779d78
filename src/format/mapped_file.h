// A whole file's bytes in memory, read-only (RAII): mapped, or read into private memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mambalite {

// How a file's bytes are held. kMap maps the page cache's pages (shared between processes, read
// lazily). kRead copies the file into private memory backed by transparent huge pages where the
// kernel offers them: 2 MB pages mean fewer TLB misses and hardware prefetchers that run on
// across what would be 4 KB page boundaries, which decode's weight stream feels (docs/
// performance.md). kAuto reads when huge pages are available (Linux, THP "always" or "madvise")
// and the file takes at most half of the memory available; otherwise it maps.
enum class FileMode { kAuto, kMap, kRead };

class MappedFile {
 public:
  // Opens `path` and maps or reads it; throws FileError when it cannot be opened, mapped or read.
  explicit MappedFile(const std::string& path, FileMode mode = FileMode::kMap);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  bool mapped() const { return mapped_; }  // false: read into private memory

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t reserved_ = 0;  // bytes of the private region (kRead), 0 when mapped
  bool mapped_ = true;
};

}  // namespace mambalite
