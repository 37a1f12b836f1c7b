// Runtime handle tables: unknown, destroyed and released handles raise InvalidHandle; backend reporting.
#include "fixtures.hpp"
#include "shoal/errors.hpp"
#include "shoal/runtime.hpp"
#include "test.hpp"

using namespace shoal;

static Runtime hostRuntime(uint64_t capacity = 1 << 20) {
  RuntimeOptions o;
  o.backend = "host";
  o.hostCapacityBytes = capacity;
  o.threads = 1;
  return Runtime(o);
}

static bool isInvalidHandle(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code() == ErrorCode::InvalidHandle;
  }
  return false;
}

TEST(backend_report_names_the_fallback) {
  RuntimeOptions o;
  o.backend = "auto";
  o.threads = 1;
  Runtime rt(o);
  const BackendReport& r = rt.report();
  CHECK_EQ(r.cudaCompiledIn, cudaCompiledIn());
  if (r.active == "host") {
    CHECK(!r.cudaFallbackReason.empty());  // auto fell back: the report says why
  } else {
    // auto found a device: only a CUDA build can, nothing is reported as a fallback, and the devices are GPUs.
    CHECK(r.active == "cuda");
    CHECK(r.cudaCompiledIn);
    CHECK(r.cudaFallbackReason.empty());
    auto gpus = rt.backend().devices();
    CHECK(!gpus.empty());
    CHECK(gpus[0].backend == "cuda");
    CHECK(gpus[0].totalBytes > 0);
    CHECK_EQ(rt.deviceCount(), int(gpus.size()));
  }
  Runtime host = hostRuntime();
  CHECK(host.report().active == "host");
  CHECK(host.report().cudaFallbackReason == "host backend requested");
  auto d = host.backend().devices();
  CHECK_EQ(d.size(), size_t(1));
  CHECK_EQ(d[0].totalBytes, 1ull << 20);
  RuntimeOptions bad;
  bad.backend = "tpu";
  CHECK_THROWS(Runtime{bad}, Error);
  // Asked for CUDA explicitly: the device auto found, or an error, never a silent fallback to the host.
  RuntimeOptions cuda;
  cuda.backend = "cuda";
  cuda.threads = 1;
  if (r.active == "cuda") {
    Runtime explicitCuda(cuda);
    CHECK(explicitCuda.report().active == "cuda");
    CHECK(explicitCuda.report().cudaFallbackReason.empty());
  } else {
    try {
      Runtime{cuda};
      CHECK(false);
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(r.cudaFallbackReason) != std::string::npos);  // the same reason, named
    }
  }
}

TEST(unknown_and_destroyed_handles_are_invalid) {
  Runtime rt = hostRuntime();
  CHECK(isInvalidHandle([&] { rt.pool(99); }));
  CHECK(isInvalidHandle([&] { rt.family(1); }));
  CHECK(isInvalidHandle([&] { rt.releaseFamily(1); }));
  uint32_t p = rt.createPool(4096, 0);
  uint64_t h = rt.pool(p)->alloc(100);
  rt.pool(p)->free(h);
  CHECK(isInvalidHandle([&] { rt.pool(p)->free(h); }));
  rt.destroyPool(p);
  CHECK(isInvalidHandle([&] { rt.destroyPool(p); }));
  CHECK(isInvalidHandle([&] { rt.pool(p); }));
  CHECK_THROWS(rt.createPool(4096, 1), Error);
  CHECK_THROWS(rt.blobs(1), Error);
  CHECK_THROWS(rt.blobs(-1), Error);
}

TEST(pool_budget_through_runtime) {
  Runtime rt = hostRuntime(1 << 20);
  uint32_t p = rt.createPool(8192, 0);
  auto pool = rt.pool(p);
  pool->alloc(6000);
  try {
    pool->alloc(3000);
    CHECK(false);
  } catch (const OutOfMemory& e) {
    CHECK_EQ(e.requested, 3000ull);
    CHECK_EQ(e.used, sizeClassOf(6000));
    CHECK_EQ(e.budget, 8192ull);
  }
  CHECK_THROWS(pool->alloc(uint64_t(1) << 60), OutOfMemory);
  CHECK_THROWS(pool->alloc(0), Error);
  // Destroying the pool returns its live blocks to the device.
  rt.destroyPool(p);
  pool.reset();
  CHECK_EQ(rt.backend().devices()[0].freeBytes, 1ull << 20);
}

TEST(shared_host_blob_counts_against_capacity) {
  Runtime rt = hostRuntime(1 << 16);
  auto img = writeSafetensors({{"w", {{1000}, std::vector<float>(1000, 1.f)}}});
  const std::string name = "test-rt-shared-" + std::to_string(getpid());
  rt.blobs().loadBuffer(name, img.data(), img.size(), true);
  CHECK_EQ(rt.backend().devices()[0].freeBytes, (1ull << 16) - img.size());
  rt.blobs().drop(name);
  CHECK_EQ(rt.backend().devices()[0].freeBytes, 1ull << 16);
}
