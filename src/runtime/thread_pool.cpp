#include "runtime/thread_pool.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MAMBALITE_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define MAMBALITE_PAUSE() __asm__ __volatile__("yield")
#else
#define MAMBALITE_PAUSE() ((void)0)
#endif

namespace mambalite {
namespace {
constexpr int kSpinIterations = 1 << 15;  // tens of microseconds before a worker sleeps
}

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(std::max(1, n_threads)), shares_(static_cast<size_t>(n_threads_)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run(const Job& job) {
  if (n_threads_ == 1) {
    job(0, 1);
    return;
  }
  job_ = &job;
  pending_.store(n_threads_ - 1);
  generation_.fetch_add(1);  // publishes job_ to the workers
  if (sleepers_.load() > 0) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
    }
    cv_.notify_all();
  }
  job(0, n_threads_);
  int spins = 0;
  while (pending_.load(std::memory_order_acquire) != 0) {
    if (++spins < kSpinIterations) {
      MAMBALITE_PAUSE();
    } else {
      std::this_thread::yield();
    }
  }
  job_ = nullptr;
}

bool ThreadPool::take(Share& share, int64_t grain, bool from_front, int64_t* begin, int64_t* end) {
  uint64_t fb = share.front_back.load(std::memory_order_relaxed);
  for (;;) {
    const int64_t f = static_cast<int64_t>(fb & 0xFFFFFFFFu), b = static_cast<int64_t>(fb >> 32);
    if (f >= b) return false;
    const int64_t nf = from_front ? std::min(f + grain, b) : f;
    const int64_t nb = from_front ? b : std::max(b - grain, f);
    const uint64_t next = static_cast<uint64_t>(nf) | static_cast<uint64_t>(nb) << 32;
    if (share.front_back.compare_exchange_weak(fb, next, std::memory_order_relaxed)) {
      *begin = from_front ? f : nb;
      *end = from_front ? nf : b;
      return true;
    }
  }
}

void ThreadPool::parallel_for(int64_t total, int64_t align, const RangeJob& job) {
  const int64_t units = (total + align - 1) / align;
  if (units <= 0) return;
  if (units > int64_t{0xFFFFFFFF}) {  // a share packs its bounds into 32 bits each
    throw std::length_error("parallel_for over " + std::to_string(units) +
                            " chunks: at most 2^32 - 1 are supported; use a larger align");
  }
  const int nt = n_threads_;
  // Chunks of an eighth of a share: few atomics, and a tail small enough to rebalance.
  const int64_t grain = std::max<int64_t>(1, units / (8 * nt));
  for (int i = 0; i < nt; ++i) {
    const uint64_t f = static_cast<uint64_t>(units * i / nt);
    const uint64_t b = static_cast<uint64_t>(units * (i + 1) / nt);
    shares_[static_cast<size_t>(i)].front_back.store(f | b << 32, std::memory_order_relaxed);
  }
  run([&](int i, int n) {  // run() publishes the shares to the workers (release / acquire)
    int64_t u0, u1;
    while (take(shares_[static_cast<size_t>(i)], grain, true, &u0, &u1)) {
      job(i, u0 * align, std::min(u1 * align, total));
    }
    for (int k = 1; k < n; ++k) {
      Share& other = shares_[static_cast<size_t>((i + k) % n)];
      while (take(other, grain, false, &u0, &u1)) job(i, u0 * align, std::min(u1 * align, total));
    }
  });
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    uint64_t gen;
    while ((gen = generation_.load(std::memory_order_acquire)) == seen) {
      if (++spins < kSpinIterations) {
        MAMBALITE_PAUSE();
        continue;
      }
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1);
      cv_.wait(lock, [&] { return generation_.load() != seen; });
      sleepers_.fetch_sub(1);
      spins = 0;
    }
    seen = gen;
    if (stop_.load()) return;
    (*job_)(index, n_threads_);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace mambalite
