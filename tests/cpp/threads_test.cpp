// Threaded evaluation, for the ThreadSanitizer build (tests/test_tsan.py): for each model file
// given, several States on one Model evaluated from 4 threads at once (each call runs on the
// model's pool), one thread stepping a ragged batch, and one copying and serialising a finished
// state meanwhile; every thread's logits must equal a sequential run's bit for bit.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "model.h"

using namespace mambalite;

namespace {

constexpr int kThreads = 4;
constexpr int kTokens = 12;

std::vector<int32_t> prompt_of(int i, int64_t n_vocab) {
  std::vector<int32_t> ids;
  for (int j = 0; j < 3 + i; ++j)
    ids.push_back(static_cast<int32_t>((7 * i + 5 * j + 1) % n_vocab));
  return ids;
}

// The prompt, then kTokens steps of fixed ids: all logits, concatenated.
std::vector<float> run(Model& model, int i) {
  const int64_t V = model.config().n_vocab;
  State state(model.state_shape());
  std::vector<float> out(static_cast<size_t>(V * (kTokens + 1)));
  const std::vector<int32_t> ids = prompt_of(i, V);
  model.eval(state, ids.data(), static_cast<int64_t>(ids.size()), LogitsMode::kLast, out.data());
  for (int t = 0; t < kTokens; ++t) {
    const int32_t id = static_cast<int32_t>((i + 3 * t) % V);
    model.eval(state, &id, 1, LogitsMode::kLast, out.data() + (t + 1) * V);
  }
  return out;
}

std::vector<float> run_batch(Model& model) {
  const int64_t V = model.config().n_vocab;
  std::vector<State> states;
  for (int i = 0; i < 3; ++i) states.emplace_back(model.state_shape());
  std::vector<State*> ptrs;
  std::vector<std::vector<int32_t>> ids;
  for (int i = 0; i < 3; ++i) {
    ptrs.push_back(&states[i]);
    ids.push_back(prompt_of(i, V));
  }
  std::vector<float> out(static_cast<size_t>(3 * V * (kTokens + 1)));
  model.eval_batch(ptrs, ids, out.data());
  for (int t = 0; t < kTokens; ++t) {
    for (int i = 0; i < 3; ++i) ids[i] = {static_cast<int32_t>((i + 3 * t) % V)};
    model.eval_batch(ptrs, ids, out.data() + (t + 1) * 3 * V);
  }
  return out;
}

bool check_model(const std::string& path) {
  LoadOptions options;
  options.n_threads = 2;
  options.n_ctx = 64;
  Model model(path, options);
  std::vector<std::vector<float>> expected;
  for (int i = 0; i < kThreads; ++i) expected.push_back(run(model, i));
  const std::vector<float> batch_expected = run_batch(model);
  State finished(model.state_shape());
  const std::vector<int32_t> ids = prompt_of(9, model.config().n_vocab);
  model.eval(finished, ids.data(), static_cast<int64_t>(ids.size()), LogitsMode::kNone, nullptr);
  const std::string reference = finished.to_bytes();

  std::vector<std::vector<float>> got(kThreads);
  std::vector<float> batch_got;
  std::atomic<bool> stop{false}, copies_ok{true};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) threads.emplace_back([&, i] { got[i] = run(model, i); });
  threads.emplace_back([&] { batch_got = run_batch(model); });
  std::thread copier([&] {
    while (!stop.load()) {
      const State copy(finished);
      if (copy.to_bytes() != reference) copies_ok = false;
    }
  });
  for (std::thread& t : threads) t.join();
  stop = true;
  copier.join();
  bool ok = copies_ok.load() && batch_got == batch_expected;
  for (int i = 0; i < kThreads; ++i) ok = ok && got[i] == expected[i];
  std::printf("%s %s\n", ok ? "ok" : "FAILED", path.c_str());
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  int failed = 0;
  for (int i = 1; i < argc; ++i) {
    try {
      if (!check_model(argv[i])) ++failed;
    } catch (const std::exception& e) {
      std::printf("FAILED %s: %s\n", argv[i], e.what());
      ++failed;
    }
  }
  std::printf("%d models, %d failed\n", argc - 1, failed);
  return failed == 0 ? 0 : 1;
}
