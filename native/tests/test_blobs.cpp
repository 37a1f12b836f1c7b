// Blob registry: load-once, reference counts, LRU eviction to host memory and restore on acquire.
#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "content_hash.hpp"
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

// ---- identity: a name is deduplicated only while its content is the same ----

namespace {

float firstWeight(BlobRegistry& reg, const std::string& name) {
  uint64_t r = reg.acquire(name);
  float v = reg.tensorF32(r, "w", {})[0];
  reg.release(r);
  return v;
}

void writeImage(const std::string& path, const std::vector<uint8_t>& img) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(img.data()), static_cast<std::streamsize>(img.size()));
}

}  // namespace

TEST(rewritten_file_under_the_same_name_serves_the_new_weights) {
  auto be = makeHostBackend(1 << 20, 1);
  BlobRegistry reg(*be, 0);
  const std::string path = fx::tempPath("redeploy.safetensors");
  writeImage(path, image(1.f, 100));
  reg.loadFile("w", path, false);
  CHECK(firstWeight(reg, "w") == 1.f);
  // Same size, same name, rewritten in place at once: the stamp may not even change at coarse timestamp
  // granularity, so the content decides.
  writeImage(path, image(2.f, 100));
  BlobInfo i = reg.loadFile("w", path, false);
  CHECK_EQ(i.bytes, uint64_t(image(2.f, 100).size()));
  CHECK(firstWeight(reg, "w") == 2.f);
  RegistryStats s = reg.stats();
  CHECK_EQ(s.loads, 2ull);
  CHECK_EQ(s.reloads, 1ull);
  CHECK_EQ(s.blobs, 1ull);
  CHECK_EQ(s.retired, 0ull);  // the old blob was idle: freed, not parked
  CHECK_EQ(s.residentBytes, uint64_t(image(2.f, 100).size()));
  // Loading the unchanged file again is deduplicated.
  reg.loadFile("w", path, false);
  CHECK_EQ(reg.stats().loads, 2ull);
  CHECK_EQ(reg.stats().dedupedLoads, 1ull);
  // A different size is a different blob too.
  writeImage(path, image(3.f, 200));
  reg.loadFile("w", path, false);
  CHECK(firstWeight(reg, "w") == 3.f);
  CHECK_EQ(reg.info("w").bytes, uint64_t(image(3.f, 200).size()));
  reg.drop("w");
  CHECK_EQ(be->devices()[0].freeBytes, 1ull << 20);
  std::remove(path.c_str());
}

TEST(references_to_replaced_weights_keep_them_until_released) {
  auto be = makeHostBackend(1 << 20, 1);
  BlobRegistry reg(*be, 0);
  const std::string path = fx::tempPath("retire.safetensors");
  writeImage(path, image(1.f, 100));
  reg.loadFile("w", path, false);
  uint64_t old = reg.acquire("w");  // a family built on the old weights
  const float* oldW = reg.tensorF32(old, "w", {});
  writeImage(path, image(5.f, 100));
  reg.loadFile("w", path, false);
  CHECK(firstWeight(reg, "w") == 5.f);  // new acquires get the new bytes
  CHECK(oldW[99] == 1.f);               // the old holder still reads its own, intact
  CHECK(reg.tensorF32(old, "w", {})[0] == 1.f);
  const uint64_t sz = image(1.f, 100).size();
  CHECK_EQ(reg.stats().retired, 1ull);
  CHECK_EQ(reg.stats().residentBytes, 2 * sz);
  CHECK_EQ(be->devices()[0].freeBytes, (1ull << 20) - 2 * sz);
  CHECK_EQ(reg.info("w").refs, 0u);  // refs of the retired blob are not the new one's
  reg.release(old);                   // the last reference frees the retired bytes
  CHECK_EQ(reg.stats().retired, 0ull);
  CHECK_EQ(be->devices()[0].freeBytes, (1ull << 20) - sz);
  CHECK_THROWS(reg.release(old), Error);
  std::remove(path.c_str());
}

TEST(stamp_identity_skips_rereading_unchanged_old_files) {
  auto be = makeHostBackend(1 << 20, 1);
  // A zero racy window trusts any stamp, as a file last written long ago is trusted by default.
  BlobRegistry reg(*be, 0, std::chrono::nanoseconds(0));
  const std::string path = fx::tempPath("stamp.safetensors");
  writeImage(path, image(1.f, 100));
  reg.loadFile("w", path, false);
  for (int i = 0; i < 5; ++i) reg.loadFile("w", path, false);
  CHECK_EQ(reg.stats().dedupedLoads, 5ull);
  CHECK_EQ(reg.stats().rehashedLoads, 0ull);  // stat alone said "unchanged"
  // Another path with the same bytes: read and hashed, then deduplicated (no new memory).
  const std::string copy = fx::tempPath("stamp-copy.safetensors");
  writeImage(copy, image(1.f, 100));
  reg.loadFile("w", copy, false);
  CHECK_EQ(reg.stats().rehashedLoads, 1ull);
  CHECK_EQ(reg.stats().loads, 1ull);
  // A rewrite that restores the old mtime still changes ctime (and the content): detected.
  struct stat st {};
  CHECK(::stat(copy.c_str(), &st) == 0);
  writeImage(copy, image(9.f, 100));
  const timespec times[2] = {st.st_atim, st.st_mtim};
  CHECK(::utimensat(AT_FDCWD, copy.c_str(), times, 0) == 0);
  reg.loadFile("w", copy, false);
  CHECK(firstWeight(reg, "w") == 9.f);
  CHECK_EQ(reg.stats().reloads, 1ull);
  std::remove(path.c_str());
  std::remove(copy.c_str());
}

TEST(buffers_are_identified_by_content) {
  auto be = makeHostBackend(1 << 20, 1);
  BlobRegistry reg(*be, 0);
  auto a = image(1.f, 100), b = image(2.f, 100);
  reg.loadBuffer("buf", a.data(), a.size(), false);
  reg.loadBuffer("buf", a.data(), a.size(), false);
  CHECK_EQ(reg.stats().dedupedLoads, 1ull);
  reg.loadBuffer("buf", b.data(), b.size(), false);  // same size, other bytes: replaced, not ignored
  CHECK(firstWeight(reg, "buf") == 2.f);
  CHECK_EQ(reg.stats().reloads, 1ull);
  auto c = image(3.f, 50);
  reg.loadBuffer("buf", c.data(), c.size(), false);  // another size (this used to be an error)
  CHECK(firstWeight(reg, "buf") == 3.f);
}

TEST(shared_blob_replaced_while_referenced_republishes_its_name) {
  auto be = makeHostBackend(1 << 20, 1);
  BlobRegistry reg(*be, 0);
  const std::string name = "test-blobs-republish-" + std::to_string(getpid());
  auto a = image(1.f, 100), b = image(2.f, 100);
  reg.loadBuffer(name, a.data(), a.size(), true);
  uint64_t held = reg.acquire(name);
  reg.loadBuffer(name, b.data(), b.size(), true);
  CHECK(reg.tensorF32(held, "w", {})[0] == 1.f);
  // Another process attaching now maps the new bytes.
  auto be2 = makeHostBackend(1 << 20, 1);
  BlobRegistry other(*be2, 0);
  other.attachShared(name);
  CHECK(firstWeight(other, name) == 2.f);
  // A process holding an old version cannot silently map the other one's different bytes.
  BlobRegistry third(*be2, 0);
  CHECK_THROWS(third.loadBuffer(name, a.data(), a.size(), true), Error);
  reg.release(held);
  CHECK_EQ(reg.stats().retired, 0ull);
  reg.drop(name);
}

TEST(crafted_file_is_refused_before_taking_memory) {
  auto be = makeHostBackend(1 << 20, 1);
  BlobRegistry reg(*be, 0);
  // 2^62 + 1 F32 elements in 4 bytes: before the checked sizes, this loaded and a GEMM read far past it.
  const std::string json = R"({"w":{"dtype":"F32","shape":[4611686018427387905],"data_offsets":[0,4]}})";
  std::vector<uint8_t> img(8 + json.size() + 4, 0);
  img[0] = static_cast<uint8_t>(json.size());
  std::memcpy(img.data() + 8, json.data(), json.size());
  const std::string path = fx::tempPath("crafted.safetensors");
  writeImage(path, img);
  CHECK_THROWS(reg.loadFile("c", path, false), Error);
  CHECK_EQ(reg.stats().blobs, 0ull);
  CHECK_EQ(be->devices()[0].freeBytes, 1ull << 20);
  CHECK_THROWS(reg.loadFile("c", "/tmp", false), Error);  // a directory is not a weights file
  std::remove(path.c_str());
}

TEST(content_hash_is_xxh64) {
  // Reference values of XXH64 with seed 0: the hash that tells two versions of a blob apart.
  CHECK_EQ(contentHash("", 0), 0xEF46DB3751D8E999ull);
  CHECK_EQ(contentHash("a", 1), 0xD24EC4F1A98C6E5Bull);
  const char* s = "Nobody inspects the spammish repetition";
  CHECK_EQ(contentHash(s, std::strlen(s)), 0xFBCEA83C8A378BF1ull);
  auto a = image(1.f, 100), b = image(1.f, 100);
  b[b.size() - 1] ^= 1;  // one bit of one weight
  CHECK(contentHash(a.data(), a.size()) != contentHash(b.data(), b.size()));
}
