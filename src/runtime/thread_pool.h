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

  using RangeJob = std::function<void(int thread, int64_t begin, int64_t end)>;

  int size() const { return n_threads_; }
  void run(const Job& job);

  // Calls job(thread, begin, end) over disjoint chunks covering [0, total), chunk bounds multiples
  // of `align` (the last clipped to total). Each thread starts on its own contiguous share, front
  // to back; a thread that finishes early takes chunks from the back of the others' shares. The
  // shares stay contiguous (each core's prefetch stream unbroken), and a thread that runs slow
  // (a busy core of a shared machine) no longer holds up the others at the barrier.
  void parallel_for(int64_t total, int64_t align, const RangeJob& job);

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

  // A thread's share of a parallel_for in units of `align`: front in the low 32 bits, back in the
  // high 32. The owner takes chunks from the front, others from the back, by compare-and-swap.
  struct alignas(64) Share {
    std::atomic<uint64_t> front_back{0};
  };
  static bool take(Share& share, int64_t grain, bool from_front, int64_t* begin, int64_t* end);
  std::vector<Share> shares_;
};

}  // namespace mambalite
