#include "shoal/blob_registry.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>

#include "shoal/errors.hpp"

namespace shoal {

struct BlobRegistry::Blob {
  std::string name;
  uint64_t bytes = 0;
  SafetensorsHeader header;
  BlobState state = BlobState::Resident;
  uint8_t* device = nullptr;  // resident image
  void* host = nullptr;       // evicted image
  uint32_t refs = 0;
  uint64_t lastUsed = 0;
  uint64_t evictions = 0, restores = 0;
  bool shared = false, attached = false;
  bool external = false;  // counted through reserveExternal (host shm blobs)
  ShmSegment segment;  // host: the image itself; CUDA: the published IPC handle
};

namespace {

std::string ipcKey(const std::string& name) { return "ipc." + name; }

// A CUDA IPC record published in shm: the image size then the backend's handle string.
struct IpcRecord {
  uint64_t bytes;
  char handle[256];
};

SafetensorsHeader tryParse(const uint8_t* data, uint64_t bytes, bool required) {
  try {
    return parseSafetensorsHeader(data, bytes, bytes);
  } catch (const Error&) {
    if (required) throw;
    return {};
  }
}

}  // namespace

BlobRegistry::BlobRegistry(Backend& backend, int device) : backend_(backend), device_(device) {}

BlobRegistry::~BlobRegistry() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [n, b] : blobs_) freeBlobLocked(*b);
}

BlobInfo BlobRegistry::loadFile(const std::string& name, const std::string& path, bool shared) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = blobs_.find(name);
    if (it != blobs_.end()) {
      ++counters_.dedupedLoads;
      return infoLocked(*it->second);
    }
  }
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw ioError("cannot open weights file " + path + " for blob \"" + name + "\"");
  const auto size = static_cast<std::streamoff>(f.tellg());
  std::vector<uint8_t> image(static_cast<size_t>(size));
  f.seekg(0);
  if (!f.read(reinterpret_cast<char*>(image.data()), size)) throw ioError("cannot read weights file " + path);
  // Validate before taking device memory: a bad file must not evict anything.
  (void)parseSafetensorsHeader(image.data(), image.size(), image.size());
  return loadImage(name, std::move(image), shared);
}

BlobInfo BlobRegistry::loadBuffer(const std::string& name, const uint8_t* data, size_t bytes, bool shared) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = blobs_.find(name);
    if (it != blobs_.end()) {
      if (it->second->bytes != bytes) {
        throw invalidArgument("blob \"" + name + "\" already loaded with " + std::to_string(it->second->bytes) +
                              " bytes, got a buffer of " + std::to_string(bytes));
      }
      ++counters_.dedupedLoads;
      return infoLocked(*it->second);
    }
  }
  return loadImage(name, std::vector<uint8_t>(data, data + bytes), shared);
}

BlobInfo BlobRegistry::loadImage(const std::string& name, std::vector<uint8_t> image, bool shared) {
  if (name.empty()) throw invalidArgument("blob name must not be empty");
  std::lock_guard<std::mutex> lk(mu_);
  auto it = blobs_.find(name);
  if (it != blobs_.end()) {  // lost a race with another loader of the same name
    ++counters_.dedupedLoads;
    return infoLocked(*it->second);
  }
  auto b = std::make_unique<Blob>();
  b->name = name;
  b->bytes = image.size();
  b->header = tryParse(image.data(), image.size(), false);
  b->shared = shared;
  if (shared && backend_.hostAddressable()) {
    reserveExternalLocked(b->bytes);
    try {
      if (ShmSegment::exists(name)) {
        b->segment = ShmSegment::open(name);  // another process published it first: map theirs
        b->attached = true;
        if (b->segment.size() != b->bytes) {
          throw invalidArgument("shared blob \"" + name + "\" exists with " + std::to_string(b->segment.size()) +
                                " bytes, this load has " + std::to_string(b->bytes));
        }
      } else {
        b->segment = ShmSegment::create(name, b->bytes);
        std::memcpy(b->segment.data(), image.data(), b->bytes);
      }
    } catch (...) {
      backend_.releaseExternal(device_, b->bytes);
      throw;
    }
    b->external = true;
    b->device = static_cast<uint8_t*>(b->segment.data());
  } else {
    b->device = static_cast<uint8_t*>(allocDeviceLocked(b->bytes));
    try {
      backend_.copyToDevice(device_, b->device, image.data(), b->bytes);
      if (shared) {
        IpcRecord rec{};
        rec.bytes = b->bytes;
        std::string h = backend_.exportShared(device_, b->device);
        if (h.size() >= sizeof(rec.handle)) throw backendError("IPC handle too long");
        std::memcpy(rec.handle, h.data(), h.size());
        b->segment = ShmSegment::create(ipcKey(name), sizeof(IpcRecord));
        std::memcpy(b->segment.data(), &rec, sizeof rec);
      }
    } catch (...) {
      backend_.rawFree(device_, b->device, b->bytes);
      throw;
    }
  }
  b->lastUsed = ++tick_;
  ++counters_.loads;
  BlobInfo info = infoLocked(*b);
  blobs_.emplace(name, std::move(b));
  return info;
}

BlobInfo BlobRegistry::attachShared(const std::string& name) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = blobs_.find(name);
  if (it != blobs_.end()) return infoLocked(*it->second);
  auto b = std::make_unique<Blob>();
  b->name = name;
  b->shared = true;
  b->attached = true;
  if (backend_.hostAddressable()) {
    b->segment = ShmSegment::open(name);
    b->bytes = b->segment.size();
    reserveExternalLocked(b->bytes);
    b->external = true;
    b->device = static_cast<uint8_t*>(b->segment.data());
    b->header = tryParse(b->device, b->bytes, false);
  } else {
    ShmSegment rec = ShmSegment::open(ipcKey(name));
    IpcRecord r{};
    std::memcpy(&r, rec.data(), std::min(sizeof r, rec.size()));
    r.handle[sizeof(r.handle) - 1] = 0;
    b->bytes = r.bytes;
    b->device = static_cast<uint8_t*>(backend_.importShared(device_, r.handle));
    // Parse the header from a host copy of the first bytes.
    std::vector<uint8_t> head(std::min<uint64_t>(b->bytes, 8));
    backend_.copyToHost(device_, head.data(), b->device, head.size());
    if (head.size() == 8) {
      uint64_t len = safetensorsHeaderLength(head.data());
      if (8 + len <= b->bytes) {
        head.resize(8 + len);
        backend_.copyToHost(device_, head.data(), b->device, head.size());
        try {
          b->header = parseSafetensorsHeader(head.data(), head.size(), b->bytes);
        } catch (const Error&) {
          b->header = {};  // an opaque buffer blob
        }
      }
    }
  }
  b->lastUsed = ++tick_;
  ++counters_.loads;
  BlobInfo info = infoLocked(*b);
  blobs_.emplace(name, std::move(b));
  return info;
}

void BlobRegistry::reserveExternalLocked(uint64_t bytes) {
  for (;;) {
    try {
      backend_.reserveExternal(device_, bytes);
      return;
    } catch (const DeviceOutOfMemory&) {
      if (evictLocked(bytes) == 0) throw;
    }
  }
}

void* BlobRegistry::allocDeviceLocked(uint64_t bytes) {
  for (;;) {
    try {
      return backend_.rawAlloc(device_, bytes);
    } catch (const DeviceOutOfMemory&) {
      if (evictLocked(bytes) == 0) throw;
    }
  }
}

uint64_t BlobRegistry::evictLocked(uint64_t bytes) {
  std::vector<Blob*> idle;
  for (auto& [n, b] : blobs_)
    if (b->refs == 0 && b->state == BlobState::Resident && !b->shared) idle.push_back(b.get());
  std::sort(idle.begin(), idle.end(), [](Blob* a, Blob* b) { return a->lastUsed < b->lastUsed; });
  uint64_t freed = 0;
  for (Blob* b : idle) {
    if (freed >= bytes) break;
    evictBlobLocked(*b);
    freed += b->bytes;
  }
  return freed;
}

void BlobRegistry::evictBlobLocked(Blob& b) {
  void* host = backend_.hostAlloc(b.bytes);
  backend_.copyToHost(device_, host, b.device, b.bytes);
  backend_.rawFree(device_, b.device, b.bytes);
  b.device = nullptr;
  b.host = host;
  b.state = BlobState::Evicted;
  ++b.evictions;
  ++counters_.evictions;
}

uint64_t BlobRegistry::evictFor(uint64_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  return evictLocked(bytes);
}

bool BlobRegistry::evict(const std::string& name) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = blobs_.find(name);
  if (it == blobs_.end()) throw notFound("no blob named \"" + name + "\"");
  Blob& b = *it->second;
  if (b.refs != 0 || b.shared || b.state == BlobState::Evicted) return false;
  evictBlobLocked(b);
  return true;
}

uint64_t BlobRegistry::acquire(const std::string& name) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = blobs_.find(name);
  if (it == blobs_.end()) throw notFound("no blob named \"" + name + "\" (load it first)");
  Blob& b = *it->second;
  if (b.state == BlobState::Evicted) {
    uint8_t* dev = static_cast<uint8_t*>(allocDeviceLocked(b.bytes));
    backend_.copyToDevice(device_, dev, b.host, b.bytes);
    backend_.hostFree(b.host);
    b.host = nullptr;
    b.device = dev;
    b.state = BlobState::Resident;
    ++b.restores;
    ++counters_.restores;
  }
  ++b.refs;
  b.lastUsed = ++tick_;
  const uint64_t ref = nextRef_++;
  refs_.emplace(ref, &b);
  return ref;
}

void BlobRegistry::release(uint64_t ref) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = refs_.find(ref);
  if (it == refs_.end()) {
    throw invalidHandle("blob ref " + std::to_string(ref) + " is not held (released twice or never acquired)");
  }
  Blob* b = it->second;
  refs_.erase(it);
  --b->refs;
  b->lastUsed = ++tick_;
}

BlobView BlobRegistry::view(uint64_t ref) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = refs_.find(ref);
  if (it == refs_.end()) throw invalidHandle("blob ref " + std::to_string(ref) + " is not held (use after release)");
  const Blob* b = it->second;
  return BlobView{&b->name, b->device, b->bytes, &b->header};
}

const float* BlobRegistry::tensorF32(uint64_t ref, const std::string& tensor, const std::vector<int64_t>& shape,
                                     std::vector<int64_t>* actual) const {
  BlobView v = view(ref);
  auto it = v.header->tensors.find(tensor);
  if (it == v.header->tensors.end()) throw notFound("blob \"" + *v.name + "\" has no tensor \"" + tensor + "\"");
  const TensorInfo& t = it->second;
  if (t.dtype != "F32") throw invalidArgument("tensor \"" + tensor + "\" is " + t.dtype + ", only F32 is supported");
  if (!shape.empty() && shape != t.shape) {
    std::string want, got;
    for (auto d : shape) want += (want.empty() ? "" : "x") + std::to_string(d);
    for (auto d : t.shape) got += (got.empty() ? "" : "x") + std::to_string(d);
    throw invalidArgument("tensor \"" + tensor + "\" in blob \"" + *v.name + "\" has shape " + got + ", expected " + want);
  }
  if (t.begin % 4 != 0) throw invalidArgument("tensor \"" + tensor + "\" is not 4-byte aligned in its file");
  if (actual) *actual = t.shape;
  return reinterpret_cast<const float*>(v.data + t.begin);
}

void BlobRegistry::freeBlobLocked(Blob& b) {
  if (b.segment.data() && backend_.hostAddressable()) {
    b.segment = ShmSegment();  // unmaps, and unlinks if we created it
    if (b.external) backend_.releaseExternal(device_, b.bytes);
  } else if (b.device) {
    if (b.attached) backend_.closeShared(device_, b.device);
    else backend_.rawFree(device_, b.device, b.bytes);
  }
  if (b.host) backend_.hostFree(b.host);
  b.device = nullptr;
  b.host = nullptr;
}

void BlobRegistry::drop(const std::string& name) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = blobs_.find(name);
  if (it == blobs_.end()) throw notFound("no blob named \"" + name + "\"");
  if (it->second->refs != 0) {
    throw invalidHandle("blob \"" + name + "\" still has " + std::to_string(it->second->refs) + " references");
  }
  freeBlobLocked(*it->second);
  blobs_.erase(it);
}

BlobInfo BlobRegistry::infoLocked(const Blob& b) const {
  BlobInfo i;
  i.name = b.name;
  i.bytes = b.bytes;
  i.refs = b.refs;
  i.state = b.state == BlobState::Resident ? "resident" : "evicted";
  i.shared = b.shared;
  i.attached = b.attached;
  i.tensors = static_cast<uint32_t>(b.header.tensors.size());
  i.evictions = b.evictions;
  i.restores = b.restores;
  return i;
}

BlobInfo BlobRegistry::info(const std::string& name) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = blobs_.find(name);
  if (it == blobs_.end()) throw notFound("no blob named \"" + name + "\"");
  return infoLocked(*it->second);
}

std::vector<BlobInfo> BlobRegistry::list() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<BlobInfo> out;
  for (auto& [n, b] : blobs_) out.push_back(infoLocked(*b));
  return out;
}

RegistryStats BlobRegistry::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  RegistryStats s = counters_;
  s.blobs = blobs_.size();
  s.refs = refs_.size();
  for (auto& [n, b] : blobs_) {
    if (b->state == BlobState::Resident) {
      s.residentBytes += b->bytes;
      if (b->refs == 0) s.idleBytes += b->bytes;
    } else {
      s.evictedBytes += b->bytes;
    }
  }
  return s;
}

}  // namespace shoal
