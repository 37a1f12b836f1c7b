// Blob registry: load-once, reference counts, LRU eviction to host memory and restore on acquire.
#include <cstdio>

#include "fixtures.hpp"
#include "shoal/blob_registry.hpp"
#include "shoal/errors.hpp"
#include "shoal/pool.hpp"
#include "test.hpp"

using namespace shoal;

static std::vector<uint8_t> image(float fill, size_t floats) {
  return writeSafetensors({{"w", {{static_cast<int64_t>(floats)}, std::vector<float>(floats, fill)}}});
}

TEST(same_blob_many_refs_occupies_memory_once) {
  auto be = makeHostBackend(1 << 20, 1);
  BlobRegistry reg(*be, 0);
  auto img = image(1.f, 1000);
  reg.loadBuffer("base", img.data(), img.size(), false);
  reg.loadBuffer("base", img.data(), img.size(), false);  // deduplicated
  std::vector<uint64_t> refs;
  for (int i = 0; i < 8; ++i) refs.push_back(reg.acquire("base"));
  RegistryStats s = reg.stats();
  CHECK_EQ(s.blobs, 1ull);
  CHECK_EQ(s.refs, 8ull);
  CHECK_EQ(s.residentBytes, uint64_t(img.size()));
  CHECK_EQ(s.dedupedLoads, 1ull);
  CHECK_EQ(be->devices()[0].freeBytes, (1ull << 20) - img.size());
  CHECK_EQ(reg.info("base").refs, 8u);
  for (auto r : refs) reg.release(r);
  CHECK_EQ(reg.info("base").refs, 0u);
  CHECK(reg.info("base").state == "resident");  // idle blobs stay cached
}

TEST(double_release_and_use_after_release_raise) {
  auto be = makeHostBackend(1 << 20, 1);
  BlobRegistry reg(*be, 0);
  auto img = image(2.f, 10);
  reg.loadBuffer("b", img.data(), img.size(), false);
  uint64_t r = reg.acquire("b");
  CHECK(reg.tensorF32(r, "w", {10})[3] == 2.f);
  reg.release(r);
  CHECK_THROWS(reg.release(r), Error);
  CHECK_THROWS(reg.view(r), Error);
  CHECK_THROWS(reg.tensorF32(r, "w", {10}), Error);
  CHECK_THROWS(reg.acquire("missing"), Error);
}

TEST(lru_eviction_and_restore) {
  auto one = image(1.f, 1000);  // ~4 KB each
  const uint64_t sz = one.size();
  auto be = makeHostBackend(sz * 3, 1);  // room for three blobs
  BlobRegistry reg(*be, 0);
  for (int i = 0; i < 3; ++i) {
    auto img = image(static_cast<float>(i), 1000);
    reg.loadBuffer("b" + std::to_string(i), img.data(), img.size(), false);
  }
  uint64_t held = reg.acquire("b0");  // b0 in use; b1 is least recently used idle, then b2
  auto img3 = image(3.f, 1000);
  reg.loadBuffer("b3", img3.data(), img3.size(), false);
  CHECK(reg.info("b1").state == "evicted");
  CHECK(reg.info("b2").state == "resident");
  CHECK(reg.info("b0").state == "resident");
  CHECK_EQ(reg.stats().evictedBytes, sz);
  // Restoring b1 needs room: b2 (LRU idle) goes out, b1 comes back with its bytes intact.
  uint64_t r1 = reg.acquire("b1");
  CHECK(reg.info("b1").state == "resident");
  CHECK_EQ(reg.info("b1").restores, 1ull);
  CHECK(reg.info("b2").state == "evicted");
  CHECK(reg.tensorF32(r1, "w", {1000})[999] == 1.f);
  // Every blob held: nothing can be evicted, so the next load fails with OutOfMemory.
  uint64_t r3 = reg.acquire("b3");
  auto img4 = image(4.f, 1000);
  CHECK_THROWS(reg.loadBuffer("b4", img4.data(), img4.size(), false), OutOfMemory);
  reg.release(held);
  reg.release(r1);
  reg.release(r3);
}

TEST(pool_pressure_evicts_idle_blobs) {
  auto img = image(1.f, 1000);
  auto be = makeHostBackend(img.size() + 1024, 1);
  BlobRegistry reg(*be, 0);
  reg.loadBuffer("idle", img.data(), img.size(), false);
  Pool p(1, *be, 0, 1 << 20, [&](uint64_t b) { reg.evictFor(b); });
  uint64_t h = p.alloc(2048);
  CHECK(reg.info("idle").state == "evicted");
  p.free(h);
}

TEST(load_from_file_and_bad_file) {
  auto be = makeHostBackend(1 << 20, 1);
  BlobRegistry reg(*be, 0);
  std::string path = fx::writeFile("blob.safetensors", {{"x", {{2, 2}, {1, 2, 3, 4}}}});
  BlobInfo i = reg.loadFile("f", path, false);
  CHECK_EQ(i.tensors, 1u);
  uint64_t r = reg.acquire("f");
  std::vector<int64_t> shape;
  const float* x = reg.tensorF32(r, "x", {}, &shape);
  CHECK(shape == std::vector<int64_t>({2, 2}));
  CHECK(x[3] == 4.f);
  CHECK_THROWS(reg.tensorF32(r, "x", {4}), Error);
  CHECK_THROWS(reg.tensorF32(r, "nope", {}), Error);
  reg.release(r);
  CHECK_THROWS(reg.loadFile("g", "/nonexistent/file", false), Error);
  std::remove(path.c_str());
}
