// The N-API surface: one Runtime class whose methods take primitives and handles. Arguments are validated
// and normalised in TypeScript (packages/native/src); here every argument is still checked (one line each)
// so a misuse is a JS TypeError/RangeError, and every entry point converts core exceptions into JS errors.
#include <napi.h>

#include <cstring>
#include <memory>
#include <vector>

#include "convert.hpp"
#include "shoal/errors.hpp"
#include "shoal/runtime.hpp"
#include "workers.hpp"

namespace shoal::binding {

namespace {

template <typename T>
std::vector<T> typedArrayArg(const Napi::CallbackInfo& info, size_t i, const char* name, napi_typedarray_type type,
                             const char* want) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    Napi::TypeError e = Napi::TypeError::New(info.Env(), std::string(name) + " must be " + want);
    e.Set("code", Napi::String::New(info.Env(), "ERR_INVALID_ARG_TYPE"));
    throw e;
  }
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  std::vector<T> out(ta.ElementLength());
  // Copied on the JS thread: the worker never touches memory the garbage collector may move or free.
  if (!out.empty()) {
    const uint8_t* base = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    std::memcpy(out.data(), base, out.size() * sizeof(T));
  }
  return out;
}

class RuntimeWrap : public Napi::ObjectWrap<RuntimeWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Runtime",
                       {
                           InstanceMethod<&RuntimeWrap::report>("report"),
                           InstanceMethod<&RuntimeWrap::devices>("devices"),
                           InstanceMethod<&RuntimeWrap::createPool>("createPool"),
                           InstanceMethod<&RuntimeWrap::destroyPool>("destroyPool"),
                           InstanceMethod<&RuntimeWrap::poolAlloc>("poolAlloc"),
                           InstanceMethod<&RuntimeWrap::poolFree>("poolFree"),
                           InstanceMethod<&RuntimeWrap::poolStats>("poolStats"),
                           InstanceMethod<&RuntimeWrap::poolEmptyCache>("poolEmptyCache"),
                           InstanceMethod<&RuntimeWrap::loadBlobBuffer>("loadBlobBuffer"),
                           InstanceMethod<&RuntimeWrap::loadBlobFile>("loadBlobFile"),
                           InstanceMethod<&RuntimeWrap::attachBlob>("attachBlob"),
                           InstanceMethod<&RuntimeWrap::acquireBlob>("acquireBlob"),
                           InstanceMethod<&RuntimeWrap::releaseBlob>("releaseBlob"),
                           InstanceMethod<&RuntimeWrap::blobInfo>("blobInfo"),
                           InstanceMethod<&RuntimeWrap::listBlobs>("listBlobs"),
                           InstanceMethod<&RuntimeWrap::blobStats>("blobStats"),
                           InstanceMethod<&RuntimeWrap::evictBlob>("evictBlob"),
                           InstanceMethod<&RuntimeWrap::dropBlob>("dropBlob"),
                           InstanceMethod<&RuntimeWrap::loadFamily>("loadFamily"),
                           InstanceMethod<&RuntimeWrap::runFamily>("runFamily"),
                           InstanceMethod<&RuntimeWrap::familyStats>("familyStats"),
                           InstanceMethod<&RuntimeWrap::releaseFamily>("releaseFamily"),
                       });
  }

  explicit RuntimeWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RuntimeWrap>(info) {
    guard(info.Env(), [&]() -> Napi::Value {
      rt_ = std::make_shared<Runtime>(runtimeOptionsFrom(objectArg(info, 0, "options")));
      return info.Env().Undefined();
    });
  }

 private:
  Napi::Value report(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value { return toJs(info.Env(), rt_->report()); });
  }

  Napi::Value devices(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto ds = rt_->backend().devices();
      Napi::Array a = Napi::Array::New(info.Env(), ds.size());
      for (uint32_t i = 0; i < ds.size(); ++i) a.Set(i, toJs(info.Env(), ds[i]));
      return a;
    });
  }

  // ---- pools ----
  Napi::Value createPool(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      const uint64_t budget = u64Arg(info, 0, "budgetBytes");
      const int32_t device = i32Arg(info, 1, "device");
      return Napi::Number::New(info.Env(), rt_->createPool(budget, device));
    });
  }
  Napi::Value destroyPool(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      rt_->destroyPool(u32Arg(info, 0, "pool"));
      return info.Env().Undefined();
    });
  }
  Napi::Value poolAlloc(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto pool = rt_->pool(u32Arg(info, 0, "pool"));
      return Napi::Number::New(info.Env(), static_cast<double>(pool->alloc(u64Arg(info, 1, "bytes"))));
    });
  }
  Napi::Value poolFree(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      rt_->pool(u32Arg(info, 0, "pool"))->free(u64Arg(info, 1, "allocation"));
      return info.Env().Undefined();
    });
  }
  Napi::Value poolStats(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value { return toJs(info.Env(), rt_->pool(u32Arg(info, 0, "pool"))->stats()); });
  }
  Napi::Value poolEmptyCache(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      rt_->pool(u32Arg(info, 0, "pool"))->emptyCache();
      return info.Env().Undefined();
    });
  }

  // ---- blobs ----
  Napi::Value loadBlobBuffer(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::string name = stringArg(info, 0, "name");
      BlobRegistry* reg = &rt_->blobs(i32Arg(info, 1, "device"));
      auto bytes = std::make_shared<std::vector<uint8_t>>(
          typedArrayArg<uint8_t>(info, 2, "data", napi_uint8_array, "a Uint8Array or Buffer"));
      const bool shared = boolArg(info, 3, "shared");
      auto out = std::make_shared<BlobInfo>();
      return PromiseWorker::start(
          info.Env(), rt_, [=] { *out = reg->loadBuffer(name, bytes->data(), bytes->size(), shared); },
          [out](Napi::Env env) -> Napi::Value { return toJs(env, *out); });
    });
  }
  Napi::Value loadBlobFile(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::string name = stringArg(info, 0, "name");
      BlobRegistry* reg = &rt_->blobs(i32Arg(info, 1, "device"));
      std::string path = stringArg(info, 2, "path");
      const bool shared = boolArg(info, 3, "shared");
      auto out = std::make_shared<BlobInfo>();
      return PromiseWorker::start(
          info.Env(), rt_, [=] { *out = reg->loadFile(name, path, shared); },
          [out](Napi::Env env) -> Napi::Value { return toJs(env, *out); });
    });
  }
  Napi::Value attachBlob(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::string name = stringArg(info, 0, "name");
      BlobRegistry* reg = &rt_->blobs(i32Arg(info, 1, "device"));
      auto out = std::make_shared<BlobInfo>();
      return PromiseWorker::start(
          info.Env(), rt_, [=] { *out = reg->attachShared(name); },
          [out](Napi::Env env) -> Napi::Value { return toJs(env, *out); });
    });
  }
  Napi::Value acquireBlob(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      std::string name = stringArg(info, 0, "name");
      BlobRegistry* reg = &rt_->blobs(i32Arg(info, 1, "device"));
      auto ref = std::make_shared<uint64_t>(0);
      // Acquire may restore an evicted blob (a host-to-device copy): off the JS thread.
      return PromiseWorker::start(
          info.Env(), rt_, [=] { *ref = reg->acquire(name); },
          [ref](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(*ref)); });
    });
  }
  Napi::Value releaseBlob(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      rt_->blobs(i32Arg(info, 0, "device")).release(u64Arg(info, 1, "ref"));
      return info.Env().Undefined();
    });
  }
  Napi::Value blobInfo(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      return toJs(info.Env(), rt_->blobs(i32Arg(info, 1, "device")).info(stringArg(info, 0, "name")));
    });
  }
  Napi::Value listBlobs(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto list = rt_->blobs(i32Arg(info, 0, "device")).list();
      Napi::Array a = Napi::Array::New(info.Env(), list.size());
      for (uint32_t i = 0; i < list.size(); ++i) a.Set(i, toJs(info.Env(), list[i]));
      return a;
    });
  }
  Napi::Value blobStats(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value { return toJs(info.Env(), rt_->blobs(i32Arg(info, 0, "device")).stats()); });
  }
  Napi::Value evictBlob(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      const bool done = rt_->blobs(i32Arg(info, 1, "device")).evict(stringArg(info, 0, "name"));
      return Napi::Boolean::New(info.Env(), done);
    });
  }
  Napi::Value dropBlob(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      rt_->blobs(i32Arg(info, 1, "device")).drop(stringArg(info, 0, "name"));
      return info.Env().Undefined();
    });
  }

  // ---- families ----
  Napi::Value loadFamily(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto spec = std::make_shared<FamilySpec>(familySpecFrom(objectArg(info, 0, "family")));
      const uint32_t pool = u32Arg(info, 1, "pool");
      std::shared_ptr<Runtime> rt = rt_;
      auto id = std::make_shared<uint32_t>(0);
      return PromiseWorker::start(
          info.Env(), rt_, [=] { *id = rt->loadFamily(*spec, pool); },
          [rt, id](Napi::Env env) -> Napi::Value {
            auto fam = rt->family(*id);
            Napi::Object o = Napi::Object::New(env);
            o.Set("id", *id);
            o.Set("inputDim", fam->inputDim());
            o.Set("outputDim", fam->outputDim());
            Napi::Array vs = Napi::Array::New(env, fam->variantCount());
            for (uint32_t i = 0; i < fam->variantCount(); ++i) vs.Set(i, fam->variantId(i));
            o.Set("variants", vs);
            return o;
          });
    });
  }
  Napi::Value runFamily(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      // The family is resolved now: releasing it while this batch runs cannot pull the weights away.
      std::shared_ptr<Family> fam = rt_->family(u32Arg(info, 0, "family"));
      auto x = std::make_shared<std::vector<float>>(
          typedArrayArg<float>(info, 1, "input", napi_float32_array, "a Float32Array"));
      auto var = std::make_shared<std::vector<int32_t>>(
          typedArrayArg<int32_t>(info, 2, "variants", napi_int32_array, "an Int32Array"));
      const size_t n = var->size();
      if (x->size() != n * static_cast<size_t>(fam->inputDim())) {
        Napi::RangeError e = Napi::RangeError::New(
            info.Env(), "input has " + std::to_string(x->size()) + " floats, expected rows=" + std::to_string(n) +
                            " x inputDim=" + std::to_string(fam->inputDim()));
        e.Set("code", Napi::String::New(info.Env(), "ERR_OUT_OF_RANGE"));
        throw e;
      }
      auto y = std::make_shared<std::vector<float>>();
      return PromiseWorker::start(
          info.Env(), rt_, [=] { *y = fam->infer(x->data(), static_cast<int>(n), var->data()); },
          [y](Napi::Env env) -> Napi::Value {
            Napi::Float32Array out = Napi::Float32Array::New(env, y->size());
            if (!y->empty()) std::memcpy(out.Data(), y->data(), y->size() * sizeof(float));
            return out;
          });
    });
  }
  Napi::Value familyStats(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value { return toJs(info.Env(), rt_->family(u32Arg(info, 0, "family"))->stats()); });
  }
  Napi::Value releaseFamily(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      rt_->releaseFamily(u32Arg(info, 0, "family"));
      return info.Env().Undefined();
    });
  }

  std::shared_ptr<Runtime> rt_;
};

}  // namespace

Napi::Object init(Napi::Env env, Napi::Object exports) {
  exports.Set("Runtime", RuntimeWrap::define(env));
  exports.Set("cudaCompiledIn", Napi::Boolean::New(env, cudaCompiledIn()));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace shoal::binding

// NODE_API_MODULE wants an unqualified name.
static Napi::Object shoalNativeInit(Napi::Env env, Napi::Object exports) { return shoal::binding::init(env, exports); }
NODE_API_MODULE(shoal_native, shoalNativeInit)
