// CUDA backend: cudaMalloc'd device memory, pinned host staging, CUDA IPC export, and simple own kernels
// (tiled shared-memory GEMM with a fused bias/activation epilogue, one block per row for norms/softmax).
// cudart is linked statically, so loading this code never fails for a missing libcudart; any init error
// at run time (no driver, no device) makes makeCudaBackend return nullptr with the reason.
#include <cuda_runtime.h>

#include <cstdio>
#include <mutex>

#include "shoal/backend.hpp"
#include "shoal/errors.hpp"

namespace shoal {

namespace {

constexpr int kTile = 16;

__device__ float activateDev(float v, int act) {
  if (act == 1) return v > 0.f ? v : 0.f;
  if (act == 2) {
    const float c = 0.7978845608028654f;
    return 0.5f * v * (1.f + tanhf(c * (v + 0.044715f * v * v * v)));
  }
  return v;
}

__global__ void gemmKernel(int m, int n, int k, const float* A, long long sA, const float* B, long long sB,
                           const float* bias, float* C, long long sC, int act, float alpha, float beta) {
  __shared__ float As[kTile][kTile];
  __shared__ float Bs[kTile][kTile];
  const int b = blockIdx.z;
  A += b * sA;
  B += b * sB;
  C += b * sC;
  const int row = blockIdx.y * kTile + threadIdx.y, col = blockIdx.x * kTile + threadIdx.x;
  float acc = 0.f;
  for (int t = 0; t < k; t += kTile) {
    As[threadIdx.y][threadIdx.x] = (row < m && t + threadIdx.x < k) ? A[(long long)row * k + t + threadIdx.x] : 0.f;
    Bs[threadIdx.y][threadIdx.x] = (col < n && t + threadIdx.y < k) ? B[(long long)(t + threadIdx.y) * n + col] : 0.f;
    __syncthreads();
#pragma unroll
    for (int p = 0; p < kTile; ++p) acc += As[threadIdx.y][p] * Bs[p][threadIdx.x];
    __syncthreads();
  }
  if (row < m && col < n) {
    float v = alpha * acc;
    if (beta != 0.f) v += beta * C[(long long)row * n + col];
    if (bias) v += bias[col];
    C[(long long)row * n + col] = activateDev(v, act);
  }
}

__global__ void layerNormKernel(int cols, const float* x, const float* gamma, const float* beta, float eps, float* y) {
  extern __shared__ float red[];
  const float* xr = x + (long long)blockIdx.x * cols;
  float* yr = y + (long long)blockIdx.x * cols;
  float s = 0.f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) s += xr[j];
  red[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  const float mean = red[0] / cols;
  __syncthreads();
  float v = 0.f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) v += (xr[j] - mean) * (xr[j] - mean);
  red[threadIdx.x] = v;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  const float inv = rsqrtf(red[0] / cols + eps);
  for (int j = threadIdx.x; j < cols; j += blockDim.x)
    yr[j] = (xr[j] - mean) * inv * (gamma ? gamma[j] : 1.f) + (beta ? beta[j] : 0.f);
}

__global__ void softmaxKernel(int cols, const float* x, float* y) {
  extern __shared__ float red[];
  const float* xr = x + (long long)blockIdx.x * cols;
  float* yr = y + (long long)blockIdx.x * cols;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, xr[j]);
  red[threadIdx.x] = mx;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + w]);
    __syncthreads();
  }
  mx = red[0];
  __syncthreads();
  float s = 0.f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) s += expf(xr[j] - mx);
  red[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  s = red[0];
  for (int j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = expf(xr[j] - mx) / s;
}

__global__ void activateKernel(long long count, float* y, int act) {
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) y[i] = activateDev(y[i], act);
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear sticky-free errors so the next call starts clean
    throw backendError(std::string(what) + ": " + cudaGetErrorString(e));
  }
}

class CudaKernels : public Kernels {
 public:
  void gemm(int batch, int m, int n, int k, const float* A, int64_t strideA, const float* B, int64_t strideB,
            const float* bias, float* C, int64_t strideC, Activation act, float alpha, float beta) override {
    if (batch <= 0 || m <= 0 || n <= 0) return;
    dim3 block(kTile, kTile), grid((n + kTile - 1) / kTile, (m + kTile - 1) / kTile, batch);
    gemmKernel<<<grid, block>>>(m, n, k, A, strideA, B, strideB, bias, C, strideC, static_cast<int>(act), alpha, beta);
    check(cudaGetLastError(), "gemm launch");
  }
  void layerNorm(int rows, int cols, const float* x, const float* gamma, const float* beta, float eps,
                 float* y) override {
    if (rows <= 0) return;
    layerNormKernel<<<rows, 256, 256 * sizeof(float)>>>(cols, x, gamma, beta, eps, y);
    check(cudaGetLastError(), "layerNorm launch");
  }
  void softmax(int rows, int cols, const float* x, float* y) override {
    if (rows <= 0) return;
    softmaxKernel<<<rows, 256, 256 * sizeof(float)>>>(cols, x, y);
    check(cudaGetLastError(), "softmax launch");
  }
  void activate(int64_t count, float* y, Activation act) override {
    if (act == Activation::None || count <= 0) return;
    activateKernel<<<static_cast<unsigned>((count + 255) / 256), 256>>>(count, y, static_cast<int>(act));
    check(cudaGetLastError(), "activation launch");
  }
};

class CudaBackend : public Backend {
 public:
  explicit CudaBackend(int count) : count_(count), kernels_(count) {}
  const char* name() const override { return "cuda"; }
  std::vector<DeviceInfo> devices() override {
    std::vector<DeviceInfo> out;
    for (int i = 0; i < count_; ++i) {
      cudaDeviceProp p{};
      check(cudaGetDeviceProperties(&p, i), "cudaGetDeviceProperties");
      size_t freeB = 0, totalB = 0;
      check(cudaSetDevice(i), "cudaSetDevice");
      check(cudaMemGetInfo(&freeB, &totalB), "cudaMemGetInfo");
      DeviceInfo d;
      d.index = i;
      d.name = p.name;
      d.backend = "cuda";
      d.ccMajor = p.major;
      d.ccMinor = p.minor;
      d.totalBytes = totalB;
      d.freeBytes = freeB;
      out.push_back(d);
    }
    return out;
  }
  void* rawAlloc(int device, size_t bytes) override {
    use(device);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t freeB = 0, totalB = 0;
      cudaMemGetInfo(&freeB, &totalB);
      throw DeviceOutOfMemory("device cuda:" + std::to_string(device), bytes, totalB - freeB, totalB);
    }
    check(e, "cudaMalloc");
    return p;
  }
  void rawFree(int device, void* p, size_t) override {
    use(device);
    check(cudaFree(p), "cudaFree");
  }
  void copyToDevice(int device, void* dst, const void* src, size_t n) override {
    use(device);
    check(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  }
  void copyToHost(int device, void* dst, const void* src, size_t n) override {
    use(device);
    // Synchronous copy on the default stream also waits for the kernels that produced src.
    check(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
  }
  void* hostAlloc(size_t bytes) override {
    void* p = nullptr;
    check(cudaMallocHost(&p, bytes == 0 ? 1 : bytes), "cudaMallocHost");
    return p;
  }
  void hostFree(void* p) override { check(cudaFreeHost(p), "cudaFreeHost"); }
  Kernels& kernels(int device) override {
    use(device);
    return kernels_[device];
  }
  std::string exportShared(int device, void* p) override {
    use(device);
    cudaIpcMemHandle_t h;
    check(cudaIpcGetMemHandle(&h, p), "cudaIpcGetMemHandle");
    static const char* hex = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < sizeof h; ++i) {
      unsigned char c = reinterpret_cast<unsigned char*>(&h)[i];
      s += hex[c >> 4];
      s += hex[c & 15];
    }
    return s;
  }
  void* importShared(int device, const std::string& handle) override {
    use(device);
    cudaIpcMemHandle_t h;
    if (handle.size() != 2 * sizeof h) throw invalidArgument("CUDA IPC handle must be " + std::to_string(2 * sizeof h) + " hex chars");
    for (size_t i = 0; i < sizeof h; ++i)
      reinterpret_cast<unsigned char*>(&h)[i] = static_cast<unsigned char>(std::stoi(handle.substr(2 * i, 2), nullptr, 16));
    void* p = nullptr;
    check(cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess), "cudaIpcOpenMemHandle");
    return p;
  }
  void closeShared(int device, void* p) override {
    use(device);
    check(cudaIpcCloseMemHandle(p), "cudaIpcCloseMemHandle");
  }
  bool hostAddressable() const override { return false; }

 private:
  void use(int device) {
    if (device < 0 || device >= count_) throw invalidArgument("CUDA device " + std::to_string(device) + " does not exist");
    check(cudaSetDevice(device), "cudaSetDevice");
  }
  int count_;
  std::vector<CudaKernels> kernels_;
};

}  // namespace

bool cudaCompiledIn() { return true; }

std::unique_ptr<Backend> makeCudaBackend(std::string* reason) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    if (reason) *reason = std::string("no CUDA device: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
    cudaGetLastError();
    return nullptr;
  }
  if (count == 0) {
    if (reason) *reason = "no CUDA device: cudaGetDeviceCount returned 0";
    return nullptr;
  }
  // Touch the context now so a broken driver shows up here, not in the first allocation.
  e = cudaFree(nullptr);
  if (e != cudaSuccess) {
    if (reason) *reason = std::string("CUDA context creation failed: ") + cudaGetErrorString(e);
    cudaGetLastError();
    return nullptr;
  }
  return std::make_unique<CudaBackend>(count);
}

}  // namespace shoal
