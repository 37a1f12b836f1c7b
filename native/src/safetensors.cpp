#include "shoal/safetensors.hpp"

#include <cstring>
#include <memory>

#include "shoal/errors.hpp"

namespace shoal {

namespace {

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  double num = 0;
  bool b = false;
  std::string str;
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;
};

class Parser {
 public:
  Parser(const char* s, size_t n) : s_(s), n_(n) {}
  Json parseDocument() {
    Json v = value(0);
    ws();
    if (i_ != n_) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& why) {
    throw invalidArgument("safetensors header: invalid JSON at byte " + std::to_string(i_) + ": " + why);
  }
  void ws() {
    while (i_ < n_ && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  char peek() {
    ws();
    if (i_ >= n_) fail("unexpected end");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  Json value(int depth) {
    if (depth > 32) fail("nesting too deep");
    char c = peek();
    Json v;
    if (c == '{') {
      v.kind = Json::Object;
      ++i_;
      if (peek() == '}') { ++i_; return v; }
      for (;;) {
        std::string k = string();
        expect(':');
        v.obj.emplace_back(std::move(k), value(depth + 1));
        char d = peek();
        ++i_;
        if (d == '}') break;
        if (d != ',') fail("expected ',' or '}'");
      }
    } else if (c == '[') {
      v.kind = Json::Array;
      ++i_;
      if (peek() == ']') { ++i_; return v; }
      for (;;) {
        v.arr.push_back(value(depth + 1));
        char d = peek();
        ++i_;
        if (d == ']') break;
        if (d != ',') fail("expected ',' or ']'");
      }
    } else if (c == '"') {
      v.kind = Json::String;
      v.str = string();
    } else if (c == 't' || c == 'f' || c == 'n') {
      const char* word = c == 't' ? "true" : c == 'f' ? "false" : "null";
      size_t len = std::strlen(word);
      if (i_ + len > n_ || std::strncmp(s_ + i_, word, len) != 0) fail("bad literal");
      i_ += len;
      v.kind = c == 'n' ? Json::Null : Json::Bool;
      v.b = c == 't';
    } else {
      size_t start = i_;
      while (i_ < n_ && (std::strchr("+-0123456789.eE", s_[i_]) != nullptr)) ++i_;
      if (start == i_) fail("unexpected character");
      v.kind = Json::Number;
      v.num = std::stod(std::string(s_ + start, i_ - start));
    }
    return v;
  }
  std::string string() {
    expect('"');
    std::string out;
    while (i_ < n_ && s_[i_] != '"') {
      char c = s_[i_++];
      if (c == '\\') {
        if (i_ >= n_) fail("bad escape");
        char e = s_[i_++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'u': {
            if (i_ + 4 > n_) fail("bad \\u escape");
            unsigned cp = std::stoul(std::string(s_ + i_, 4), nullptr, 16);
            i_ += 4;
            // Tensor names are ASCII in practice; encode BMP code points as UTF-8.
            if (cp < 0x80) out += static_cast<char>(cp);
            else if (cp < 0x800) { out += static_cast<char>(0xC0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
            else { out += static_cast<char>(0xE0 | (cp >> 12)); out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
            break;
          }
          default: out += e;
        }
      } else {
        out += c;
      }
    }
    if (i_ >= n_) fail("unterminated string");
    ++i_;
    return out;
  }
  const char* s_;
  size_t n_;
  size_t i_ = 0;
};

size_t dtypeSize(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  throw invalidArgument("safetensors header: unknown dtype " + d);
}

}  // namespace

uint64_t safetensorsHeaderLength(const uint8_t* p) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | p[i];
  return n;
}

SafetensorsHeader parseSafetensorsHeader(const uint8_t* bytes, size_t available, uint64_t fileSize) {
  if (available < 8 || fileSize < 8) throw invalidArgument("safetensors: file shorter than the 8-byte header length");
  const uint64_t len = safetensorsHeaderLength(bytes);
  if (len > 100u * 1024 * 1024 || 8 + len > fileSize) {
    throw invalidArgument("safetensors: header length " + std::to_string(len) + " exceeds file size " +
                          std::to_string(fileSize));
  }
  if (8 + len > available) throw invalidArgument("safetensors: header not fully available");
  Json doc = Parser(reinterpret_cast<const char*>(bytes + 8), len).parseDocument();
  if (doc.kind != Json::Object) throw invalidArgument("safetensors: header is not a JSON object");
  SafetensorsHeader h;
  h.dataOffset = 8 + len;
  const uint64_t dataBytes = fileSize - h.dataOffset;
  for (auto& [name, v] : doc.obj) {
    if (name == "__metadata__") {
      for (auto& [mk, mv] : v.obj)
        if (mv.kind == Json::String) h.metadata[mk] = mv.str;
      continue;
    }
    if (v.kind != Json::Object) throw invalidArgument("safetensors: tensor " + name + " is not an object");
    TensorInfo t;
    t.name = name;
    bool haveOffsets = false;
    for (auto& [k, f] : v.obj) {
      if (k == "dtype" && f.kind == Json::String) t.dtype = f.str;
      else if (k == "shape" && f.kind == Json::Array)
        for (auto& d : f.arr) t.shape.push_back(static_cast<int64_t>(d.num));
      else if (k == "data_offsets" && f.kind == Json::Array && f.arr.size() == 2) {
        t.begin = static_cast<uint64_t>(f.arr[0].num);
        t.end = static_cast<uint64_t>(f.arr[1].num);
        haveOffsets = true;
      }
    }
    if (t.dtype.empty() || !haveOffsets) throw invalidArgument("safetensors: tensor " + name + " lacks dtype or data_offsets");
    if (t.end < t.begin || t.end > dataBytes) {
      throw invalidArgument("safetensors: tensor " + name + " offsets [" + std::to_string(t.begin) + ", " +
                            std::to_string(t.end) + ") exceed data size " + std::to_string(dataBytes));
    }
    for (auto d : t.shape)
      if (d < 0) throw invalidArgument("safetensors: tensor " + name + " has a negative dimension");
    if (static_cast<uint64_t>(t.elements()) * dtypeSize(t.dtype) != t.end - t.begin) {
      throw invalidArgument("safetensors: tensor " + name + " byte size does not match shape and dtype");
    }
    t.begin += h.dataOffset;
    t.end += h.dataOffset;
    h.tensors.emplace(name, std::move(t));
  }
  return h;
}

std::vector<uint8_t> writeSafetensors(
    const std::vector<std::pair<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>>& tensors) {
  std::string header = "{";
  uint64_t off = 0;
  bool first = true;
  for (auto& [name, t] : tensors) {
    uint64_t bytes = t.second.size() * 4;
    header += (first ? "" : ",") + std::string("\"") + name + "\":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t i = 0; i < t.first.size(); ++i) header += (i ? "," : "") + std::to_string(t.first[i]);
    header += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + bytes) + "]}";
    off += bytes;
    first = false;
  }
  header += "}";
  while ((8 + header.size()) % 8 != 0) header += ' ';  // keep the data region 8-byte aligned
  std::vector<uint8_t> out(8 + header.size() + off);
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(len >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  size_t p = 8 + header.size();
  for (auto& [name, t] : tensors) {
    std::memcpy(out.data() + p, t.second.data(), t.second.size() * 4);
    p += t.second.size() * 4;
  }
  return out;
}

}  // namespace shoal
