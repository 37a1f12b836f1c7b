// A fixed std::thread pool with a blocking parallelFor. Several callers (libuv worker threads) may
// submit at once; each call waits only for its own chunks and the caller runs chunks too, so a call
// never deadlocks waiting for workers that are busy with someone else's work.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace shoal {

class ThreadPool {
 public:
  explicit ThreadPool(unsigned threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const { return static_cast<unsigned>(workers_.size()) + 1; }
  /** Runs fn(i) for i in [0, count), spread over the pool and the calling thread. Rethrows the first error. */
  void parallelFor(size_t count, const std::function<void(size_t)>& fn);

 private:
  void workerLoop();
  std::vector<std::thread> workers_;
  std::deque<std::function<void()>> queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace shoal
