#include "shoal/family.hpp"

#include <algorithm>
#include <cstdint>

#include "shoal/errors.hpp"

namespace shoal {

namespace {

// The kernels take int dimensions and a zero-width layer has nothing to compute: every dimension of a weight
// must be in [1, 2^31-1]. The safetensors parser has already checked that shape x dtype fits in the file.
int checkedDim(const std::string& tensor, const std::string& blob, const std::vector<int64_t>& shape, size_t i) {
  const int64_t d = shape[i];
  if (d < 1 || d > INT32_MAX) {
    throw invalidArgument("tensor \"" + tensor + "\" in blob \"" + blob + "\" has shape " + formatShape(shape) +
                          ": dimension " + std::to_string(i) + " must be in [1, " + std::to_string(INT32_MAX) + "]");
  }
  return static_cast<int>(d);
}

}  // namespace

Family::Layer Family::resolveLayer(uint64_t ref, const LayerSpec& s, int expectIn) {
  std::vector<int64_t> shape;
  Layer l{};
  l.w = registry_.tensorF32(ref, s.weight, {}, &shape);
  const std::string& blob = *registry_.view(ref).name;
  if (shape.size() != 2) {
    throw invalidArgument("tensor \"" + s.weight + "\" in blob \"" + blob + "\" must be 2-D [in x out], got shape " + formatShape(shape));
  }
  l.in = checkedDim(s.weight, blob, shape, 0);
  l.out = checkedDim(s.weight, blob, shape, 1);
  if (expectIn > 0 && l.in != expectIn) {
    throw invalidArgument("tensor \"" + s.weight + "\" has " + std::to_string(l.in) + " input rows, expected " +
                          std::to_string(expectIn));
  }
  l.bias = s.bias.empty() ? nullptr : registry_.tensorF32(ref, s.bias, {l.out});
  l.act = s.act;
  return l;
}

uint64_t Family::loadAndAcquire(const std::string& blob, const std::string& path) {
  if (path.empty()) {
    (void)registry_.info(blob);  // NotFound names the blob when it was never loaded
  } else {
    registry_.loadFile(blob, path, false);
  }
  return registry_.acquire(blob);
}

Family::Family(const FamilySpec& spec, BlobRegistry& registry, std::shared_ptr<Pool> pool, Backend& backend)
    : name_(spec.name), registry_(registry), pool_(std::move(pool)), backend_(backend) {
  if (spec.layers.empty()) throw invalidArgument("family \"" + spec.name + "\" has no base layers");
  if (spec.variants.empty()) throw invalidArgument("family \"" + spec.name + "\" has no variants");
  std::vector<uint64_t> taken;
  try {
    baseRef_ = loadAndAcquire(spec.baseBlob, spec.basePath);
    taken.push_back(baseRef_);
    int dim = 0;
    for (auto& ls : spec.layers) {
      layers_.push_back(resolveLayer(baseRef_, ls, dim));
      if (dim == 0) inputDim_ = layers_.back().in;
      dim = layers_.back().out;
      maxDim_ = std::max({maxDim_, layers_.back().in, layers_.back().out});
    }
    layerHasLora_.assign(layers_.size(), false);
    outputDim_ = -1;
    for (auto& vs : spec.variants) {
      for (auto& earlier : variants_)
        if (earlier.id == vs.id) throw invalidArgument("family \"" + spec.name + "\" has two variants named \"" + vs.id + "\"");
      Variant v{};
      v.id = vs.id;
      v.ref = loadAndAcquire(vs.blob, vs.path);
      taken.push_back(v.ref);
      v.loraByLayer.assign(layers_.size(), Lora{nullptr, nullptr, 0, 0.f});
      for (auto& lo : vs.loras) {
        if (lo.layer < 0 || lo.layer >= static_cast<int>(layers_.size())) {
          throw invalidArgument("variant \"" + vs.id + "\" has an adapter on layer " + std::to_string(lo.layer) +
                                " but the base has " + std::to_string(layers_.size()) + " layers");
        }
        const Layer& L = layers_[lo.layer];
        std::vector<int64_t> sa;
        const float* a = registry_.tensorF32(v.ref, lo.a, {}, &sa);
        if (sa.size() != 2 || sa[0] != L.in) {
          throw invalidArgument("adapter tensor \"" + lo.a + "\" in blob \"" + vs.blob + "\" must be [" + std::to_string(L.in) +
                                " x r], got shape " + formatShape(sa));
        }
        const int r = checkedDim(lo.a, vs.blob, sa, 1);
        const float* b = registry_.tensorF32(v.ref, lo.b, {r, L.out});
        v.loraByLayer[lo.layer] = Lora{a, b, r, lo.scale};
        layerHasLora_[lo.layer] = true;
        maxRank_ = std::max(maxRank_, r);
      }
      v.hasHead = vs.hasHead;
      int out = dim;
      if (vs.hasHead) {
        v.head = resolveLayer(v.ref, vs.head, dim);
        out = v.head.out;
        maxDim_ = std::max(maxDim_, out);
      }
      if (outputDim_ >= 0 && out != outputDim_) {
        throw invalidArgument("variant \"" + vs.id + "\" outputs " + std::to_string(out) +
                              " values but earlier variants output " + std::to_string(outputDim_));
      }
      outputDim_ = out;
      variants_.push_back(std::move(v));
    }
  } catch (...) {
    for (auto r : taken) registry_.release(r);
    throw;
  }
}

Family::~Family() {
  try {
    registry_.release(baseRef_);
    for (auto& v : variants_) registry_.release(v.ref);
  } catch (...) {
    // Refs are owned by this family alone; a failure here is a bug, never worth terminating the process.
  }
}

FamilyStats Family::stats() const {
  std::lock_guard<std::mutex> lk(statsMu_);
  return stats_;
}

std::vector<float> Family::infer(const float* x, int n, const int32_t* variant) {
  if (n <= 0) return {};
  const int nv = static_cast<int>(variants_.size());
  // Counting sort by variant: one permutation for the whole pass.
  std::vector<int> count(nv + 1, 0);
  for (int i = 0; i < n; ++i) {
    if (variant[i] < 0 || variant[i] >= nv) {
      throw invalidArgument("row " + std::to_string(i) + " names variant index " + std::to_string(variant[i]) +
                            " but the family has " + std::to_string(nv));
    }
    ++count[variant[i] + 1];
  }
  for (int v = 0; v < nv; ++v) count[v + 1] += count[v];
  std::vector<int> start(count.begin(), count.end() - 1), pos(start), order(n);
  for (int i = 0; i < n; ++i) order[pos[variant[i]]++] = i;

  std::vector<float> staged(static_cast<size_t>(n) * inputDim_);
  for (int j = 0; j < n; ++j)
    std::copy(x + static_cast<size_t>(order[j]) * inputDim_, x + static_cast<size_t>(order[j] + 1) * inputDim_,
              staged.begin() + static_cast<size_t>(j) * inputDim_);

  FamilyStats work;
  work.batches = 1;
  work.rows = static_cast<uint64_t>(n);
  for (int v = 0; v < nv; ++v) work.variantGroups += count[v + 1] > count[v] ? 1 : 0;

  const int dev = pool_->device();
  Kernels& k = backend_.kernels(dev);
  // Workspace for this call only, returned on every exit path; JS cannot free these blocks under it.
  Pool::Lease lease(*pool_);
  const uint64_t f = sizeof(float);
  float* cur = static_cast<float*>(lease.take(static_cast<uint64_t>(n) * maxDim_ * f));
  float* next = static_cast<float*>(lease.take(static_cast<uint64_t>(n) * maxDim_ * f));
  float* tmp = static_cast<float*>(lease.take(static_cast<uint64_t>(n) * maxRank_ * f));
  backend_.copyToDevice(dev, cur, staged.data(), staged.size() * sizeof(float));

  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    const bool lora = layerHasLora_[l];
    // Base GEMM once for the whole batch; fuse the activation unless adapters still have to add in.
    k.gemm(1, n, L.out, L.in, cur, 0, L.w, 0, L.bias, next, 0, lora ? Activation::None : L.act, 1.f, 0.f);
    ++work.baseGemms;
    if (lora) {
      // Two grouped launches per layer, whatever the number of variants: shrink (xA) then expand (+= s.tB).
      std::vector<GemmSegment> shrink, expand;
      for (int v = 0; v < nv; ++v) {
        const int rows = count[v + 1] - count[v];
        const Lora& a = variants_[v].loraByLayer[l];
        if (rows == 0 || a.r == 0) continue;
        float* t = tmp + static_cast<size_t>(start[v]) * maxRank_;
        shrink.push_back({rows, a.r, L.in, cur + static_cast<size_t>(start[v]) * L.in, a.a, nullptr, t, Activation::None, 1.f, 0.f});
        expand.push_back({rows, L.out, a.r, t, a.b, nullptr, next + static_cast<size_t>(start[v]) * L.out, Activation::None, a.scale, 1.f});
        ++work.adapterGemms;
      }
      k.groupedGemm(shrink);
      k.groupedGemm(expand);
      k.activate(static_cast<int64_t>(n) * L.out, next, L.act);
    }
    std::swap(cur, next);
  }
  const int dim = layers_.back().out;
  std::vector<GemmSegment> heads;
  for (int v = 0; v < nv; ++v) {
    const int rows = count[v + 1] - count[v];
    const Variant& var = variants_[v];
    if (rows == 0 || !var.hasHead) continue;
    heads.push_back({rows, var.head.out, dim, cur + static_cast<size_t>(start[v]) * dim, var.head.w, var.head.bias,
                     next + static_cast<size_t>(start[v]) * outputDim_, var.head.act, 1.f, 0.f});
    ++work.headGemms;
  }
  k.groupedGemm(heads);
  // Heads are all-or-nothing per family output dim; variants without a head pass the base output through.
  std::vector<float> host(static_cast<size_t>(n) * outputDim_);
  std::vector<float> headOut(static_cast<size_t>(n) * outputDim_), baseOut(static_cast<size_t>(n) * dim);
  bool anyHead = false, anyPlain = false;
  for (auto& v : variants_) (v.hasHead ? anyHead : anyPlain) = true;
  if (anyHead) backend_.copyToHost(dev, headOut.data(), next, headOut.size() * sizeof(float));
  if (anyPlain) backend_.copyToHost(dev, baseOut.data(), cur, baseOut.size() * sizeof(float));
  for (int j = 0; j < n; ++j) {
    const int v = variant[order[j]];
    const float* src = variants_[v].hasHead ? &headOut[static_cast<size_t>(j) * outputDim_]
                                            : &baseOut[static_cast<size_t>(j) * dim];
    std::copy(src, src + outputDim_, host.begin() + static_cast<size_t>(order[j]) * outputDim_);
  }
  {
    std::lock_guard<std::mutex> lk(statsMu_);
    stats_.batches += work.batches;
    stats_.rows += work.rows;
    stats_.variantGroups += work.variantGroups;
    stats_.baseGemms += work.baseGemms;
    stats_.adapterGemms += work.adapterGemms;
    stats_.headGemms += work.headGemms;
  }
  return host;
}

}  // namespace shoal
