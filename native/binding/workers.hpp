// Slow native work (loads, restores, inference) runs on libuv worker threads and settles a promise.
// The worker holds a shared_ptr to the runtime, so a collected or replaced JS runtime object cannot free
// memory that in-flight work still uses.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>

#include "convert.hpp"

namespace shoal::binding {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Resolve = std::function<Napi::Value(Napi::Env)>;

  /** Queues `work` on a worker thread; `resolve` builds the result on the JS thread. Returns the promise. */
  static Napi::Promise start(Napi::Env env, std::shared_ptr<void> keepAlive, Work work, Resolve resolve);

 protected:
  void Execute() override;
  void OnOK() override;

 private:
  PromiseWorker(Napi::Env env, std::shared_ptr<void> keepAlive, Work work, Resolve resolve);
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<void> keepAlive_;
  Work work_;
  Resolve resolve_;
  CapturedError error_;
};

}  // namespace shoal::binding
