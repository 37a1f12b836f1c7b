// Host compute kernels: blocked GEMM split into row tiles across a ThreadPool.
#pragma once
#include "shoal/backend.hpp"
#include "shoal/thread_pool.hpp"

namespace shoal {

class HostKernels : public Kernels {
 public:
  explicit HostKernels(ThreadPool& pool) : pool_(pool) {}
  void gemm(int batch, int m, int n, int k, const float* A, int64_t strideA, const float* B, int64_t strideB,
            const float* bias, float* C, int64_t strideC, Activation act, float alpha, float beta) override;
  void layerNorm(int rows, int cols, const float* x, const float* gamma, const float* beta, float eps,
                 float* y) override;
  void softmax(int rows, int cols, const float* x, float* y) override;
  void activate(int64_t count, float* y, Activation act) override;
  void groupedGemm(const std::vector<GemmSegment>& segs) override;

 private:
  ThreadPool& pool_;
};

/** The one activation formula every backend and the TS reference share (GELU: tanh approximation). */
inline float applyActivation(float v, Activation act);

}  // namespace shoal

#include <cmath>
namespace shoal {
inline float applyActivation(float v, Activation act) {
  switch (act) {
    case Activation::Relu: return v > 0.f ? v : 0.f;
    case Activation::Gelu: {
      const float c = 0.7978845608028654f;  // sqrt(2/pi)
      return 0.5f * v * (1.f + std::tanh(c * (v + 0.044715f * v * v * v)));
    }
    default: return v;
  }
}
}  // namespace shoal
