// Caching allocator and pool budgets.
#include <string>

#include "shoal/errors.hpp"
#include "shoal/pool.hpp"
#include "test.hpp"

using namespace shoal;

TEST(size_classes_are_power_of_two_ish) {
  CHECK_EQ(sizeClassOf(1), 512ull);
  CHECK_EQ(sizeClassOf(512), 512ull);
  CHECK_EQ(sizeClassOf(513), 640ull);  // 512 + 128
  CHECK_EQ(sizeClassOf(1000), 1024ull);
  CHECK_EQ(sizeClassOf(1025), 1280ull);
  CHECK_EQ(sizeClassOf(1 << 20), uint64_t(1) << 20);
  for (uint64_t b = 1; b < 100000; b += 37) {
    uint64_t c = sizeClassOf(b);
    CHECK(c >= b);
    CHECK(c <= b + b / 4 + 512);  // at most 25% waste above the minimum class
  }
}

TEST(repeated_alloc_free_hits_the_cache) {
  auto be = makeHostBackend(1 << 24, 1);
  Pool p(1, *be, 0, 1 << 20);
  for (int i = 0; i < 100; ++i) {
    uint64_t h = p.alloc(3000);
    CHECK(p.pointer(h) != nullptr);
    p.free(h);
  }
  PoolStats s = p.stats();
  CHECK_EQ(s.cacheMisses, 1ull);
  CHECK_EQ(s.cacheHits, 99ull);
  CHECK_EQ(s.allocCount, 100ull);
  CHECK_EQ(s.used, 0ull);
  CHECK_EQ(s.cached, sizeClassOf(3000));
  CHECK_EQ(s.peak, sizeClassOf(3000));
  CHECK_EQ(be->devices()[0].freeBytes, (1ull << 24) - sizeClassOf(3000));
  p.emptyCache();
  CHECK_EQ(be->devices()[0].freeBytes, 1ull << 24);
}

TEST(budget_error_carries_requested_used_budget) {
  auto be = makeHostBackend(1 << 24, 1);
  Pool p(7, *be, 0, 4096);
  uint64_t a = p.alloc(2048);
  try {
    p.alloc(4000);
    CHECK(false);
  } catch (const OutOfMemory& e) {
    CHECK_EQ(e.requested, 4000ull);
    CHECK_EQ(e.used, 2048ull);
    CHECK_EQ(e.budget, 4096ull);
    CHECK(std::string(e.what()).find("pool 7") != std::string::npos);
  }
  p.free(a);
  uint64_t b = p.alloc(4000);  // frees the cached 2048 block to fit
  CHECK_EQ(p.stats().cached, 0ull);
  p.free(b);
}

TEST(double_free_is_an_invalid_handle) {
  auto be = makeHostBackend(1 << 20, 1);
  Pool p(1, *be, 0, 1 << 20);
  uint64_t h = p.alloc(10);
  p.free(h);
  CHECK_THROWS(p.free(h), Error);
  CHECK_THROWS(p.pointer(h), Error);
  CHECK_THROWS(p.free(12345), Error);
}

TEST(device_full_calls_pressure_callback_then_retries) {
  auto be = makeHostBackend(8192, 1);
  void* hog = be->rawAlloc(0, 6000);
  bool called = false;
  Pool p(1, *be, 0, 1 << 20, [&](uint64_t) { called = true; be->rawFree(0, hog, 6000); hog = nullptr; });
  uint64_t h = p.alloc(4096);
  CHECK(called);
  p.free(h);
}

TEST(live_blocks_are_returned_when_pool_is_destroyed) {
  auto be = makeHostBackend(1 << 20, 1);
  {
    Pool p(1, *be, 0, 1 << 20);
    p.alloc(1000);
    p.alloc(5000);
  }
  CHECK_EQ(be->devices()[0].freeBytes, 1ull << 20);
}

TEST(lease_handles_cannot_be_freed_by_the_caller) {
  auto be = makeHostBackend(1 << 24, 1);
  Pool p(1, *be, 0, 1 << 20);
  uint64_t mine = p.alloc(100);
  {
    Pool::Lease lease(p);
    float* w = static_cast<float*>(lease.take(4000));
    w[999] = 1.f;  // the whole block is usable
    CHECK(lease.take(0) != nullptr);
    CHECK_EQ(lease.handles().size(), size_t(2));
    CHECK_EQ(p.stats().liveBlocks, 3ull);
    for (uint64_t h : lease.handles()) {
      // The handle is live and visible, but it is the lease's: a JS poolFree() of it must be an error,
      // never a free that leaves the lease to double-free (and abort) when the call ends.
      try {
        p.free(h);
        CHECK(false);
      } catch (const Error& e) {
        CHECK(e.code() == ErrorCode::InvalidHandle);
        CHECK(std::string(e.what()).find("owned by an in-flight inference workspace") != std::string::npos);
      }
      CHECK(p.pointer(h) != nullptr);
    }
  }
  PoolStats s = p.stats();
  CHECK_EQ(s.liveBlocks, 1ull);  // the lease returned its blocks; the caller's block is untouched
  CHECK_EQ(s.used, sizeClassOf(100));
  p.free(mine);
  CHECK_THROWS(p.free(mine), Error);
}

TEST(lease_over_budget_returns_what_it_took) {
  auto be = makeHostBackend(1 << 24, 1);
  Pool p(1, *be, 0, 4096);
  {
    Pool::Lease lease(p);
    lease.take(2048);
    CHECK_THROWS(lease.take(4096), OutOfMemory);
    CHECK_EQ(lease.handles().size(), size_t(1));
  }
  CHECK_EQ(p.stats().used, 0ull);
}
