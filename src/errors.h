// Exception types of the engine. Library code never aborts: it throws one of these, and the
// Python bindings translate them (FileError -> FileNotFoundError/OSError, FormatError and
// InvalidArgument -> ValueError, ResourceError -> MemoryError, anything else -> RuntimeError).
#pragma once

#include <stdexcept>
#include <string>

namespace mambalite {

// A file could not be opened or mapped (missing, unreadable, a directory).
class FileError : public std::runtime_error {
 public:
  FileError(const std::string& msg, bool not_found)
      : std::runtime_error(msg), not_found_(not_found) {}
  bool not_found() const { return not_found_; }

 private:
  bool not_found_;
};

// A file's content is not what the engine expects (not GGUF, truncated, wrong model).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A caller passed a bad argument (token id out of range, foreign state, bad sampler setting).
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Memory the engine needs could not be reserved (a KV cache larger than the address space or
// the system's overcommit allows).
class ResourceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace mambalite
