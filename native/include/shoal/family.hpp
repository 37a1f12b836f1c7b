// A model family: a shared base (a stack of linear layers with activations) plus per-variant LoRA adapters
// on base layers and/or per-variant output heads. Inference over a batch that mixes variants runs every base
// GEMM once for the whole batch and groups the adapter and head work by variant (the Punica / S-LoRA idea):
// rows are permuted once so each variant's rows are contiguous, then each group is one segment.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "shoal/blob_registry.hpp"
#include "shoal/pool.hpp"

namespace shoal {

struct LayerSpec {
  std::string weight;  // tensor [in x out]
  std::string bias;    // tensor [out], empty for none
  Activation act = Activation::None;
};

struct LoraSpec {
  int layer = 0;
  std::string a, b;  // tensors [in x r] and [r x out]
  float scale = 1.f;
};

struct VariantSpec {
  std::string id;
  std::string blob, path;  // blob name and safetensors file (empty path: the blob must already be loaded)
  std::vector<LoraSpec> loras;
  bool hasHead = false;
  LayerSpec head;
};

/** Work counters: they show the base running once per batch while adapters and heads run once per group. */
struct FamilyStats {
  uint64_t batches = 0, rows = 0;
  uint64_t variantGroups = 0;  // distinct variants summed over batches
  uint64_t baseGemms = 0;      // one per base layer per batch, whatever the mix
  uint64_t adapterGemms = 0;   // LoRA segments (each is two small GEMMs), one per (layer, variant group)
  uint64_t headGemms = 0;      // one per variant group with a head
};

struct FamilySpec {
  std::string name;
  std::string baseBlob, basePath;  // empty basePath: the blob must already be loaded
  std::vector<LayerSpec> layers;
  std::vector<VariantSpec> variants;
};

class Family {
 public:
  /** Loads (or reuses) the base and variant blobs, takes references, and checks every shape. */
  Family(const FamilySpec& spec, BlobRegistry& registry, std::shared_ptr<Pool> pool, Backend& backend);
  ~Family();
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  int inputDim() const { return inputDim_; }
  int outputDim() const { return outputDim_; }
  size_t variantCount() const { return variants_.size(); }
  const std::string& variantId(size_t i) const { return variants_.at(i).id; }
  const std::string& name() const { return name_; }
  FamilyStats stats() const;
  /** x is host memory [n x inputDim]; variant[i] indexes spec.variants. Returns [n x outputDim]. */
  std::vector<float> infer(const float* x, int n, const int32_t* variant);

 private:
  struct Layer {
    const float* w;
    const float* bias;
    int in, out;
    Activation act;
  };
  struct Lora {
    const float* a;
    const float* b;
    int r;
    float scale;
  };
  struct Variant {
    std::string id;
    uint64_t ref;
    std::vector<Lora> loraByLayer;  // r == 0: no adapter on that layer
    bool hasHead;
    Layer head;
  };
  Layer resolveLayer(uint64_t ref, const LayerSpec& s, int expectIn);
  uint64_t loadAndAcquire(const std::string& blob, const std::string& path);

  std::string name_;
  BlobRegistry& registry_;
  std::shared_ptr<Pool> pool_;
  Backend& backend_;
  uint64_t baseRef_ = 0;
  std::vector<Layer> layers_;
  std::vector<Variant> variants_;
  std::vector<bool> layerHasLora_;
  int inputDim_ = 0, outputDim_ = 0, maxDim_ = 0, maxRank_ = 1;
  mutable std::mutex statsMu_;
  FamilyStats stats_;
};

}  // namespace shoal
