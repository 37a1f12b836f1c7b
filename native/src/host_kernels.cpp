#include "host_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace shoal {

namespace {
constexpr int kRowTile = 32;
constexpr int kColTile = 256;
constexpr int kDepthTile = 128;
}  // namespace

namespace {

// One output tile C[i0:i1, j0:j1] of C = act(alpha * A B + beta * C + bias), single-threaded. The accumulator
// tile stays in L1/L2 while depth blocks of B stream through it; the inner loop vectorises.
void gemmTile(int n, int k, const float* A, const float* B, const float* bias, float* C, Activation act, float alpha,
              float beta, int i0, int i1, int j0, int j1, float* acc) {
  const int w = j1 - j0;
  std::fill(acc, acc + static_cast<size_t>(i1 - i0) * kColTile, 0.f);
  for (int p0 = 0; p0 < k; p0 += kDepthTile) {
    const int p1 = std::min(k, p0 + kDepthTile);
    for (int i = i0; i < i1; ++i) {
      float* arow = acc + static_cast<size_t>(i - i0) * kColTile;
      const float* a = A + static_cast<int64_t>(i) * k;
      for (int p = p0; p < p1; ++p) {
        const float av = a[p];
        const float* brow = B + static_cast<int64_t>(p) * n + j0;
        for (int j = 0; j < w; ++j) arow[j] += av * brow[j];
      }
    }
  }
  for (int i = i0; i < i1; ++i) {
    float* crow = C + static_cast<int64_t>(i) * n + j0;
    const float* arow = acc + static_cast<size_t>(i - i0) * kColTile;
    for (int j = 0; j < w; ++j) {
      float v = alpha * arow[j];
      if (beta != 0.f) v += beta * crow[j];
      if (bias) v += bias[j0 + j];
      crow[j] = applyActivation(v, act);
    }
  }
}

thread_local std::vector<float> tlsAcc;

float* accumulator() {
  if (tlsAcc.size() < static_cast<size_t>(kRowTile) * kColTile) tlsAcc.resize(static_cast<size_t>(kRowTile) * kColTile);
  return tlsAcc.data();
}

}  // namespace

void HostKernels::gemm(int batch, int m, int n, int k, const float* A, int64_t strideA, const float* B,
                       int64_t strideB, const float* bias, float* C, int64_t strideC, Activation act, float alpha,
                       float beta) {
  if (batch <= 0 || m <= 0 || n <= 0) return;
  const int rowTiles = (m + kRowTile - 1) / kRowTile;
  const int colTiles = (n + kColTile - 1) / kColTile;
  const size_t tiles = static_cast<size_t>(batch) * rowTiles * colTiles;
  pool_.parallelFor(tiles, [&](size_t t) {
    const int b = static_cast<int>(t / (static_cast<size_t>(rowTiles) * colTiles));
    const int rem = static_cast<int>(t % (static_cast<size_t>(rowTiles) * colTiles));
    const int i0 = (rem / colTiles) * kRowTile, j0 = (rem % colTiles) * kColTile;
    gemmTile(n, k, A + b * strideA, B + b * strideB, bias, C + b * strideC, act, alpha, beta, i0, std::min(m, i0 + kRowTile),
             j0, std::min(n, j0 + kColTile), accumulator());
  });
}

void HostKernels::groupedGemm(const std::vector<GemmSegment>& segs) {
  // Every (segment, tile) is one work item of a single parallelFor: tiny per-variant GEMMs share one round
  // of the thread pool instead of paying a round each.
  struct Item {
    const GemmSegment* g;
    int i0, j0;
  };
  std::vector<Item> items;
  for (const GemmSegment& g : segs) {
    if (g.m <= 0 || g.n <= 0) continue;
    for (int i0 = 0; i0 < g.m; i0 += kRowTile)
      for (int j0 = 0; j0 < g.n; j0 += kColTile) items.push_back({&g, i0, j0});
  }
  pool_.parallelFor(items.size(), [&](size_t t) {
    const Item& it = items[t];
    const GemmSegment& g = *it.g;
    gemmTile(g.n, g.k, g.A, g.B, g.bias, g.C, g.act, g.alpha, g.beta, it.i0, std::min(g.m, it.i0 + kRowTile), it.j0,
             std::min(g.n, it.j0 + kColTile), accumulator());
  });
}

void HostKernels::layerNorm(int rows, int cols, const float* x, const float* gamma, const float* beta, float eps,
                            float* y) {
  pool_.parallelFor(static_cast<size_t>(rows), [&](size_t r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    double mean = 0, var = 0;
    for (int j = 0; j < cols; ++j) mean += xr[j];
    mean /= cols;
    for (int j = 0; j < cols; ++j) var += (xr[j] - mean) * (xr[j] - mean);
    var /= cols;
    const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    for (int j = 0; j < cols; ++j) {
      float v = (xr[j] - static_cast<float>(mean)) * inv;
      yr[j] = v * (gamma ? gamma[j] : 1.f) + (beta ? beta[j] : 0.f);
    }
  });
}

void HostKernels::softmax(int rows, int cols, const float* x, float* y) {
  pool_.parallelFor(static_cast<size_t>(rows), [&](size_t r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float mx = xr[0];
    for (int j = 1; j < cols; ++j) mx = std::max(mx, xr[j]);
    float sum = 0;
    for (int j = 0; j < cols; ++j) sum += (yr[j] = std::exp(xr[j] - mx));
    for (int j = 0; j < cols; ++j) yr[j] /= sum;
  });
}

void HostKernels::activate(int64_t count, float* y, Activation act) {
  if (act == Activation::None) return;
  for (int64_t i = 0; i < count; ++i) y[i] = applyActivation(y[i], act);
}

}  // namespace shoal
