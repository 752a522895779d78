// libFuzzer target: any byte string through the GGUF reader (open and validate), the model
// binding of every architecture the file may name, and, when a model binds, one evaluation of a
// token and a state's round trip through to_bytes / state_from_bytes. Errors must be exceptions
// of the engine's own kinds (errors.h); anything else (a crash, a sanitizer report, another
// exception type, a hang) is a finding.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

#include "errors.h"
#include "format/gguf.h"
#include "model.h"
#include "tests/fuzz/fuzz_common.h"

using namespace mambalite;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mambalite_fuzz::MemFile file(data, size);
  try {
    GgufFile gguf(file.path(), FileMode::kRead);
    for (const std::string& key : gguf.keys()) (void)gguf.find(key);
  } catch (const FileError&) {
    return 0;  // not a valid GGUF file: the reader said so
  } catch (const FormatError&) {
    return 0;
  }
  try {
    LoadOptions options;
    options.n_threads = 1;
    options.n_ctx = 16;
    options.file_mode = FileMode::kRead;
    Model model(file.path(), options);
    State state(model.state_shape());
    std::vector<float> logits(static_cast<size_t>(model.config().n_vocab));
    const int32_t id = 0;
    model.eval(state, &id, 1, LogitsMode::kLast, logits.data());
    const State back = model.state_from_bytes(state.to_bytes());
    (void)back;
  } catch (const FormatError&) {  // not a model the engine runs, or not bound: said so
  } catch (const InvalidArgument&) {
  } catch (const ResourceError&) {
  } catch (const FileError&) {
  }
  return 0;
}
