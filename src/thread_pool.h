// A persistent pool of worker threads. `run(job)` calls job(i, n) on every thread i of n (the
// caller is thread 0) and returns when all have finished. Idle workers spin briefly, then sleep,
// so back-to-back jobs (every matrix product of a decoded token) do not pay a wake-up each.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mambalite {

class ThreadPool {
 public:
  using Job = std::function<void(int thread, int n_threads)>;

  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  void run(const Job& job);

  // Splits [0, n) into `parts` contiguous chunks, rounded to multiples of `align`; returns chunk i.
  static void split(int64_t n, int i, int parts, int64_t align, int64_t* begin, int64_t* end);

 private:
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  const Job* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
};

}  // namespace mambalite
