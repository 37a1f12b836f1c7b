// Kernels against a float64 reference: batched GEMM with bias and activation, layer norm, softmax, LoRA.
// Built twice: for the host backend, and (SHOAL_TEST_CUDA) for the CUDA backend, which ctest shows as skipped
// without a device.
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "fixtures.hpp"
#include "shoal/backend.hpp"
#include "test.hpp"

using namespace shoal;

namespace {

Backend& backend() {
  static std::unique_ptr<Backend> be = [] {
#ifdef SHOAL_TEST_CUDA
    std::string reason;
    auto b = makeCudaBackend(&reason);
    if (!b) t::skipAll("cuda kernel tests: " + reason);
    return b;
#else
    return makeHostBackend(1ull << 30, 2);
#endif
  }();
  return *be;
}

// Device buffer that round-trips host vectors.
struct Buf {
  void* p = nullptr;
  size_t n = 0;
  explicit Buf(const std::vector<float>& v) : n(v.size()) {
    p = backend().rawAlloc(0, std::max<size_t>(n, 1) * 4);
    backend().copyToDevice(0, p, v.data(), n * 4);
  }
  explicit Buf(size_t count) : Buf(std::vector<float>(count, 0.f)) {}
  ~Buf() { backend().rawFree(0, p, std::max<size_t>(n, 1) * 4); }
  float* f() { return static_cast<float*>(p); }
  std::vector<float> get() {
    std::vector<float> v(n);
    backend().copyToHost(0, v.data(), p, n * 4);
    return v;
  }
};

double act64(double v, Activation a) {
  if (a == Activation::Relu) return v > 0 ? v : 0;
  if (a == Activation::Gelu) return 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
  return v;
}

double relErr(const std::vector<float>& got, const std::vector<double>& ref) {
  double maxRef = 1e-6, maxDiff = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    maxRef = std::max(maxRef, std::fabs(ref[i]));
    maxDiff = std::max(maxDiff, std::fabs(got[i] - ref[i]));
  }
  return maxDiff / maxRef;
}

void checkGemm(int batch, int m, int n, int k, Activation act, float alpha, float beta, bool bias) {
  fx::Rng rng(static_cast<uint64_t>(m * 131 + n * 7 + k));
  auto A = rng.vec(size_t(batch) * m * k), B = rng.vec(size_t(batch) * k * n), C0 = rng.vec(size_t(batch) * m * n);
  auto bv = rng.vec(n);
  Buf dA(A), dB(B), dC(C0), dBias(bv);
  backend().kernels(0).gemm(batch, m, n, k, dA.f(), int64_t(m) * k, dB.f(), int64_t(k) * n, bias ? dBias.f() : nullptr,
                            dC.f(), int64_t(m) * n, act, alpha, beta);
  std::vector<double> ref(size_t(batch) * m * n);
  for (int b = 0; b < batch; ++b)
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int p = 0; p < k; ++p) s += double(A[size_t(b) * m * k + size_t(i) * k + p]) * B[size_t(b) * k * n + size_t(p) * n + j];
        size_t o = size_t(b) * m * n + size_t(i) * n + j;
        double v = alpha * s + beta * double(C0[o]) + (bias ? bv[j] : 0.0);
        ref[o] = act64(v, act);
      }
  double e = relErr(dC.get(), ref);
  if (e > 1e-4) {
    std::printf("gemm b=%d m=%d n=%d k=%d act=%d rel err %g\n", batch, m, n, k, int(act), e);
    CHECK(e <= 1e-4);
  }
}

}  // namespace

TEST(gemm_matches_float64_reference) {
  checkGemm(1, 1, 1, 1, Activation::None, 1, 0, false);
  checkGemm(1, 33, 17, 65, Activation::None, 1, 0, true);
  checkGemm(3, 70, 300, 129, Activation::Relu, 1, 0, true);
  checkGemm(2, 64, 64, 512, Activation::Gelu, 0.5f, 1.f, true);
  checkGemm(1, 5, 513, 7, Activation::Gelu, 1, 0, false);
}

TEST(layer_norm_matches_reference) {
  fx::Rng rng(9);
  const int rows = 37, cols = 300;
  auto x = rng.vec(size_t(rows) * cols, 3.f), g = rng.vec(cols), b = rng.vec(cols);
  Buf dx(x), dg(g), db(b), dy(size_t(rows) * cols);
  backend().kernels(0).layerNorm(rows, cols, dx.f(), dg.f(), db.f(), 1e-5f, dy.f());
  std::vector<double> ref(x.size());
  for (int r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int j = 0; j < cols; ++j) mean += x[size_t(r) * cols + j];
    mean /= cols;
    for (int j = 0; j < cols; ++j) var += std::pow(x[size_t(r) * cols + j] - mean, 2);
    var /= cols;
    for (int j = 0; j < cols; ++j) ref[size_t(r) * cols + j] = (x[size_t(r) * cols + j] - mean) / std::sqrt(var + 1e-5) * g[j] + b[j];
  }
  CHECK(relErr(dy.get(), ref) <= 1e-4);
}

TEST(softmax_matches_reference) {
  fx::Rng rng(11);
  const int rows = 20, cols = 1000;
  auto x = rng.vec(size_t(rows) * cols, 10.f);
  Buf dx(x), dy(x.size());
  backend().kernels(0).softmax(rows, cols, dx.f(), dy.f());
  std::vector<double> ref(x.size());
  for (int r = 0; r < rows; ++r) {
    double mx = -1e300, s = 0;
    for (int j = 0; j < cols; ++j) mx = std::max(mx, double(x[size_t(r) * cols + j]));
    for (int j = 0; j < cols; ++j) s += std::exp(x[size_t(r) * cols + j] - mx);
    for (int j = 0; j < cols; ++j) ref[size_t(r) * cols + j] = std::exp(x[size_t(r) * cols + j] - mx) / s;
  }
  CHECK(relErr(dy.get(), ref) <= 1e-4);
}

TEST(lora_matches_reference) {
  fx::Rng rng(13);
  const int m = 19, n = 96, k = 64, r = 8;
  const float s = 0.75f;
  auto X = rng.vec(size_t(m) * k), W = rng.vec(size_t(k) * n), A = rng.vec(size_t(k) * r), B = rng.vec(size_t(r) * n);
  Buf dX(X), dW(W), dA(A), dB(B), dY(size_t(m) * n), dT(size_t(m) * r);
  Kernels& kn = backend().kernels(0);
  kn.gemm(1, m, n, k, dX.f(), 0, dW.f(), 0, nullptr, dY.f(), 0, Activation::None, 1, 0);
  kn.lora(m, n, k, r, dX.f(), dA.f(), dB.f(), s, dY.f(), dT.f());
  std::vector<double> ref(size_t(m) * n);
  for (int i = 0; i < m; ++i) {
    std::vector<double> xa(r, 0);
    for (int q = 0; q < r; ++q)
      for (int p = 0; p < k; ++p) xa[q] += double(X[size_t(i) * k + p]) * A[size_t(p) * r + q];
    for (int j = 0; j < n; ++j) {
      double v = 0;
      for (int p = 0; p < k; ++p) v += double(X[size_t(i) * k + p]) * W[size_t(p) * n + j];
      for (int q = 0; q < r; ++q) v += s * xa[q] * B[size_t(q) * n + j];
      ref[size_t(i) * n + j] = v;
    }
  }
  CHECK(relErr(dY.get(), ref) <= 1e-4);
}

TEST(device_listing) {
  auto d = backend().devices();
  CHECK(!d.empty());
  CHECK(d[0].totalBytes > 0);
  std::printf("device 0: %s (%s) cc %d.%d total=%llu free=%llu\n", d[0].name.c_str(), d[0].backend.c_str(), d[0].ccMajor,
              d[0].ccMinor, (unsigned long long)d[0].totalBytes, (unsigned long long)d[0].freeBytes);
}

TEST(grouped_gemm_matches_reference_per_segment) {
  fx::Rng rng(17);
  struct Shape { int m, n, k; Activation act; float alpha, beta; bool bias; };
  const Shape shapes[] = {{1, 8, 64, Activation::None, 1, 0, false}, {37, 300, 40, Activation::Relu, 1, 0, true},
                          {5, 16, 512, Activation::Gelu, 0.5f, 1, true}, {0, 4, 4, Activation::None, 1, 0, false},
                          {64, 4, 33, Activation::None, 2, 1, false}};
  std::vector<std::unique_ptr<Buf>> keep;
  std::vector<GemmSegment> segs;
  std::vector<std::vector<float>> As, Bs, Cs, biases;
  for (const Shape& s : shapes) {
    As.push_back(rng.vec(size_t(s.m) * s.k));
    Bs.push_back(rng.vec(size_t(s.k) * s.n));
    Cs.push_back(rng.vec(size_t(s.m) * s.n));
    biases.push_back(rng.vec(s.n));
    keep.push_back(std::make_unique<Buf>(As.back()));
    float* a = keep.back()->f();
    keep.push_back(std::make_unique<Buf>(Bs.back()));
    float* b = keep.back()->f();
    keep.push_back(std::make_unique<Buf>(Cs.back()));
    float* c = keep.back()->f();
    keep.push_back(std::make_unique<Buf>(biases.back()));
    float* bias = keep.back()->f();
    segs.push_back({s.m, s.n, s.k, a, b, s.bias ? bias : nullptr, c, s.act, s.alpha, s.beta});
  }
  backend().kernels(0).groupedGemm(segs);
  for (size_t g = 0; g < segs.size(); ++g) {
    const Shape& s = shapes[g];
    std::vector<double> ref(size_t(s.m) * s.n);
    for (int i = 0; i < s.m; ++i)
      for (int j = 0; j < s.n; ++j) {
        double acc = 0;
        for (int p = 0; p < s.k; ++p) acc += double(As[g][size_t(i) * s.k + p]) * Bs[g][size_t(p) * s.n + j];
        double v = s.alpha * acc + s.beta * double(Cs[g][size_t(i) * s.n + j]) + (s.bias ? biases[g][j] : 0.0);
        ref[size_t(i) * s.n + j] = act64(v, s.act);
      }
    CHECK(relErr(keep[g * 4 + 2]->get(), ref) <= 1e-4);
  }
}
