// JS <-> C++ conversion for the addon: argument checks (one line each, naming the argument and the bad
// value), result objects, and the conversion of core exceptions into JS errors with stable codes.
#pragma once
#include <napi.h>

#include <cstdint>
#include <exception>
#include <string>

#include "shoal/backend.hpp"
#include "shoal/blob_registry.hpp"
#include "shoal/family.hpp"
#include "shoal/pool.hpp"
#include "shoal/runtime.hpp"

namespace shoal::binding {

// ---- arguments: TypeError for the wrong type, RangeError for the wrong value ----
uint32_t u32Arg(const Napi::CallbackInfo& info, size_t i, const char* name);
int32_t i32Arg(const Napi::CallbackInfo& info, size_t i, const char* name);
/** A non-negative integer below 2^53 (byte counts, 64-bit handles). */
uint64_t u64Arg(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string stringArg(const Napi::CallbackInfo& info, size_t i, const char* name);
bool boolArg(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Object objectArg(const Napi::CallbackInfo& info, size_t i, const char* name);

/** A FamilySpec from the normalised manifest object the TypeScript loader builds. */
FamilySpec familySpecFrom(const Napi::Object& o);
RuntimeOptions runtimeOptionsFrom(const Napi::Object& o);

// ---- results ----
Napi::Object toJs(Napi::Env env, const DeviceInfo& d);
Napi::Object toJs(Napi::Env env, const PoolStats& s);
Napi::Object toJs(Napi::Env env, const BlobInfo& b);
Napi::Object toJs(Napi::Env env, const RegistryStats& s);
Napi::Object toJs(Napi::Env env, const FamilyStats& s);
Napi::Object toJs(Napi::Env env, const BackendReport& r);

// ---- errors ----
/** A core exception captured on a worker thread, rebuilt into a JS error on the main thread. */
struct CapturedError {
  bool set = false;
  std::string code;  // ERR_OUT_OF_MEMORY, ERR_INVALID_HANDLE, ...
  std::string message;
  bool oom = false;
  std::string scope;
  uint64_t requested = 0, used = 0, budget = 0;
};
CapturedError capture(std::exception_ptr e);
Napi::Error toJsError(Napi::Env env, const CapturedError& c);

/** Runs an entry point body; any C++ exception becomes a thrown JS error (never a crash). */
template <typename F>
Napi::Value guard(Napi::Env env, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;  // already a JS error (argument checks)
  } catch (...) {
    throw toJsError(env, capture(std::current_exception()));
  }
}

}  // namespace shoal::binding
