#include "shoal/shm.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "shoal/errors.hpp"

namespace shoal {

std::string ShmSegment::segmentName(const std::string& key) {
  std::string out = "/shoal-";
  for (char c : key) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-';
    out += ok ? c : '_';
  }
  // NAME_MAX is 255 on Linux; keep a margin.
  if (out.size() > 200) throw invalidArgument("shared blob name too long: " + key);
  return out;
}

static void* mapFd(int fd, size_t bytes, const std::string& name) {
  void* p = mmap(nullptr, bytes == 0 ? 1 : bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw ioError("mmap " + name + ": " + std::strerror(errno));
  return p;
}

ShmSegment ShmSegment::create(const std::string& key, size_t bytes) {
  const std::string name = segmentName(key);
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) throw ioError("shm_open(create) " + name + ": " + std::strerror(errno));
  if (ftruncate(fd, static_cast<off_t>(bytes == 0 ? 1 : bytes)) != 0) {
    int e = errno;
    close(fd);
    shm_unlink(name.c_str());
    throw ioError("ftruncate " + name + ": " + std::strerror(e));
  }
  ShmSegment s;
  try {
    s.data_ = mapFd(fd, bytes, name);
  } catch (...) {
    close(fd);
    shm_unlink(name.c_str());
    throw;
  }
  close(fd);
  s.key_ = key;
  s.size_ = bytes;
  s.owner_ = true;
  return s;
}

ShmSegment ShmSegment::open(const std::string& key) {
  const std::string name = segmentName(key);
  int fd = shm_open(name.c_str(), O_RDWR, 0600);
  if (fd < 0) throw notFound("shm_open " + name + ": " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    throw ioError("fstat " + name + ": " + std::strerror(e));
  }
  ShmSegment s;
  s.size_ = static_cast<size_t>(st.st_size);
  try {
    s.data_ = mapFd(fd, s.size_, name);
  } catch (...) {
    close(fd);
    throw;
  }
  close(fd);
  s.key_ = key;
  return s;
}

bool ShmSegment::exists(const std::string& key) {
  int fd = shm_open(segmentName(key).c_str(), O_RDONLY, 0600);
  if (fd < 0) return false;
  close(fd);
  return true;
}

void ShmSegment::unlink(const std::string& key) { shm_unlink(segmentName(key).c_str()); }

ShmSegment::ShmSegment(ShmSegment&& o) noexcept { *this = std::move(o); }

ShmSegment& ShmSegment::operator=(ShmSegment&& o) noexcept {
  if (this != &o) {
    unmap();
    if (owner_) unlink(key_);
    key_ = std::move(o.key_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    owner_ = std::exchange(o.owner_, false);
  }
  return *this;
}

void ShmSegment::disown() {
  if (owner_) unlink(key_);
  owner_ = false;
}

void ShmSegment::unmap() {
  if (data_) munmap(data_, size_ == 0 ? 1 : size_);
  data_ = nullptr;
}

void ShmSegment::remap() {
  if (data_) return;
  ShmSegment fresh = open(key_);
  if (fresh.size_ != size_) throw ioError("shared segment " + segmentName(key_) + " changed size while unmapped");
  data_ = std::exchange(fresh.data_, nullptr);
}

ShmSegment::~ShmSegment() {
  unmap();
  if (owner_) unlink(key_);
}

}  // namespace shoal
