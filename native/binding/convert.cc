#include "convert.hpp"

#include <cmath>

#include "shoal/errors.hpp"

namespace shoal::binding {

namespace {

constexpr double kMaxSafe = 9007199254740991.0;  // 2^53 - 1

std::string describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) return std::to_string(v.As<Napi::Number>().DoubleValue());
  if (v.IsString()) return "\"" + v.As<Napi::String>().Utf8Value() + "\"";
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsArray()) return "array";
  if (v.IsTypedArray()) return "typed array";
  if (v.IsFunction()) return "function";
  return "object";
}

[[noreturn]] void typeError(Napi::Env env, const char* name, const char* want, const Napi::Value& got) {
  Napi::TypeError e = Napi::TypeError::New(env, std::string(name) + " must be " + want + ", got " + describe(got));
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw e;
}

[[noreturn]] void rangeError(Napi::Env env, const char* name, const char* want, const Napi::Value& got) {
  Napi::RangeError e = Napi::RangeError::New(env, std::string(name) + " must be " + want + ", got " + describe(got));
  e.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw e;
}

double integerArg(const Napi::CallbackInfo& info, size_t i, const char* name, double lo, double hi, const char* want) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) typeError(info.Env(), name, "a number", v);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < lo || d > hi) rangeError(info.Env(), name, want, v);
  return d;
}

Napi::Value field(const Napi::Object& o, const char* key, const char* path) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) {
    Napi::TypeError e = Napi::TypeError::New(o.Env(), std::string(path) + "." + key + " is required");
    e.Set("code", Napi::String::New(o.Env(), "ERR_INVALID_ARG_TYPE"));
    throw e;
  }
  return v;
}

std::string str(const Napi::Object& o, const char* key, const std::string& path) {
  Napi::Value v = field(o, key, path.c_str());
  if (!v.IsString()) typeError(o.Env(), (path + "." + key).c_str(), "a string", v);
  return v.As<Napi::String>().Utf8Value();
}

std::string optStr(const Napi::Object& o, const char* key, const std::string& path) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return "";
  if (!v.IsString()) typeError(o.Env(), (path + "." + key).c_str(), "a string", v);
  return v.As<Napi::String>().Utf8Value();
}

double num(const Napi::Object& o, const char* key, const std::string& path) {
  Napi::Value v = field(o, key, path.c_str());
  if (!v.IsNumber()) typeError(o.Env(), (path + "." + key).c_str(), "a number", v);
  return v.As<Napi::Number>().DoubleValue();
}

Napi::Array arr(const Napi::Object& o, const char* key, const std::string& path) {
  Napi::Value v = field(o, key, path.c_str());
  if (!v.IsArray()) typeError(o.Env(), (path + "." + key).c_str(), "an array", v);
  return v.As<Napi::Array>();
}

Napi::Object objAt(const Napi::Array& a, uint32_t i, const std::string& path) {
  Napi::Value v = a.Get(i);
  if (!v.IsObject()) typeError(a.Env(), (path + "[" + std::to_string(i) + "]").c_str(), "an object", v);
  return v.As<Napi::Object>();
}

LayerSpec layerFrom(const Napi::Object& o, const std::string& path) {
  LayerSpec l;
  l.weight = str(o, "weight", path);
  l.bias = optStr(o, "bias", path);
  l.act = parseActivation(optStr(o, "activation", path));
  return l;
}

}  // namespace

uint32_t u32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return static_cast<uint32_t>(integerArg(info, i, name, 0, 4294967295.0, "an integer in [0, 2^32)"));
}

int32_t i32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return static_cast<int32_t>(integerArg(info, i, name, -2147483648.0, 2147483647.0, "a 32-bit integer"));
}

uint64_t u64Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return static_cast<uint64_t>(integerArg(info, i, name, 0, kMaxSafe, "an integer in [0, 2^53)"));
}

std::string stringArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) typeError(info.Env(), name, "a string", info[i]);
  return info[i].As<Napi::String>().Utf8Value();
}

bool boolArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBoolean()) typeError(info.Env(), name, "a boolean", info[i]);
  return info[i].As<Napi::Boolean>().Value();
}

Napi::Object objectArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsObject()) typeError(info.Env(), name, "an object", info[i]);
  return info[i].As<Napi::Object>();
}

FamilySpec familySpecFrom(const Napi::Object& o) {
  FamilySpec s;
  s.name = str(o, "name", "family");
  s.baseBlob = str(o, "baseBlob", "family");
  s.basePath = optStr(o, "basePath", "family");
  Napi::Array layers = arr(o, "layers", "family");
  for (uint32_t i = 0; i < layers.Length(); ++i) {
    const std::string p = "family.layers[" + std::to_string(i) + "]";
    s.layers.push_back(layerFrom(objAt(layers, i, "family.layers"), p));
  }
  Napi::Array variants = arr(o, "variants", "family");
  for (uint32_t i = 0; i < variants.Length(); ++i) {
    const std::string p = "family.variants[" + std::to_string(i) + "]";
    Napi::Object vo = objAt(variants, i, "family.variants");
    VariantSpec v;
    v.id = str(vo, "id", p);
    v.blob = str(vo, "blob", p);
    v.path = optStr(vo, "path", p);
    Napi::Array loras = arr(vo, "loras", p);
    for (uint32_t j = 0; j < loras.Length(); ++j) {
      const std::string lp = p + ".loras[" + std::to_string(j) + "]";
      Napi::Object lo = objAt(loras, j, p + ".loras");
      LoraSpec l;
      l.layer = static_cast<int>(num(lo, "layer", lp));
      l.a = str(lo, "a", lp);
      l.b = str(lo, "b", lp);
      l.scale = static_cast<float>(num(lo, "scale", lp));
      v.loras.push_back(l);
    }
    Napi::Value head = vo.Get("head");
    if (head.IsObject()) {
      v.hasHead = true;
      v.head = layerFrom(head.As<Napi::Object>(), p + ".head");
    }
    s.variants.push_back(std::move(v));
  }
  return s;
}

RuntimeOptions runtimeOptionsFrom(const Napi::Object& o) {
  RuntimeOptions r;
  r.backend = str(o, "backend", "options");
  r.hostCapacityBytes = static_cast<uint64_t>(num(o, "hostCapacityBytes", "options"));
  r.threads = static_cast<unsigned>(num(o, "threads", "options"));
  return r;
}

Napi::Object toJs(Napi::Env env, const DeviceInfo& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("index", d.index);
  o.Set("name", d.name);
  o.Set("backend", d.backend);
  o.Set("ccMajor", d.ccMajor);
  o.Set("ccMinor", d.ccMinor);
  o.Set("totalBytes", static_cast<double>(d.totalBytes));
  o.Set("freeBytes", static_cast<double>(d.freeBytes));
  return o;
}

Napi::Object toJs(Napi::Env env, const PoolStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("budgetBytes", static_cast<double>(s.budget));
  o.Set("usedBytes", static_cast<double>(s.used));
  o.Set("requestedBytes", static_cast<double>(s.requested));
  o.Set("cachedBytes", static_cast<double>(s.cached));
  o.Set("reservedBytes", static_cast<double>(s.reserved));
  o.Set("peakBytes", static_cast<double>(s.peak));
  o.Set("allocCount", static_cast<double>(s.allocCount));
  o.Set("freeCount", static_cast<double>(s.freeCount));
  o.Set("cacheHits", static_cast<double>(s.cacheHits));
  o.Set("cacheMisses", static_cast<double>(s.cacheMisses));
  o.Set("liveBlocks", static_cast<double>(s.liveBlocks));
  return o;
}

Napi::Object toJs(Napi::Env env, const BlobInfo& b) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", b.name);
  o.Set("bytes", static_cast<double>(b.bytes));
  o.Set("refs", b.refs);
  o.Set("state", b.state);
  o.Set("shared", b.shared);
  o.Set("attached", b.attached);
  o.Set("tensors", b.tensors);
  o.Set("evictions", static_cast<double>(b.evictions));
  o.Set("restores", static_cast<double>(b.restores));
  return o;
}

Napi::Object toJs(Napi::Env env, const RegistryStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("blobs", static_cast<double>(s.blobs));
  o.Set("refs", static_cast<double>(s.refs));
  o.Set("residentBytes", static_cast<double>(s.residentBytes));
  o.Set("idleBytes", static_cast<double>(s.idleBytes));
  o.Set("evictedBytes", static_cast<double>(s.evictedBytes));
  o.Set("retired", static_cast<double>(s.retired));
  o.Set("loads", static_cast<double>(s.loads));
  o.Set("dedupedLoads", static_cast<double>(s.dedupedLoads));
  o.Set("reloads", static_cast<double>(s.reloads));
  o.Set("rehashedLoads", static_cast<double>(s.rehashedLoads));
  o.Set("evictions", static_cast<double>(s.evictions));
  o.Set("restores", static_cast<double>(s.restores));
  return o;
}

Napi::Object toJs(Napi::Env env, const FamilyStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("batches", static_cast<double>(s.batches));
  o.Set("rows", static_cast<double>(s.rows));
  o.Set("variantGroups", static_cast<double>(s.variantGroups));
  o.Set("baseGemms", static_cast<double>(s.baseGemms));
  o.Set("adapterGemms", static_cast<double>(s.adapterGemms));
  o.Set("headGemms", static_cast<double>(s.headGemms));
  return o;
}

Napi::Object toJs(Napi::Env env, const BackendReport& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("active", r.active);
  o.Set("cudaCompiledIn", r.cudaCompiledIn);
  o.Set("cudaFallbackReason", r.cudaFallbackReason);
  o.Set("threads", r.threads);
  return o;
}

CapturedError capture(std::exception_ptr e) {
  CapturedError c;
  c.set = true;
  try {
    std::rethrow_exception(e);
  } catch (const OutOfMemory& oom) {
    c.code = errorCodeName(oom.code());
    c.message = oom.what();
    c.oom = true;
    c.scope = oom.scope;
    c.requested = oom.requested;
    c.used = oom.used;
    c.budget = oom.budget;
  } catch (const Error& err) {
    c.code = errorCodeName(err.code());
    c.message = err.what();
  } catch (const std::bad_alloc&) {
    c.code = "ERR_OUT_OF_MEMORY";
    c.message = "host memory exhausted (std::bad_alloc)";
  } catch (const std::exception& err) {
    c.code = "ERR_BACKEND";
    c.message = err.what();
  } catch (...) {
    c.code = "ERR_BACKEND";
    c.message = "unknown native exception";
  }
  return c;
}

Napi::Error toJsError(Napi::Env env, const CapturedError& c) {
  Napi::Error e = Napi::Error::New(env, c.message);
  e.Set("code", Napi::String::New(env, c.code));
  if (c.oom) {
    e.Set("scope", Napi::String::New(env, c.scope));
    e.Set("requested", Napi::Number::New(env, static_cast<double>(c.requested)));
    e.Set("used", Napi::Number::New(env, static_cast<double>(c.used)));
    e.Set("budget", Napi::Number::New(env, static_cast<double>(c.budget)));
  }
  return e;
}

}  // namespace shoal::binding
