// Concurrency: families run while other threads allocate from and free into the same pool, try to free the
// inference workspace's handles, load, evict, restore and drop blobs, redeploy a blob under a name that is
// still referenced, and load and release replicas. Every inference result is checked against a single-threaded
// baseline (the host kernels are deterministic, so equal means bit-equal), and at the end every byte is
// accounted for. CI also runs this binary under ThreadSanitizer (native/scripts/ci.sh, the "tsan" suite).
#include <atomic>
#include <mutex>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fixtures.hpp"
#include "shoal/errors.hpp"
#include "shoal/runtime.hpp"
#include "test.hpp"

using namespace shoal;

namespace {

constexpr int kIn = 32, kHidden = 64, kOut = 48, kHead = 8, kRank = 4, kVariants = 3, kRows = 64;
constexpr uint64_t kFillerBytes = 64 << 10;

struct Files {
  FamilySpec spec;
  ~Files() {
    std::remove(spec.basePath.c_str());
    for (auto& v : spec.variants) std::remove(v.path.c_str());
  }
};

void makeFamily(Files& f) {
  fx::Rng rng(11);
  FamilySpec& s = f.spec;
  s.name = "conc" + std::to_string(getpid());
  s.baseBlob = s.name + "/base";
  const int dims[] = {kIn, kHidden, kOut};
  fx::Tensors base;
  for (int l = 0; l < 2; ++l) {
    const std::string p = "l" + std::to_string(l);
    base.push_back({p + ".w", {{dims[l], dims[l + 1]}, rng.vec(size_t(dims[l]) * dims[l + 1], 0.2f)}});
    base.push_back({p + ".b", {{dims[l + 1]}, rng.vec(dims[l + 1], 0.1f)}});
    s.layers.push_back({p + ".w", p + ".b", l == 0 ? Activation::Relu : Activation::Gelu});
  }
  s.basePath = fx::writeFile(s.name + "-base.safetensors", base);
  for (int v = 0; v < kVariants; ++v) {
    VariantSpec vs;
    vs.id = "v" + std::to_string(v);
    vs.blob = s.name + "/" + vs.id;
    fx::Tensors t;
    for (int l = 0; l < 2; ++l) {
      const std::string a = "a" + std::to_string(l), b = "b" + std::to_string(l);
      t.push_back({a, {{dims[l], kRank}, rng.vec(size_t(dims[l]) * kRank, 0.2f)}});
      t.push_back({b, {{kRank, dims[l + 1]}, rng.vec(size_t(kRank) * dims[l + 1], 0.2f)}});
      vs.loras.push_back({l, a, b, 0.5f});
    }
    t.push_back({"h.w", {{kOut, kHead}, rng.vec(size_t(kOut) * kHead, 0.2f)}});
    t.push_back({"h.b", {{kHead}, rng.vec(kHead, 0.1f)}});
    vs.hasHead = true;
    vs.head = {"h.w", "h.b", Activation::None};
    vs.path = fx::writeFile(s.name + "-" + vs.id + ".safetensors", t);
    s.variants.push_back(vs);
  }
}

struct Batch {
  std::vector<float> x;
  std::vector<int32_t> variant;
  std::vector<float> expected;
};

std::vector<uint8_t> filler(float fill) {
  return writeSafetensors({{"w", {{int64_t(kFillerBytes / 4)}, std::vector<float>(kFillerBytes / 4, fill)}}});
}

// Counts failures across threads; the first message is kept for the report.
struct Failures {
  std::atomic<int> count{0};
  std::mutex mu;
  std::string first;
  void add(const std::string& what) {
    if (count.fetch_add(1) == 0) {
      std::lock_guard<std::mutex> lk(mu);
      first = what;
    }
  }
};

}  // namespace

TEST(families_run_correctly_while_other_threads_alloc_evict_and_release) {
  Files files;
  makeFamily(files);
  RuntimeOptions o;
  o.backend = "host";
  o.threads = 3;  // the kernels' thread pool is shared by every inferring thread
  // Room for the family, its workspaces and a few fillers: filler loads and big pool allocations push the
  // device to full, so eviction under pressure (pool -> registry) runs while inference does.
  o.hostCapacityBytes = 512 << 10;
  Runtime rt(o);
  BlobRegistry& reg = rt.blobs();
  const uint32_t famPool = rt.createPool(1 << 20, 0);
  const uint32_t replicaPool = rt.createPool(1 << 20, 0);
  const uint32_t scratchPool = rt.createPool(1 << 20, 0);
  const uint32_t famId = rt.loadFamily(files.spec, famPool);

  // Baselines, single-threaded. Three batches mixing variants differently.
  std::vector<Batch> batches(3);
  fx::Rng rng(3);
  for (size_t b = 0; b < batches.size(); ++b) {
    batches[b].x = rng.vec(size_t(kRows) * kIn);
    for (int i = 0; i < kRows; ++i) batches[b].variant.push_back(static_cast<int32_t>((i * (b + 1) + b) % kVariants));
    batches[b].expected = rt.family(famId)->infer(batches[b].x.data(), kRows, batches[b].variant.data());
    CHECK_EQ(batches[b].expected.size(), size_t(kRows) * kHead);
  }
  // Pre-warm the family pool's cache with two concurrent workspaces, so inference never needs the device
  // while the other threads keep it full: its results can then be required to succeed, every time.
  // The alloc thread's sizes are cached too: a miss that found the device full would empty this pool's cache.
  constexpr int kAllocSizes = 13;
  auto allocSize = [](int i) { return 64 + uint64_t(i % kAllocSizes) * 300; };
  {
    auto p = rt.pool(famPool);
    Pool::Lease a(*p), b(*p);
    for (Pool::Lease* l : {&a, &b}) {
      l->take(uint64_t(kRows) * kHidden * 4);
      l->take(uint64_t(kRows) * kHidden * 4);
      l->take(uint64_t(kRows) * kRank * 4);
    }
    std::vector<uint64_t> hs;
    for (int i = 0; i < kAllocSizes; ++i) hs.push_back(p->alloc(allocSize(i)));
    for (uint64_t h : hs) p->free(h);
  }
  {
    FamilySpec replica = files.spec;
    const uint32_t id = rt.loadFamily(replica, replicaPool);
    rt.family(id)->infer(batches[0].x.data(), kRows, batches[0].variant.data());
    rt.releaseFamily(id);
  }
  const uint64_t capacity = rt.backend().devices()[0].totalBytes;

  Failures fail;
  std::atomic<int> inferences{0}, leaseFreesRefused{0}, pressureOoms{0}, evictions{0}, replicaRuns{0};
  constexpr int kInferIters = 150, kOtherIters = 120;

  auto inferLoop = [&](int seed) {
    for (int i = 0; i < kInferIters; ++i) {
      const Batch& b = batches[static_cast<size_t>(i + seed) % batches.size()];
      try {
        auto fam = rt.family(famId);
        std::vector<float> y = fam->infer(b.x.data(), kRows, b.variant.data());
        if (y != b.expected) fail.add("inference " + std::to_string(i) + " differs from its single-threaded baseline");
        inferences.fetch_add(1);
      } catch (const std::exception& e) {
        fail.add(std::string("inference threw: ") + e.what());
      }
    }
  };

  // Allocates from the family's pool (the JS poolAlloc/poolFree path) and writes and checks a pattern in each
  // block; also tries to free the handles around its own, which are the in-flight workspaces' (or not
  // live yet): each try must be refused with InvalidHandle, never free a block a lease owns.
  auto allocLoop = [&] {
    auto pool = rt.pool(famPool);
    for (int i = 0; i < kOtherIters * 4; ++i) {
      const uint64_t bytes = allocSize(i);
      try {
        const uint64_t h = pool->alloc(bytes);
        auto* p = static_cast<uint8_t*>(pool->pointer(h));
        std::memset(p, i & 0xff, bytes);
        // Handles next to this one: live ones below it are in-flight workspaces (this thread freed its own).
        for (uint64_t g = h > 6 ? h - 6 : 1; g <= h + 3; ++g) {
          if (g == h) continue;
          try {
            pool->free(g);
            fail.add("freed handle " + std::to_string(g) + " that this thread never allocated");
          } catch (const Error& e) {
            if (e.code() != ErrorCode::InvalidHandle) fail.add(std::string("stray free: ") + e.what());
            if (std::strstr(e.what(), "owned by an in-flight inference workspace")) leaseFreesRefused.fetch_add(1);
          }
        }
        for (uint64_t k = 0; k < bytes; ++k)
          if (p[k] != (i & 0xff)) {
            fail.add("pool block " + std::to_string(h) + " was overwritten while it was live");
            break;
          }
        pool->free(h);
      } catch (const std::exception& e) {
        fail.add(std::string("alloc thread: ") + e.what());  // every size is cached: this never needs the device
      }
    }
  };

  // Loads fillers (evicting idle ones LRU when the device is full), restores them by acquiring, evicts and
  // drops them, and asks to evict the family's referenced blobs (which must be refused).
  auto evictLoop = [&] {
    std::vector<int> lastFill(6, -1);  // the fill each filler name was last loaded with; -1: not loaded
    for (int i = 0; i < kOtherIters; ++i) {
      const std::string name = "filler-" + std::to_string(i % 6);
      try {
        auto img = filler(static_cast<float>(i));
        reg.loadBuffer(name, img.data(), img.size(), false);  // new bytes under an old name: a reload
        const uint64_t r = reg.acquire(name);                // may restore from host memory
        const float v = reg.tensorF32(r, "w", {int64_t(kFillerBytes / 4)})[kFillerBytes / 4 - 1];
        if (v != static_cast<float>(i)) fail.add(name + " serves stale bytes after a reload");
        reg.release(r);
        lastFill[static_cast<size_t>(i % 6)] = i;
        // An older filler, perhaps evicted by pressure meanwhile: acquiring restores it with its bytes intact.
        const int older = (i + 3) % 6;
        if (lastFill[static_cast<size_t>(older)] >= 0) {
          const uint64_t ro = reg.acquire("filler-" + std::to_string(older));
          const float w = reg.tensorF32(ro, "w", {})[0];
          reg.release(ro);
          if (w != static_cast<float>(lastFill[static_cast<size_t>(older)])) fail.add("a restored filler lost its bytes");
        }
        if (i % 3 == 0 && reg.evict(name)) evictions.fetch_add(1);  // the others pile up until loads evict them
        if (reg.evict(files.spec.baseBlob)) fail.add("evicted the base blob while a family references it");
        if (i % 5 == 0) reg.evictFor(kFillerBytes * 2);
        if (i % 7 == 0) {
          reg.drop(name);
          lastFill[static_cast<size_t>(i % 6)] = -1;
        }
      } catch (const OutOfMemory&) {
        pressureOoms.fetch_add(1);
      } catch (const std::exception& e) {
        fail.add(std::string("evict thread: ") + e.what());
      }
    }
  };

  // Loads a replica of the family in another pool, runs it, releases it; also takes and returns references
  // on the shared base, and allocates big scratch blocks that force pool pressure onto the registry.
  auto releaseLoop = [&] {
    for (int i = 0; i < kOtherIters / 4; ++i) {
      try {
        const uint32_t id = rt.loadFamily(files.spec, replicaPool);
        const Batch& b = batches[static_cast<size_t>(i) % batches.size()];
        if (rt.family(id)->infer(b.x.data(), kRows, b.variant.data()) != b.expected) fail.add("replica result differs");
        replicaRuns.fetch_add(1);
        rt.releaseFamily(id);
      } catch (const std::exception& e) {
        fail.add(std::string("replica thread: ") + e.what());  // its workspace is cached from the warm-up run
      }
      for (int k = 0; k < 4; ++k) {
        try {
          const uint64_t r = reg.acquire(files.spec.baseBlob);
          reg.release(r);
          auto scratch = rt.pool(scratchPool);
          const uint64_t h = scratch->alloc(kFillerBytes);
          scratch->free(h);
          scratch->emptyCache();
        } catch (const OutOfMemory&) {
          pressureOoms.fetch_add(1);
        } catch (const std::exception& e) {
          fail.add(std::string("release thread: ") + e.what());
        }
      }
    }
  };

  std::vector<std::thread> threads;
  threads.emplace_back(inferLoop, 0);
  threads.emplace_back(inferLoop, 1);
  threads.emplace_back(allocLoop);
  threads.emplace_back(evictLoop);
  threads.emplace_back(releaseLoop);
  for (auto& t : threads) t.join();

  std::printf("  inferences=%d replicaRuns=%d leaseFreesRefused=%d explicitEvictions=%d evictions=%llu restores=%llu "
              "reloads=%llu pressureOoms=%d\n",
              inferences.load(), replicaRuns.load(), leaseFreesRefused.load(), evictions.load(),
              static_cast<unsigned long long>(reg.stats().evictions), static_cast<unsigned long long>(reg.stats().restores),
              static_cast<unsigned long long>(reg.stats().reloads), pressureOoms.load());
  if (fail.count.load() != 0) throw t::Failure{std::to_string(fail.count.load()) + " failures, first: " + fail.first};
  CHECK_EQ(inferences.load(), 2 * kInferIters);
  CHECK(replicaRuns.load() > 0);

  // Everything is accounted for: no live blocks, only the family's references, and after releasing and
  // dropping everything the device is back to its full capacity.
  for (uint32_t id : {famPool, replicaPool, scratchPool}) {
    PoolStats s = rt.pool(id)->stats();
    CHECK_EQ(s.liveBlocks, 0ull);
    CHECK_EQ(s.used, 0ull);
  }
  CHECK_EQ(reg.stats().refs, uint64_t(1 + kVariants));
  CHECK_EQ(reg.stats().retired, 0ull);
  rt.releaseFamily(famId);
  CHECK_EQ(reg.stats().refs, 0ull);
  for (const BlobInfo& b : reg.list()) reg.drop(b.name);
  for (uint32_t id : {famPool, replicaPool, scratchPool}) rt.destroyPool(id);
  CHECK_EQ(rt.backend().devices()[0].freeBytes, capacity);
}
