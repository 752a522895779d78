// libFuzzer target: any byte string through State::from_bytes, on its own and against each model
// of $MAMBALITE_FUZZ_MODELS (a folder of small GGUF files: one per architecture, as
// tests/test_fuzz.py writes them). A state that loads must evaluate a token and write back the
// same bytes. Errors must be the engine's own exceptions (errors.h).
#include <dirent.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "errors.h"
#include "model.h"

using namespace mambalite;

namespace {

std::vector<std::unique_ptr<Model>>& models() {
  static std::vector<std::unique_ptr<Model>> all;
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("MAMBALITE_FUZZ_MODELS");
  if (dir == nullptr) {
    std::fprintf(stderr, "set MAMBALITE_FUZZ_MODELS to a folder of small GGUF files\n");
    std::exit(2);
  }
  DIR* d = opendir(dir);
  if (d == nullptr) {
    std::fprintf(stderr, "cannot open %s\n", dir);
    std::exit(2);
  }
  LoadOptions options;
  options.n_threads = 1;
  options.n_ctx = 16;
  options.file_mode = FileMode::kRead;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() < 5 || name.substr(name.size() - 5) != ".gguf") continue;
    models().push_back(std::make_unique<Model>(std::string(dir) + "/" + name, options));
  }
  closedir(d);
  std::fprintf(stderr, "fuzz_state: %zu models\n", models().size());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    (void)State::from_bytes(bytes);
  } catch (const FormatError&) {
  } catch (const InvalidArgument&) {
  } catch (const ResourceError&) {
  }
  for (const auto& model : models()) {
    try {
      State state = model->state_from_bytes(bytes);
      std::vector<float> logits(static_cast<size_t>(model->config().n_vocab));
      const std::string before = state.to_bytes();
      if (before != model->state_from_bytes(before).to_bytes()) std::abort();  // round trip
      const int32_t id = 0;
      model->eval(state, &id, 1, LogitsMode::kLast, logits.data());
    } catch (const FormatError&) {
    } catch (const InvalidArgument&) {
    } catch (const ResourceError&) {
    }
  }
  return 0;
}
