#include "shoal/thread_pool.hpp"

#include <atomic>
#include <exception>
#include <memory>

namespace shoal {

ThreadPool::ThreadPool(unsigned threads) {
  unsigned extra = threads > 1 ? threads - 1 : 0;
  for (unsigned i = 0; i < extra; ++i) workers_.emplace_back([this] { workerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::workerLoop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
      if (stop_ && queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

namespace {
struct ForState {
  std::atomic<size_t> next{0};
  size_t count = 0;
  const std::function<void(size_t)>* fn = nullptr;
  std::mutex mu;
  std::condition_variable done;
  size_t activeRunners = 0;
  std::exception_ptr error;

  // Claims indices until none are left; the claim is atomic so chunks never run twice.
  void drain() {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= count) return;
      try {
        (*fn)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!error) error = std::current_exception();
      }
    }
  }
};
}  // namespace

void ThreadPool::parallelFor(size_t count, const std::function<void(size_t)>& fn) {
  if (count == 0) return;
  if (count == 1 || workers_.empty()) {
    for (size_t i = 0; i < count; ++i) fn(i);
    return;
  }
  auto st = std::make_shared<ForState>();
  st->count = count;
  st->fn = &fn;
  size_t helpers = std::min(workers_.size(), count - 1);
  st->activeRunners = helpers;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (size_t h = 0; h < helpers; ++h) {
      queue_.emplace_back([st] {
        st->drain();
        std::lock_guard<std::mutex> lk2(st->mu);
        if (--st->activeRunners == 0) st->done.notify_all();
      });
    }
  }
  cv_.notify_all();
  st->drain();
  std::unique_lock<std::mutex> lk(st->mu);
  // Helpers still queued behind other callers' work find no indices left and return at once.
  st->done.wait(lk, [&] { return st->activeRunners == 0; });
  if (st->error) std::rethrow_exception(st->error);
}

}  // namespace shoal
