#include "shoal/blob_registry.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "content_hash.hpp"
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
  // Identity beyond the name. An attached blob's hash is computed when a load first compares against it.
  bool hashKnown = false;
  uint64_t hash = 0;
  bool fromFile = false, stampTrusted = false;
  FileStamp stamp;
  bool retired = false;  // replaced under its name; lives until its last reference is released
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

int64_t nanos(const timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; }

FileStamp stampOf(const std::string& path, const struct stat& st) {
  FileStamp f;
  f.path = path;
  f.dev = static_cast<uint64_t>(st.st_dev);
  f.ino = static_cast<uint64_t>(st.st_ino);
  f.size = static_cast<uint64_t>(st.st_size);
  f.mtimeNs = nanos(st.st_mtim);
  f.ctimeNs = nanos(st.st_ctim);
  return f;
}

// Reads a whole regular file, again when it changed while being read: a torn image must never be loaded.
std::vector<uint8_t> readStable(const std::string& name, const std::string& path, FileStamp* stamp) {
  const std::string what = "weights file " + path + " for blob \"" + name + "\"";
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw ioError("cannot open " + what + ": " + std::strerror(errno));
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat before {}, after {};
    if (::fstat(fd, &before) != 0) throw ioError("cannot stat " + what + ": " + std::strerror(errno));
    if (!S_ISREG(before.st_mode)) throw ioError(what + " is not a regular file");
    std::vector<uint8_t> image(static_cast<size_t>(before.st_size));
    size_t got = 0;
    while (got < image.size()) {
      const ssize_t r = ::read(fd, image.data() + got, image.size() - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw ioError("cannot read " + what + ": " + std::strerror(errno));
      if (r == 0) break;  // it shrank under us
      got += static_cast<size_t>(r);
    }
    if (::fstat(fd, &after) != 0) throw ioError("cannot stat " + what + ": " + std::strerror(errno));
    const FileStamp a = stampOf(path, before);
    if (got == image.size() && a == stampOf(path, after)) {
      *stamp = a;
      return image;
    }
  }
  throw ioError(what + " kept changing while it was read (3 attempts)");
}

}  // namespace

BlobRegistry::BlobRegistry(Backend& backend, int device, std::chrono::nanoseconds racyWindow)
    : backend_(backend), device_(device), racyWindow_(racyWindow) {}

BlobRegistry::~BlobRegistry() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [n, b] : blobs_) freeBlobLocked(*b);
  for (auto& b : retired_) freeBlobLocked(*b);
}

BlobInfo BlobRegistry::loadFile(const std::string& name, const std::string& path, bool shared) {
  if (name.empty()) throw invalidArgument("blob name must not be empty");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {  // errors are reported by the read below
    const FileStamp now = stampOf(path, st);
    std::lock_guard<std::mutex> lk(mu_);
    auto it = blobs_.find(name);
    // The common case, many replicas of one family: the same file, untouched since it was loaded.
    if (it != blobs_.end() && it->second->fromFile && it->second->stampTrusted && it->second->stamp == now) {
      ++counters_.dedupedLoads;
      return infoLocked(*it->second);
    }
  }
  Source src;
  src.file = true;
  std::vector<uint8_t> image = readStable(name, path, &src.stamp);
  // Validate before taking device memory: a bad file must not evict anything.
  (void)parseSafetensorsHeader(image.data(), image.size(), image.size());
  src.hash = contentHash(image.data(), image.size());
  // A rewrite within the filesystem's timestamp granularity of the last change may leave the stamp as it is:
  // trust the stamp only for files whose last change is older than the window (git's racy-clean rule).
  const int64_t nowNs = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
  src.trusted = nowNs - std::max(src.stamp.mtimeNs, src.stamp.ctimeNs) >= racyWindow_.count();
  return loadImage(name, std::move(image), shared, src);
}

BlobInfo BlobRegistry::loadBuffer(const std::string& name, const uint8_t* data, size_t bytes, bool shared) {
  Source src;
  src.hash = contentHash(data, bytes);
  return loadImage(name, std::vector<uint8_t>(data, data + bytes), shared, src);
}

void BlobRegistry::retireLocked(std::unique_ptr<Blob> b) {
  if (b->refs == 0) {
    freeBlobLocked(*b);
    return;
  }
  b->retired = true;
  retired_.push_back(std::move(b));
}

BlobInfo BlobRegistry::loadImage(const std::string& name, std::vector<uint8_t> image, bool shared, const Source& src) {
  if (name.empty()) throw invalidArgument("blob name must not be empty");
  std::lock_guard<std::mutex> lk(mu_);
  auto it = blobs_.find(name);
  if (it != blobs_.end()) {
    Blob& old = *it->second;
    if (src.file) ++counters_.rehashedLoads;
    if (!old.hashKnown && old.bytes == image.size()) {  // attached from another process: hash its bytes once
      std::vector<uint8_t> copy(old.bytes);
      if (old.state == BlobState::Resident) backend_.copyToHost(device_, copy.data(), old.device, old.bytes);
      else std::memcpy(copy.data(), old.host, old.bytes);
      old.hash = contentHash(copy.data(), copy.size());
      old.hashKnown = true;
    }
    const bool same = old.hashKnown && old.hash == src.hash && old.bytes == image.size();
    // Two loaders of one path racing a rewrite: the one that read the older version must not replace the
    // newer one already here (ctime only moves forward for a path's successive versions).
    const bool older = src.file && old.fromFile && old.stamp.path == src.stamp.path && old.stamp.ctimeNs > src.stamp.ctimeNs;
    if (older) {
      ++counters_.dedupedLoads;
      return infoLocked(old);
    }
    if (same) {  // same content: a replica loading what is already here, or a loader that lost a race
      if (src.file) {
        old.fromFile = true;
        old.stamp = src.stamp;
        old.stampTrusted = src.trusted;
      }
      ++counters_.dedupedLoads;
      return infoLocked(old);
    }
    // The content changed under this name (a redeploy): the new bytes replace it. An idle old blob is freed
    // first (its memory may be what the new one needs); a referenced one keeps serving its holders and gives
    // up its shm name so the new blob can publish under it. Should the new load then fail, the name is gone
    // (or, when referenced, keeps its old bytes) and the next load starts afresh.
    ++counters_.reloads;
    if (old.refs == 0) {
      freeBlobLocked(old);
      blobs_.erase(it);
      it = blobs_.end();
    } else {
      old.segment.disown();
    }
  }
  auto b = std::make_unique<Blob>();
  b->name = name;
  b->bytes = image.size();
  b->header = tryParse(image.data(), image.size(), false);
  b->shared = shared;
  b->hashKnown = true;
  b->hash = src.hash;
  b->fromFile = src.file;
  b->stamp = src.stamp;
  b->stampTrusted = src.trusted;
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
        // Same name, other bytes: another process published an older (or newer) version of this blob.
        if (b->bytes != 0 && std::memcmp(b->segment.data(), image.data(), b->bytes) != 0) {
          throw invalidArgument("shared blob \"" + name + "\" is published by another process with different contents (" +
                                std::to_string(b->bytes) + " bytes); drop it there or load this version under another name");
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
  if (it != blobs_.end()) {
    retireLocked(std::move(it->second));
    it->second = std::move(b);
  } else {
    blobs_.emplace(name, std::move(b));
  }
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
  if (b->retired && b->refs == 0) {
    auto r = std::find_if(retired_.begin(), retired_.end(), [b](const std::unique_ptr<Blob>& p) { return p.get() == b; });
    freeBlobLocked(*b);
    retired_.erase(r);
  }
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
  s.retired = retired_.size();
  for (auto& [n, b] : blobs_) {
    if (b->state == BlobState::Resident) {
      s.residentBytes += b->bytes;
      if (b->refs == 0) s.idleBytes += b->bytes;
    } else {
      s.evictedBytes += b->bytes;
    }
  }
  for (auto& b : retired_) s.residentBytes += b->bytes;  // referenced, hence resident
  return s;
}

}  // namespace shoal
