#include "shoal/safetensors.hpp"

#include <cstdint>
#include <cstdlib>
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
      // The exact text: dimensions and offsets are read from it as integers, never through a double.
      v.str.assign(s_ + start, i_ - start);
      char* endp = nullptr;
      v.num = std::strtod(v.str.c_str(), &endp);
      if (endp != v.str.c_str() + v.str.size()) fail("bad number \"" + v.str + "\"");
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
            unsigned cp = 0;
            for (int h = 0; h < 4; ++h) {
              const char x = s_[i_ + h];
              const int d = x >= '0' && x <= '9' ? x - '0' : x >= 'a' && x <= 'f' ? x - 'a' + 10 : x >= 'A' && x <= 'F' ? x - 'A' + 10 : -1;
              if (d < 0) fail("bad \\u escape");
              cp = cp * 16 + static_cast<unsigned>(d);
            }
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

const char* kindName(Json::Kind k) {
  switch (k) {
    case Json::Null: return "null";
    case Json::Bool: return "boolean";
    case Json::Number: return "number";
    case Json::String: return "string";
    case Json::Array: return "array";
    case Json::Object: return "object";
  }
  return "value";
}

std::string quoted(const std::string& name) { return "\"" + name + "\""; }

// A JSON number that must be a non-negative integer (a dimension or a byte offset), read exactly from its text
// and refused past `max`, which `bound` names. `what` names the value for the error: `tensor "w" shape[1]`.
uint64_t exactIndex(const Json& v, const std::string& what, uint64_t max, const std::string& bound) {
  if (v.kind != Json::Number) {
    throw invalidArgument("safetensors: " + what + " must be a non-negative integer, got a " + kindName(v.kind));
  }
  const std::string& s = v.str;
  if (!s.empty() && s[0] == '-') throw invalidArgument("safetensors: " + what + " is negative (" + s + ")");
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) {
    throw invalidArgument("safetensors: " + what + " must be a non-negative integer, got " + s);
  }
  uint64_t n = 0;
  for (char c : s) {
    if (__builtin_mul_overflow(n, uint64_t(10), &n) || __builtin_add_overflow(n, uint64_t(c - '0'), &n) || n > max) {
      throw invalidArgument("safetensors: " + what + " = " + s + " is past " + bound + " (" + std::to_string(max) + ")");
    }
  }
  return n;
}

constexpr uint64_t kMaxInt64 = static_cast<uint64_t>(INT64_MAX);

}  // namespace

size_t safetensorsDtypeSize(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  throw invalidArgument("safetensors header: unknown dtype " + d);
}

std::string formatShape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

int64_t TensorInfo::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw invalidArgument("safetensors: tensor " + quoted(name) + " shape " + formatShape(shape) + " has a negative dimension");
    if (__builtin_mul_overflow(n, d, &n)) {
      throw invalidArgument("safetensors: tensor " + quoted(name) + " shape " + formatShape(shape) +
                            " has more than 2^63-1 elements");
    }
  }
  return n;
}

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
    const std::string tn = "tensor " + quoted(name);
    if (v.kind != Json::Object) throw invalidArgument("safetensors: " + tn + " is not an object");
    if (h.tensors.count(name) != 0) throw invalidArgument("safetensors: " + tn + " appears twice in the header");
    TensorInfo t;
    t.name = name;
    bool haveShape = false, haveOffsets = false;
    for (auto& [k, f] : v.obj) {
      if (k == "dtype" && f.kind == Json::String) {
        t.dtype = f.str;
      } else if (k == "shape") {
        if (f.kind != Json::Array) throw invalidArgument("safetensors: " + tn + " shape must be an array, got a " + kindName(f.kind));
        for (size_t i = 0; i < f.arr.size(); ++i)
          t.shape.push_back(static_cast<int64_t>(exactIndex(f.arr[i], tn + " shape[" + std::to_string(i) + "]", kMaxInt64, "2^63-1")));
        haveShape = true;
      } else if (k == "data_offsets") {
        if (f.kind != Json::Array || f.arr.size() != 2) {
          throw invalidArgument("safetensors: " + tn + " data_offsets must be an array [begin, end]");
        }
        t.begin = exactIndex(f.arr[0], tn + " data_offsets[0]", dataBytes, "the data section size");
        t.end = exactIndex(f.arr[1], tn + " data_offsets[1]", dataBytes, "the data section size");
        haveOffsets = true;
      }
    }
    if (t.dtype.empty() || !haveShape || !haveOffsets) {
      throw invalidArgument("safetensors: " + tn + " lacks dtype, shape or data_offsets");
    }
    if (t.end < t.begin) {
      throw invalidArgument("safetensors: " + tn + " data_offsets [" + std::to_string(t.begin) + ", " +
                            std::to_string(t.end) + ") end before they begin");
    }
    // Checked: a product that wraps around 2^64 would otherwise match a small data_offsets range while the
    // shape promises gigabytes to whoever reads the tensor.
    const uint64_t elems = static_cast<uint64_t>(t.elements());
    uint64_t esize = 0;
    try {
      esize = safetensorsDtypeSize(t.dtype);
    } catch (const Error&) {
      throw invalidArgument("safetensors: " + tn + " has unknown dtype " + quoted(t.dtype));
    }
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(elems, esize, &bytes)) {
      throw invalidArgument("safetensors: " + tn + " (" + t.dtype + ", shape " + formatShape(t.shape) + ") is " +
                            std::to_string(elems) + " elements x " + std::to_string(esize) + " bytes, past 2^64 bytes");
    }
    if (bytes > dataBytes) {
      throw invalidArgument("safetensors: " + tn + " (" + t.dtype + ", shape " + formatShape(t.shape) + ") needs " +
                            std::to_string(bytes) + " bytes but the data section holds " + std::to_string(dataBytes) +
                            " (file " + std::to_string(fileSize) + " bytes, data from byte " + std::to_string(h.dataOffset) + ")");
    }
    if (bytes != t.end - t.begin) {
      throw invalidArgument("safetensors: " + tn + " (" + t.dtype + ", shape " + formatShape(t.shape) + ") needs " +
                            std::to_string(bytes) + " bytes but data_offsets [" + std::to_string(t.begin) + ", " +
                            std::to_string(t.end) + ") hold " + std::to_string(t.end - t.begin));
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
    // An empty tensor's data() may be null, and memcpy from null is undefined even for 0 bytes.
    if (!t.second.empty()) std::memcpy(out.data() + p, t.second.data(), t.second.size() * 4);
    p += t.second.size() * 4;
  }
  return out;
}

}  // namespace shoal
