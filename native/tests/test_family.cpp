// Model family: grouped inference over a batch mixing variants equals running each row alone (float64).
#include <cstdio>
#include <cstdlib>

#include "fixtures.hpp"
#include "shoal/errors.hpp"
#include "shoal/runtime.hpp"
#include "test.hpp"

using namespace shoal;

namespace {

struct Made {
  FamilySpec spec;
  fx::Tensors base;
  std::vector<fx::Tensors> variants;
};

// Base: 16 -> 32 (relu) -> 24 (gelu). Variant v: LoRA on layer 0 (rank 4) and layer 1 (rank 2), head 24 -> 5.
Made makeFamily(int nv) {
  Made m;
  fx::Rng rng(42);
  const int dims[] = {16, 32, 24};
  m.spec.name = "fam" + std::to_string(getpid());
  m.spec.baseBlob = m.spec.name + "/base";
  for (int l = 0; l < 2; ++l) {
    m.base.push_back({"l" + std::to_string(l) + ".w", {{dims[l], dims[l + 1]}, rng.vec(size_t(dims[l]) * dims[l + 1], 0.3f)}});
    m.base.push_back({"l" + std::to_string(l) + ".b", {{dims[l + 1]}, rng.vec(dims[l + 1], 0.1f)}});
    m.spec.layers.push_back({"l" + std::to_string(l) + ".w", "l" + std::to_string(l) + ".b", l == 0 ? Activation::Relu : Activation::Gelu});
  }
  m.spec.basePath = fx::writeFile(m.spec.name + "-base.safetensors", m.base);
  for (int v = 0; v < nv; ++v) {
    fx::Tensors t;
    const int ranks[] = {4, 2};
    VariantSpec vs;
    vs.id = "v" + std::to_string(v);
    vs.blob = m.spec.name + "/" + vs.id;
    for (int l = 0; l < 2; ++l) {
      t.push_back({"a" + std::to_string(l), {{dims[l], ranks[l]}, rng.vec(size_t(dims[l]) * ranks[l], 0.3f)}});
      t.push_back({"b" + std::to_string(l), {{ranks[l], dims[l + 1]}, rng.vec(size_t(ranks[l]) * dims[l + 1], 0.3f)}});
      vs.loras.push_back({l, "a" + std::to_string(l), "b" + std::to_string(l), 0.5f + v * 0.25f});
    }
    t.push_back({"h.w", {{24, 5}, rng.vec(24 * 5, 0.3f)}});
    t.push_back({"h.b", {{5}, rng.vec(5, 0.1f)}});
    vs.hasHead = true;
    vs.head = {"h.w", "h.b", Activation::None};
    vs.path = fx::writeFile(m.spec.name + "-" + vs.id + ".safetensors", t);
    m.spec.variants.push_back(vs);
    m.variants.push_back(t);
  }
  return m;
}

const std::vector<float>& get(const fx::Tensors& t, const std::string& n) {
  for (auto& [k, v] : t) if (k == n) return v.second;
  throw std::runtime_error("no tensor " + n);
}

std::vector<double> reference(const Made& m, const float* x, int v) {
  const int dims[] = {16, 32, 24};
  std::vector<double> cur(x, x + 16);
  for (int l = 0; l < 2; ++l) {
    auto& W = get(m.base, "l" + std::to_string(l) + ".w");
    auto& b = get(m.base, "l" + std::to_string(l) + ".b");
    auto& A = get(m.variants[v], "a" + std::to_string(l));
    auto& B = get(m.variants[v], "b" + std::to_string(l));
    const int in = dims[l], out = dims[l + 1], r = l == 0 ? 4 : 2;
    const double s = 0.5 + v * 0.25;
    std::vector<double> xa(r, 0), nx(out, 0);
    for (int q = 0; q < r; ++q) for (int p = 0; p < in; ++p) xa[q] += cur[p] * A[size_t(p) * r + q];
    for (int j = 0; j < out; ++j) {
      double acc = b[j];
      for (int p = 0; p < in; ++p) acc += cur[p] * W[size_t(p) * out + j];
      for (int q = 0; q < r; ++q) acc += s * xa[q] * B[size_t(q) * out + j];
      nx[j] = l == 0 ? std::max(acc, 0.0) : 0.5 * acc * (1 + std::tanh(0.7978845608028654 * (acc + 0.044715 * acc * acc * acc)));
    }
    cur = nx;
  }
  auto& H = get(m.variants[v], "h.w");
  auto& hb = get(m.variants[v], "h.b");
  std::vector<double> y(5);
  for (int j = 0; j < 5; ++j) {
    y[j] = hb[j];
    for (int p = 0; p < 24; ++p) y[j] += cur[p] * H[size_t(p) * 5 + j];
  }
  return y;
}

// SHOAL_TEST_CUDA builds run every case on the CUDA backend; without a device the whole binary is skipped.
RuntimeOptions options() {
  RuntimeOptions o;
#ifdef SHOAL_TEST_CUDA
  o.backend = "cuda";
  std::string reason;
  if (!makeCudaBackend(&reason)) t::skipAll("cuda family tests: " + reason);
#else
  o.backend = "host";
#endif
  o.threads = 2;
  return o;
}

// Records every GEMM the family launches, then forwards to the real backend.
class CountingKernels : public Kernels {
 public:
  explicit CountingKernels(Kernels& inner) : inner_(inner) {}
  struct Call { int m, n, k; };
  std::vector<Call> calls;
  void gemm(int batch, int m, int n, int k, const float* A, int64_t sA, const float* B, int64_t sB, const float* bias,
            float* C, int64_t sC, Activation act, float alpha, float beta) override {
    calls.push_back({m, n, k});
    inner_.gemm(batch, m, n, k, A, sA, B, sB, bias, C, sC, act, alpha, beta);
  }
  void layerNorm(int r, int c, const float* x, const float* g, const float* b, float eps, float* y) override {
    inner_.layerNorm(r, c, x, g, b, eps, y);
  }
  void softmax(int r, int c, const float* x, float* y) override { inner_.softmax(r, c, x, y); }
  void activate(int64_t n, float* y, Activation a) override { inner_.activate(n, y, a); }

 private:
  Kernels& inner_;
};

class CountingBackend : public Backend {
 public:
  explicit CountingBackend(Backend& inner) : inner_(inner), kernels_(inner.kernels(0)) {}
  CountingKernels& counting() { return kernels_; }
  const char* name() const override { return inner_.name(); }
  std::vector<DeviceInfo> devices() override { return inner_.devices(); }
  void* rawAlloc(int d, size_t b) override { return inner_.rawAlloc(d, b); }
  void rawFree(int d, void* p, size_t b) override { inner_.rawFree(d, p, b); }
  void copyToDevice(int d, void* dst, const void* src, size_t n) override { inner_.copyToDevice(d, dst, src, n); }
  void copyToHost(int d, void* dst, const void* src, size_t n) override { inner_.copyToHost(d, dst, src, n); }
  void* hostAlloc(size_t b) override { return inner_.hostAlloc(b); }
  void hostFree(void* p) override { inner_.hostFree(p); }
  Kernels& kernels(int) override { return kernels_; }
  std::string exportShared(int d, void* p) override { return inner_.exportShared(d, p); }
  void* importShared(int d, const std::string& h) override { return inner_.importShared(d, h); }
  void closeShared(int d, void* p) override { inner_.closeShared(d, p); }
  bool hostAddressable() const override { return inner_.hostAddressable(); }

 private:
  Backend& inner_;
  CountingKernels kernels_;
};

void removeFiles(const Made& m) {
  for (auto& v : m.spec.variants) std::remove(v.path.c_str());
  std::remove(m.spec.basePath.c_str());
}

}  // namespace

TEST(grouped_infer_matches_per_row_reference) {
  Made m = makeFamily(5);
  Runtime rt(options());
  uint32_t pool = rt.createPool(1 << 20, 0);
  uint32_t id = rt.loadFamily(m.spec, pool);
  auto fam = rt.family(id);
  CHECK_EQ(fam->inputDim(), 16);
  CHECK_EQ(fam->outputDim(), 5);
  const int n = 23;
  fx::Rng rng(5);
  auto x = rng.vec(size_t(n) * 16);
  std::vector<int32_t> var(n);
  for (int i = 0; i < n; ++i) var[i] = (i * 7 + 3) % 5;
  var[0] = 4;
  auto y = fam->infer(x.data(), n, var.data());
  double maxDiff = 0, maxRef = 1e-6;
  for (int i = 0; i < n; ++i) {
    auto ref = reference(m, &x[size_t(i) * 16], var[i]);
    for (int j = 0; j < 5; ++j) {
      maxDiff = std::max(maxDiff, std::fabs(y[size_t(i) * 5 + j] - ref[j]));
      maxRef = std::max(maxRef, std::fabs(ref[j]));
    }
  }
  CHECK(maxDiff / maxRef <= 1e-4);
  // Workspace comes from the pool's cache on the second call.
  fam->infer(x.data(), n, var.data());
  CHECK(rt.pool(pool)->stats().cacheHits >= 3);
  CHECK_EQ(rt.pool(pool)->stats().used, 0ull);
  // Base loaded once; one ref from the family; variant blobs one each.
  CHECK_EQ(rt.blobs().info(m.spec.baseBlob).refs, 1u);
  uint32_t id2 = rt.loadFamily(m.spec, pool);  // a second replica shares every blob
  CHECK_EQ(rt.blobs().info(m.spec.baseBlob).refs, 2u);
  CHECK_EQ(rt.blobs().stats().blobs, 6ull);
  int32_t bad = 9;
  CHECK_THROWS(fam->infer(x.data(), 1, &bad), Error);
  rt.releaseFamily(id2);
  rt.releaseFamily(id);
  CHECK_THROWS(rt.releaseFamily(id), Error);
  CHECK_THROWS(rt.family(id), Error);
  // Work already holding the family keeps its blobs until it lets go; then every ref is returned.
  CHECK_EQ(rt.blobs().info(m.spec.baseBlob).refs, 1u);
  fam.reset();
  CHECK_EQ(rt.blobs().info(m.spec.baseBlob).refs, 0u);
  CHECK(rt.blobs().info(m.spec.baseBlob).state == "resident");  // idle, cached until memory is needed
  removeFiles(m);
}

TEST(pool_budget_too_small_for_workspace) {
  Made m = makeFamily(1);
  Runtime rt(options());
  uint32_t pool = rt.createPool(1024, 0);
  auto fam = rt.family(rt.loadFamily(m.spec, pool));
  std::vector<float> x(size_t(100) * 16, 0.f);
  std::vector<int32_t> var(100, 0);
  CHECK_THROWS(fam->infer(x.data(), 100, var.data()), OutOfMemory);
  CHECK_EQ(rt.pool(pool)->stats().used, 0ull);  // partial workspace was returned
  removeFiles(m);
}

TEST(bad_manifest_shapes_are_rejected_and_refs_returned) {
  Made m = makeFamily(1);
  m.spec.variants[0].loras[0].layer = 7;
  Runtime rt(options());
  uint32_t pool = rt.createPool(1 << 20, 0);
  CHECK_THROWS(rt.loadFamily(m.spec, pool), Error);
  CHECK_EQ(rt.blobs().stats().refs, 0ull);
  removeFiles(m);
}

TEST(mixed_batch_runs_base_once_and_groups_adapters_by_variant) {
  Made m = makeFamily(5);
  Runtime rt(options());
  CountingBackend cb(rt.backend());
  BlobRegistry reg(cb, 0);
  auto pool = std::make_shared<Pool>(1, cb, 0, 1 << 20);
  Family fam(m.spec, reg, pool, cb);
  const int n = 23;
  fx::Rng rng(8);
  auto x = rng.vec(size_t(n) * 16);
  std::vector<int32_t> var(n);
  for (int i = 0; i < n; ++i) var[i] = i % 3;  // variants 0..2 interleaved; 3 and 4 absent
  auto& calls = cb.counting().calls;
  calls.clear();
  auto y = fam.infer(x.data(), n, var.data());
  int base0 = 0, base1 = 0, heads = 0, headRows = 0, other = 0;
  for (auto& c : calls) {
    if (c.m == n && c.n == 32 && c.k == 16) ++base0;
    else if (c.m == n && c.n == 24 && c.k == 32) ++base1;
    else if (c.n == 5) { ++heads; headRows += c.m; }
    else ++other;
  }
  CHECK_EQ(base0, 1);  // each base layer once for the whole mixed batch
  CHECK_EQ(base1, 1);
  CHECK_EQ(heads, 3);  // one head GEMM per variant present
  CHECK_EQ(headRows, n);
  CHECK_EQ(other, 2 * 3 * 2);  // per layer, per variant group: the two LoRA GEMMs
  FamilyStats st = fam.stats();
  CHECK_EQ(st.batches, 1ull);
  CHECK_EQ(st.rows, uint64_t(n));
  CHECK_EQ(st.variantGroups, 3ull);
  CHECK_EQ(st.baseGemms, 2ull);
  CHECK_EQ(st.adapterGemms, 6ull);
  CHECK_EQ(st.headGemms, 3ull);
  // Output rows come back in request order: each equals the same row run alone.
  for (int i : {0, 1, 2, 22}) {
    auto one = fam.infer(&x[size_t(i) * 16], 1, &var[i]);
    for (int j = 0; j < 5; ++j) CHECK(std::fabs(one[j] - y[size_t(i) * 5 + j]) <= 1e-5f * (1.f + std::fabs(one[j])));
  }
  removeFiles(m);
}

TEST(family_on_preloaded_blobs_and_duplicate_variant_ids) {
  Made m = makeFamily(2);
  Runtime rt(options());
  uint32_t pool = rt.createPool(1 << 20, 0);
  FamilySpec spec = m.spec;
  rt.blobs().loadFile(spec.baseBlob, spec.basePath, false);
  spec.basePath.clear();  // the base is already loaded: the family only takes a reference
  uint32_t id = rt.loadFamily(spec, pool);
  CHECK_EQ(rt.blobs().info(spec.baseBlob).refs, 1u);
  rt.releaseFamily(id);
  FamilySpec missing = spec;
  missing.baseBlob = "never-loaded";
  CHECK_THROWS(rt.loadFamily(missing, pool), Error);
  FamilySpec dup = m.spec;
  dup.variants[1].id = dup.variants[0].id;
  CHECK_THROWS(rt.loadFamily(dup, pool), Error);
  CHECK_EQ(rt.blobs().stats().refs, 0ull);
  removeFiles(m);
}

TEST(zero_width_and_oversized_layer_dims_are_rejected_by_name) {
  Made m = makeFamily(1);
  Runtime rt(options());
  uint32_t pool = rt.createPool(1 << 20, 0);
  auto expectError = [&](const FamilySpec& spec, const std::string& part) {
    try {
      rt.loadFamily(spec, pool);
    } catch (const Error& e) {
      if (std::string(e.what()).find(part) == std::string::npos) {
        throw t::Failure{"message \"" + std::string(e.what()) + "\" lacks \"" + part + "\""};
      }
      return;
    }
    throw t::Failure{"expected loadFamily to fail with \"" + part + "\""};
  };
  // A legal safetensors tensor with a zero dimension is no layer: [16 x 0].
  FamilySpec zero = m.spec;
  zero.baseBlob += "-zero";
  zero.basePath = fx::writeFile(zero.name + "-zero.safetensors", {{"l0.w", {{16, 0}, {}}}, {"l0.b", {{0}, {}}}});
  zero.layers.resize(1);
  expectError(zero, "tensor \"l0.w\" in blob \"" + zero.baseBlob + "\" has shape [16, 0]: dimension 1 must be in [1, 2147483647]");
  // A rank-0 adapter likewise.
  FamilySpec rank0 = m.spec;
  rank0.variants[0].blob += "-rank0";
  fx::Tensors vt = m.variants[0];
  vt[0] = {"a0", {{16, 0}, {}}};
  rank0.variants[0].path = fx::writeFile(rank0.name + "-rank0.safetensors", vt);
  expectError(rank0, "tensor \"a0\" in blob \"" + rank0.variants[0].blob + "\" has shape [16, 0]");
  CHECK_EQ(rt.blobs().stats().refs, 0ull);
  std::remove(zero.basePath.c_str());
  std::remove(rank0.variants[0].path.c_str());
  removeFiles(m);
}
