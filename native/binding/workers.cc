#include "workers.hpp"

namespace shoal::binding {

PromiseWorker::PromiseWorker(Napi::Env env, std::shared_ptr<void> keepAlive, Work work, Resolve resolve)
    : Napi::AsyncWorker(env, "shoal:native"),
      deferred_(Napi::Promise::Deferred::New(env)),
      keepAlive_(std::move(keepAlive)),
      work_(std::move(work)),
      resolve_(std::move(resolve)) {}

Napi::Promise PromiseWorker::start(Napi::Env env, std::shared_ptr<void> keepAlive, Work work, Resolve resolve) {
  auto* w = new PromiseWorker(env, std::move(keepAlive), std::move(work), std::move(resolve));
  Napi::Promise p = w->deferred_.Promise();
  w->Queue();  // the worker deletes itself after OnOK
  return p;
}

void PromiseWorker::Execute() {
  // Every exception is captured here and rebuilt on the JS thread: none may escape a libuv thread.
  try {
    work_();
  } catch (...) {
    error_ = capture(std::current_exception());
  }
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  if (error_.set) {
    deferred_.Reject(toJsError(env, error_).Value());
    return;
  }
  try {
    deferred_.Resolve(resolve_(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (...) {
    deferred_.Reject(toJsError(env, capture(std::current_exception())).Value());
  }
}

}  // namespace shoal::binding
