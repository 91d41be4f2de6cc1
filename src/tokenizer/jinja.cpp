// Jinja-subset interpreter (see jinja.h): lexer -> recursive-descent parser -> tree evaluator.
#include "tokenizer/jinja.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <map>

#include <utf8proc.h>

#include "core/error.h"

namespace jetlm::jinja {

namespace {

using ojson = nlohmann::ordered_json;

// ------------------------------------------------------------------------------------------------
// Values

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;
using Args = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Callable = std::function<Value(Args&, Kwargs&)>;

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Function } kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // String; for Undefined, the name that was looked up
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  std::shared_ptr<Callable> fn;
  bool is_namespace = false;
  // What Python type a List stands for: repr and equality differ (dict.items() gives tuples).
  enum class Seq { List, Tuple, Items, Keys, Values } seq = Seq::List;

  static Value undefined(std::string name = "") { Value v; v.s = std::move(name); return v; }
  static Value none() { Value v; v.kind = Kind::None; return v; }
  static Value boolean(bool x) { Value v; v.kind = Kind::Bool; v.b = x; return v; }
  static Value integer(int64_t x) { Value v; v.kind = Kind::Int; v.i = x; return v; }
  static Value number(double x) { Value v; v.kind = Kind::Float; v.f = x; return v; }
  static Value string(std::string x) { Value v; v.kind = Kind::String; v.s = std::move(x); return v; }
  static Value make_list(List x = {}, Seq seq = Seq::List) {
    Value v;
    v.kind = Kind::List;
    v.seq = seq;
    v.list = std::make_shared<List>(std::move(x));
    return v;
  }
  static Value make_tuple(List x) { return make_list(std::move(x), Seq::Tuple); }
  static Value make_dict(Dict x = {}) { Value v; v.kind = Kind::Dict; v.dict = std::make_shared<Dict>(std::move(x)); return v; }
  static Value function(Callable c) { Value v; v.kind = Kind::Function; v.fn = std::make_shared<Callable>(std::move(c)); return v; }

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  double as_double() const { return kind == Kind::Float ? f : kind == Kind::Bool ? double(b) : double(i); }
  const Value* find(const std::string& key) const {
    if (kind != Kind::Dict) return nullptr;
    for (const auto& [k, v] : *dict)
      if (k == key) return &v;
    return nullptr;
  }
};

Value from_json(const ojson& j) {
  switch (j.type()) {
    case ojson::value_t::null: return Value::none();
    case ojson::value_t::boolean: return Value::boolean(j.get<bool>());
    case ojson::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case ojson::value_t::number_unsigned: return Value::integer(int64_t(j.get<uint64_t>()));
    case ojson::value_t::number_float: return Value::number(j.get<double>());
    case ojson::value_t::string: return Value::string(j.get<std::string>());
    case ojson::value_t::array: {
      List l;
      for (const auto& e : j) l.push_back(from_json(e));
      return Value::make_list(std::move(l));
    }
    case ojson::value_t::object: {
      Dict d;
      for (const auto& [k, v] : j.items()) d.emplace_back(k, from_json(v));
      return Value::make_dict(std::move(d));
    }
    default: return Value::none();
  }
}

// Python's repr of a float: the shortest text that reads back the same, with ".0" or exponent.
std::string python_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  std::string s = buf;
  const size_t e = s.find('e');
  if (e != std::string::npos) {
    // C prints e+05 / e-05; Python prints e+05 too for repr but only when the exponent is
    // < -4 or >= 16; between, it prints positional digits.
    const int exponent = std::atoi(s.c_str() + e + 1);
    if (exponent >= -4 && exponent < 16) {
      std::snprintf(buf, sizeof buf, "%.17f", x);
      s = buf;
      // trim to the shortest round-tripping positional form
      for (int decimals = 0; decimals <= 17; ++decimals) {
        std::snprintf(buf, sizeof buf, "%.*f", decimals, x);
        if (std::strtod(buf, nullptr) == x) { s = buf; break; }
      }
      if (s.find('.') == std::string::npos) s += ".0";
      return s;
    }
    std::string mantissa = s.substr(0, e);
    char sign = s[e + 1];
    std::string digits = s.substr(e + 2);
    while (digits.size() > 2 && digits[0] == '0') digits.erase(0, 1);
    return mantissa + "e" + sign + digits;
  }
  if (s.find('.') == std::string::npos) {
    const double magnitude = std::fabs(x);
    if (magnitude >= 1e16) {  // Python switches to exponent form here
      std::snprintf(buf, sizeof buf, "%.16e", x);
      return buf;
    }
    s += ".0";
  }
  return s;
}

std::string python_repr(const Value& v);

// str(x) as Jinja prints it.
std::string to_text(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined: return "";
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return v.b ? "True" : "False";
    case Value::Kind::Int: return std::to_string(v.i);
    case Value::Kind::Float: return python_float(v.f);
    case Value::Kind::String: return v.s;
    default: return python_repr(v);
  }
}

// Python's str.isprintable() for one code point: not a control, format, surrogate, private-use,
// unassigned or separator character (the plain space excepted).
bool python_printable(int32_t cp) {
  if (cp == ' ') return true;
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
      return false;
    default: return true;
  }
}

// Decodes one UTF-8 sequence at s[k]; a malformed byte reads as itself (one byte long).
int32_t next_code_point(const std::string& s, size_t k, size_t& length) {
  utf8proc_int32_t cp = 0;
  const utf8proc_ssize_t n =
      utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + k), utf8proc_ssize_t(s.size() - k), &cp);
  if (n <= 0) { length = 1; return uint8_t(s[k]); }
  length = size_t(n);
  return cp;
}

// Byte offsets of each code point of s, plus s.size() at the end: Python indexes strings by code point.
std::vector<size_t> code_point_offsets(const std::string& s) {
  std::vector<size_t> offsets;
  offsets.reserve(s.size() + 1);
  for (size_t k = 0; k < s.size();) {
    offsets.push_back(k);
    size_t length = 1;
    next_code_point(s, k, length);
    k += length;
  }
  offsets.push_back(s.size());
  return offsets;
}

std::string python_string_repr(const std::string& s) {
  const bool use_double = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = use_double ? '"' : '\'';
  std::string out(1, q);
  for (size_t k = 0; k < s.size();) {
    size_t length = 1;
    const int32_t cp = next_code_point(s, k, length);
    const unsigned char c = uint8_t(s[k]);
    char buf[16];
    if (c == '\\') out += "\\\\";
    else if (c == q) { out += '\\'; out += char(c); }
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (python_printable(cp)) out.append(s, k, length);
    else {
      std::snprintf(buf, sizeof buf, cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x", unsigned(cp));
      out += buf;
    }
    k += length;
  }
  return out + q;
}

// How transformers' tojson (json.dumps) lays out its text.
struct JsonStyle {
  bool ensure_ascii = false;
  bool pretty = false;        // indent given: one item per line
  std::string indent;
  std::string item_separator = ", ";  // "," when indenting
  std::string key_separator = ": ";
  bool sort_keys = false;
};

void json_escape(const std::string& s, bool ensure_ascii, std::string& out) {
  out += '"';
  for (size_t k = 0; k < s.size();) {
    const unsigned char c = uint8_t(s[k]);
    char buf[16];
    switch (c) {
      case '"': out += "\\\""; ++k; continue;
      case '\\': out += "\\\\"; ++k; continue;
      case '\n': out += "\\n"; ++k; continue;
      case '\r': out += "\\r"; ++k; continue;
      case '\t': out += "\\t"; ++k; continue;
      case '\b': out += "\\b"; ++k; continue;
      case '\f': out += "\\f"; ++k; continue;
      default: break;
    }
    if (c < 0x20 || (ensure_ascii && c == 0x7f)) {
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      ++k;
    } else if (c < 0x80 || !ensure_ascii) {
      out += char(c);
      ++k;
    } else {  // ensure_ascii: \uXXXX, astral code points as a surrogate pair
      size_t length = 1;
      const int32_t cp = next_code_point(s, k, length);
      if (cp >= 0x10000) {
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", unsigned(0xD800 + ((cp - 0x10000) >> 10)), unsigned(0xDC00 + ((cp - 0x10000) & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(cp));
      }
      out += buf;
      k += length;
    }
  }
  out += '"';
}

void to_json_text(const Value& v, const JsonStyle& style, int depth, std::string& out) {
  if (depth > 200) throw_error("chat template", "tojson: the value nests too deeply");
  auto newline = [&](int d) {
    out += '\n';
    for (int k = 0; k < d; ++k) out += style.indent;
  };
  switch (v.kind) {
    case Value::Kind::Undefined: throw_error("chat template", "tojson: an undefined value is not JSON serializable");
    case Value::Kind::Function: throw_error("chat template", "tojson: a function is not JSON serializable");
    case Value::Kind::None: out += "null"; break;
    case Value::Kind::Bool: out += v.b ? "true" : "false"; break;
    case Value::Kind::Int: out += std::to_string(v.i); break;
    case Value::Kind::Float:
      out += std::isnan(v.f) ? "NaN" : std::isinf(v.f) ? (v.f > 0 ? "Infinity" : "-Infinity") : python_float(v.f);
      break;
    case Value::Kind::String: json_escape(v.s, style.ensure_ascii, out); break;
    case Value::Kind::List: {
      if (v.list->empty()) { out += "[]"; break; }
      out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += style.item_separator;
        if (style.pretty) newline(depth + 1);
        to_json_text((*v.list)[k], style, depth + 1, out);
      }
      if (style.pretty) newline(depth);
      out += ']';
      break;
    }
    case Value::Kind::Dict: {
      if (v.dict->empty()) { out += "{}"; break; }
      std::vector<size_t> order(v.dict->size());
      for (size_t k = 0; k < order.size(); ++k) order[k] = k;
      if (style.sort_keys)
        std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return (*v.dict)[a].first < (*v.dict)[b].first; });
      out += '{';
      for (size_t k = 0; k < order.size(); ++k) {
        if (k) out += style.item_separator;
        if (style.pretty) newline(depth + 1);
        json_escape((*v.dict)[order[k]].first, style.ensure_ascii, out);
        out += style.key_separator;
        to_json_text((*v.dict)[order[k]].second, style, depth + 1, out);
      }
      if (style.pretty) newline(depth);
      out += '}';
      break;
    }
  }
}

std::string python_repr(const Value& v) {
  switch (v.kind) {
    case Value::Kind::String: return python_string_repr(v.s);
    case Value::Kind::List: {
      const bool tuple = v.seq == Value::Seq::Tuple;
      std::string out = tuple ? "(" : "[";
      for (size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + python_repr((*v.list)[k]);
      out += tuple ? (v.list->size() == 1 ? ",)" : ")") : "]";
      switch (v.seq) {
        case Value::Seq::Items: return "dict_items(" + out + ")";
        case Value::Seq::Keys: return "dict_keys(" + out + ")";
        case Value::Seq::Values: return "dict_values(" + out + ")";
        default: return out;
      }
    }
    case Value::Kind::Dict: {
      std::string out = v.is_namespace ? "<Namespace {" : "{";
      for (size_t k = 0; k < v.dict->size(); ++k)
        out += (k ? ", " : "") + python_string_repr((*v.dict)[k].first) + ": " + python_repr((*v.dict)[k].second);
      return out + (v.is_namespace ? "}>" : "}");
    }
    case Value::Kind::Function: return "<function>";
    default: return to_text(v);
  }
}

void set_key(Dict& d, const std::string& key, const Value& value) {
  for (auto& [k, v] : d)
    if (k == key) { v = value; return; }
  d.emplace_back(key, value);
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return false;
    case Value::Kind::Bool: return v.b;
    case Value::Kind::Int: return v.i != 0;
    case Value::Kind::Float: return v.f != 0;
    case Value::Kind::String: return !v.s.empty();
    case Value::Kind::List: return !v.list->empty();
    case Value::Kind::Dict: return !v.dict->empty();
    case Value::Kind::Function: return true;
  }
  return false;
}

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind == Value::Kind::Float || b.kind == Value::Kind::Float) return a.as_double() == b.as_double();
    return (a.kind == Value::Kind::Bool ? int64_t(a.b) : a.i) == (b.kind == Value::Kind::Bool ? int64_t(b.b) : b.i);
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return true;
    case Value::Kind::String: return a.s == b.s;
    case Value::Kind::List:
      if ((a.seq == Value::Seq::Tuple) != (b.seq == Value::Seq::Tuple)) return false;
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equal((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case Value::Kind::Dict:
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [k, v] : *a.dict) {
        const Value* other = b.find(k);
        if (other == nullptr || !equal(v, *other)) return false;
      }
      return true;
    default: return a.fn == b.fn;
  }
}

// ------------------------------------------------------------------------------------------------
// Lexer

struct Token {
  enum class Kind { Name, Int, Float, String, Op, End } kind = Kind::End;
  std::string text;
  int64_t i = 0;
  double f = 0;
  int line = 0, col = 0;
};

struct Located {
  int line = 1, col = 1;
};

[[noreturn]] void fail(const Located& at, const std::string& what) {
  throw_error("chat template line " + std::to_string(at.line) + " col " + std::to_string(at.col), what);
}

// One piece of the template source: text, or the tokens of a tag.
struct Chunk {
  enum class Kind { Text, Output, Statement } kind = Kind::Text;
  std::string text;
  std::vector<Token> tokens;
  Located at;
};

class Lexer {
 public:
  Lexer(const std::string& src, const Options& options) : src_(src), options_(options) {}

  std::vector<Chunk> run() {
    std::vector<Chunk> chunks;
    bool strip_next_leading = false;  // the previous tag ended with "-"
    bool trim_next_newline = false;   // trim_blocks after a block tag
    while (pos_ < src_.size()) {
      size_t open = find_tag_open(pos_);
      std::string text = src_.substr(pos_, (open == std::string::npos ? src_.size() : open) - pos_);
      const Located text_at = location(pos_);
      const size_t raw_begin = pos_;
      const bool raw_had_newline = text.find('\n') != std::string::npos;
      if (strip_next_leading) {
        size_t k = 0;
        while (k < text.size() && std::isspace(uint8_t(text[k]))) ++k;
        text.erase(0, k);
      } else if (trim_next_newline) {
        if (text.rfind("\r\n", 0) == 0) text.erase(0, 2);
        else if (!text.empty() && text[0] == '\n') text.erase(0, 1);
      }
      strip_next_leading = trim_next_newline = false;
      if (open == std::string::npos) {
        push_text(chunks, text, text_at);
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      size_t inner = open + 2;
      bool strip_before = false, keep_before = false;
      if (inner < src_.size() && src_[inner] == '-') { strip_before = true; ++inner; }
      else if (inner < src_.size() && src_[inner] == '+') { keep_before = true; ++inner; }
      if (strip_before) {
        size_t k = text.size();
        while (k > 0 && std::isspace(uint8_t(text[k - 1]))) --k;
        text.erase(k);
      } else if (kind != '{' && options_.lstrip_blocks && !keep_before) {
        // Only spaces/tabs between the line start and the tag: drop them.
        size_t k = text.size();
        while (k > 0 && (text[k - 1] == ' ' || text[k - 1] == '\t')) --k;
        // With nothing else before it in this text, the tag starts a line when the text began
        // one (template start, after a newline, or a newline that trimming removed).
        const bool at_line_start =
            k == 0 ? (raw_begin == 0 || src_[raw_begin - 1] == '\n' || raw_had_newline) : text[k - 1] == '\n';
        if (at_line_start) text.erase(k);
      }
      push_text(chunks, text, text_at);
      const Located tag_at = location(open);
      if (kind == '#') {
        const size_t close = src_.find("#}", inner);
        if (close == std::string::npos) fail(tag_at, "comment is not closed with #}");
        const bool strip_after = close > inner && src_[close - 1] == '-';
        pos_ = close + 2;
        strip_next_leading = strip_after;
        trim_next_newline = !strip_after && options_.trim_blocks;
        continue;
      }
      Chunk chunk;
      chunk.kind = kind == '{' ? Chunk::Kind::Output : Chunk::Kind::Statement;
      chunk.at = tag_at;
      pos_ = inner;
      const std::string closer = kind == '{' ? "}}" : "%}";
      bool strip_after = false, keep_after = false;
      int brackets = 0;  // inside ( [ { a "}}" is two closing braces, as in Jinja's lexer
      while (true) {
        skip_space();
        if (pos_ >= src_.size()) fail(tag_at, "tag is not closed with " + closer);
        if (brackets == 0) {
          if (src_.compare(pos_, 2, closer) == 0) { pos_ += 2; break; }
          if (src_[pos_] == '-' && src_.compare(pos_ + 1, 2, closer) == 0) { strip_after = true; pos_ += 3; break; }
          if (src_[pos_] == '+' && src_.compare(pos_ + 1, 2, closer) == 0) { keep_after = true; pos_ += 3; break; }
        }
        chunk.tokens.push_back(next_token());
        const Token& t = chunk.tokens.back();
        if (t.kind == Token::Kind::Op && (t.text == "(" || t.text == "[" || t.text == "{")) ++brackets;
        if (t.kind == Token::Kind::Op && (t.text == ")" || t.text == "]" || t.text == "}") && brackets > 0) --brackets;
      }
      const bool is_raw = kind == '%' && chunk.tokens.size() == 1 && chunk.tokens[0].kind == Token::Kind::Name &&
                          chunk.tokens[0].text == "raw";
      if (!is_raw) chunks.push_back(std::move(chunk));
      strip_next_leading = strip_after;
      trim_next_newline = !strip_after && !keep_after && kind == '%' && options_.trim_blocks;
      if (is_raw) read_raw_block(chunks, tag_at, strip_next_leading, trim_next_newline);
    }
    return chunks;
  }

 private:
  // {% raw %}...{% endraw %}: the text between is output as is (whitespace control still applies
  // at both ends, lstrip_blocks before the endraw tag).
  void read_raw_block(std::vector<Chunk>& chunks, const Located& raw_at, bool& strip_next_leading, bool& trim_next_newline) {
    size_t search = pos_;
    while (true) {
      const size_t open = src_.find("{%", search);
      if (open == std::string::npos) fail(raw_at, "missing {% endraw %}");
      size_t k = open + 2;
      const bool strip_before = k < src_.size() && src_[k] == '-';
      if (k < src_.size() && (src_[k] == '-' || src_[k] == '+')) ++k;
      while (k < src_.size() && std::isspace(uint8_t(src_[k]))) ++k;
      if (src_.compare(k, 6, "endraw") != 0) { search = open + 2; continue; }
      k += 6;
      while (k < src_.size() && std::isspace(uint8_t(src_[k]))) ++k;
      bool strip_after = false, keep_after = false;
      if (k < src_.size() && (src_[k] == '-' || src_[k] == '+')) { strip_after = src_[k] == '-'; keep_after = !strip_after; ++k; }
      if (src_.compare(k, 2, "%}") != 0) { search = open + 2; continue; }
      std::string text = src_.substr(pos_, open - pos_);
      if (strip_next_leading) {
        size_t b = 0;
        while (b < text.size() && std::isspace(uint8_t(text[b]))) ++b;
        text.erase(0, b);
      } else if (trim_next_newline && !text.empty() && text[0] == '\n') {
        text.erase(0, 1);
      }
      if (strip_before) {
        size_t e = text.size();
        while (e > 0 && std::isspace(uint8_t(text[e - 1]))) --e;
        text.erase(e);
      } else if (options_.lstrip_blocks && src_[open + 2] != '+') {
        size_t e = text.size();
        while (e > 0 && (text[e - 1] == ' ' || text[e - 1] == '\t')) --e;
        if (e == 0 || text[e - 1] == '\n') text.erase(e);
      }
      push_text(chunks, text, location(pos_));
      pos_ = k + 2;
      strip_next_leading = strip_after;
      trim_next_newline = !strip_after && !keep_after && options_.trim_blocks;
      return;
    }
  }

  void push_text(std::vector<Chunk>& chunks, const std::string& text, const Located& at) {
    if (text.empty()) return;
    Chunk c;
    c.kind = Chunk::Kind::Text;
    c.text = text;
    c.at = at;
    chunks.push_back(std::move(c));
  }

  size_t find_tag_open(size_t from) const {
    while (true) {
      const size_t at = src_.find('{', from);
      if (at == std::string::npos || at + 1 >= src_.size()) return std::string::npos;
      const char c = src_[at + 1];
      if (c == '{' || c == '%' || c == '#') return at;
      from = at + 1;
    }
  }

  // Line and column of a source offset; offsets mostly grow, so counting resumes from the last one.
  Located location(size_t offset) {
    if (offset < located_offset_) {
      located_offset_ = 0;
      located_ = Located{};
    }
    for (size_t k = located_offset_; k < offset && k < src_.size(); ++k) {
      if (src_[k] == '\n') { ++located_.line; located_.col = 1; }
      else ++located_.col;
    }
    located_offset_ = std::max(located_offset_, std::min(offset, src_.size()));
    return located_;
  }

  void skip_space() {
    while (pos_ < src_.size() && std::isspace(uint8_t(src_[pos_]))) ++pos_;
  }

  Token next_token() {
    Token t;
    const Located at = location(pos_);
    t.line = at.line;
    t.col = at.col;
    const char c = src_[pos_];
    if (std::isalpha(uint8_t(c)) || c == '_') {
      size_t end = pos_;
      while (end < src_.size() && (std::isalnum(uint8_t(src_[end])) || src_[end] == '_')) ++end;
      t.kind = Token::Kind::Name;
      t.text = src_.substr(pos_, end - pos_);
      pos_ = end;
      return t;
    }
    if (std::isdigit(uint8_t(c))) {
      size_t end = pos_;
      while (end < src_.size() && (std::isdigit(uint8_t(src_[end])) || src_[end] == '_')) ++end;
      bool is_float = false;
      if (end + 1 < src_.size() && src_[end] == '.' && std::isdigit(uint8_t(src_[end + 1]))) {
        is_float = true;
        ++end;
        while (end < src_.size() && std::isdigit(uint8_t(src_[end]))) ++end;
      }
      if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
        size_t e = end + 1;
        if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
        if (e < src_.size() && std::isdigit(uint8_t(src_[e]))) {
          is_float = true;
          end = e;
          while (end < src_.size() && std::isdigit(uint8_t(src_[end]))) ++end;
        }
      }
      std::string digits = src_.substr(pos_, end - pos_);
      digits.erase(std::remove(digits.begin(), digits.end(), '_'), digits.end());
      pos_ = end;
      if (is_float) { t.kind = Token::Kind::Float; t.f = std::strtod(digits.c_str(), nullptr); }
      else { t.kind = Token::Kind::Int; t.i = std::strtoll(digits.c_str(), nullptr, 10); }
      t.text = digits;
      return t;
    }
    if (c == '\'' || c == '"') {
      t.kind = Token::Kind::String;
      size_t k = pos_ + 1;
      while (true) {
        if (k >= src_.size()) fail(at, "string literal is not closed");
        const char d = src_[k];
        if (d == c) break;
        if (d == '\\' && k + 1 < src_.size()) {
          k = read_escape(k, t.text, at);
          continue;
        }
        t.text += d;
        ++k;
      }
      pos_ = k + 1;
      return t;
    }
    static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ",", ".", ":",
                                 "|", "~", "+", "-", "*", "/", "%", "<", ">", "="};
    for (const char* op : kOps) {
      const size_t n = std::strlen(op);
      if (src_.compare(pos_, n, op) == 0) {
        // "}}" / "%}" end the tag, handled by the caller; a lone "}" closes a dict literal.
        t.kind = Token::Kind::Op;
        t.text = op;
        pos_ += n;
        return t;
      }
    }
    fail(at, std::string("unexpected character '") + c + "' in a tag");
  }

  // One backslash escape of a string literal at src_[k] (Jinja decodes literals with Python's
  // unicode-escape codec): appends its text, returns the offset after it.
  size_t read_escape(size_t k, std::string& out, const Located& at) {
    const char e = src_[k + 1];
    auto append_code_point = [&](uint32_t cp) {
      utf8proc_uint8_t buf[4];
      if (cp > 0x10FFFF) fail(at, "\\U escape out of range in a string literal");
      const utf8proc_ssize_t n = utf8proc_encode_char(utf8proc_int32_t(cp), buf);
      out.append(reinterpret_cast<const char*>(buf), size_t(n));
    };
    auto hex_digits = [&](size_t from, int count) {
      uint32_t cp = 0;
      for (int d = 0; d < count; ++d) {
        if (from + d >= src_.size() || !std::isxdigit(uint8_t(src_[from + d])))
          fail(at, std::string("truncated \\") + e + " escape in a string literal");
        const char h = src_[from + d];
        cp = cp * 16 + uint32_t(std::isdigit(uint8_t(h)) ? h - '0' : std::tolower(uint8_t(h)) - 'a' + 10);
      }
      return cp;
    };
    switch (e) {
      case 'n': out += '\n'; return k + 2;
      case 't': out += '\t'; return k + 2;
      case 'r': out += '\r'; return k + 2;
      case 'a': out += '\a'; return k + 2;
      case 'b': out += '\b'; return k + 2;
      case 'f': out += '\f'; return k + 2;
      case 'v': out += '\v'; return k + 2;
      case '\\': out += '\\'; return k + 2;
      case '\'': out += '\''; return k + 2;
      case '"': out += '"'; return k + 2;
      case '\n': return k + 2;  // a backslash-newline continues the line
      case 'x': append_code_point(hex_digits(k + 2, 2)); return k + 4;
      case 'u': append_code_point(hex_digits(k + 2, 4)); return k + 6;
      case 'U': append_code_point(hex_digits(k + 2, 8)); return k + 10;
      default:
        if (e >= '0' && e <= '7') {  // up to three octal digits
          uint32_t cp = 0;
          size_t j = k + 1;
          for (int d = 0; d < 3 && j < src_.size() && src_[j] >= '0' && src_[j] <= '7'; ++d, ++j) cp = cp * 8 + uint32_t(src_[j] - '0');
          append_code_point(cp);
          return j;
        }
        out += '\\';  // unknown escapes stay as written
        return k + 1;
    }
  }

  const std::string& src_;
  const Options& options_;
  size_t pos_ = 0;
  size_t located_offset_ = 0;
  Located located_;
};

}  // namespace

// ------------------------------------------------------------------------------------------------
// Syntax tree

struct Node {
  enum class Kind {
    // statements
    Body, Text, Output, If, For, Set, SetBlock, Macro, Break, Continue, With,
    // expressions
    Literal, Name, Attr, Subscript, Slice, Call, Filter, Test, Not, Neg, Binary, And, Or, Cond, ListLit, TupleLit, DictLit,
  } kind = Kind::Body;
  Located at;
  std::string name;                     // Name/Attr/Filter/Test/Binary op/Set target/Macro name
  std::string attr;                     // Set: ns.attr
  Value literal;
  std::vector<std::shared_ptr<Node>> children;  // operands, bodies, list items, call args
  std::vector<std::string> names;       // For targets, Macro parameters, Call/Filter kwarg names
  std::vector<std::shared_ptr<Node>> kw_values;  // kwarg values / macro defaults (null = none)
  std::shared_ptr<Node> body, else_body, cond, expr;
  bool negated = false;
};

namespace {

using NodePtr = std::shared_ptr<Node>;

NodePtr make(Node::Kind kind, const Located& at) {
  auto n = std::make_shared<Node>();
  n->kind = kind;
  n->at = at;
  return n;
}

class Parser {
 public:
  explicit Parser(std::vector<Chunk> chunks) : chunks_(std::move(chunks)) {}

  NodePtr parse_template() {
    std::string end_tag;
    NodePtr body = parse_body({}, end_tag);
    return body;
  }

 private:
  // Parses chunks until a statement whose first word is in `ends`; that word goes to `found`.
  NodePtr parse_body(const std::vector<std::string>& ends, std::string& found) {
    if (++depth_ > 200) fail(chunks_.empty() ? Located{} : chunks_[std::min(index_, chunks_.size() - 1)].at, "nesting is too deep");
    NodePtr body = make(Node::Kind::Body, index_ < chunks_.size() ? chunks_[index_].at : Located{});
    while (index_ < chunks_.size()) {
      Chunk& chunk = chunks_[index_];
      if (chunk.kind == Chunk::Kind::Text) {
        NodePtr t = make(Node::Kind::Text, chunk.at);
        t->name = chunk.text;
        body->children.push_back(t);
        ++index_;
        continue;
      }
      tokens_ = &chunk.tokens;
      tok_ = 0;
      at_ = chunk.at;
      if (chunk.kind == Chunk::Kind::Output) {
        ++index_;
        NodePtr out = make(Node::Kind::Output, chunk.at);
        out->expr = parse_bare_tuple([this] { return parse_expression(); });
        expect_end();
        body->children.push_back(out);
        continue;
      }
      if (chunk.tokens.empty()) fail(chunk.at, "empty {% %} tag");
      const std::string word = chunk.tokens[0].text;
      if (std::find(ends.begin(), ends.end(), word) != ends.end()) {
        found = word;
        --depth_;
        return body;  // the caller reads the rest of this tag
      }
      ++index_;
      tok_ = 1;
      body->children.push_back(parse_statement(word, chunk.at));
    }
    if (!ends.empty()) fail(chunks_.empty() ? Located{} : chunks_.back().at, "missing {% " + ends.back() + " %}");
    --depth_;
    return body;
  }

  NodePtr parse_statement(const std::string& word, const Located& at) {
    if (word == "if") {
      NodePtr node = make(Node::Kind::If, at);
      NodePtr cond = parse_expression();
      expect_end();
      NodePtr current = node;
      current->cond = cond;
      while (true) {
        std::string found;
        current->body = parse_body({"elif", "else", "endif"}, found);
        begin_tag_tokens();
        if (found == "elif") {
          NodePtr next = make(Node::Kind::If, chunks_[index_].at);
          next->cond = parse_expression();
          expect_end();
          ++index_;
          NodePtr wrapper = make(Node::Kind::Body, next->at);
          wrapper->children.push_back(next);
          current->else_body = wrapper;
          current = next;
          continue;
        }
        if (found == "else") {
          expect_end();
          ++index_;
          std::string end;
          current->else_body = parse_body({"endif"}, end);
          begin_tag_tokens();
        }
        expect_end();
        ++index_;
        return node;
      }
    }
    if (word == "for") {
      NodePtr node = make(Node::Kind::For, at);
      do {
        node->names.push_back(expect_name());
      } while (accept_op(","));
      if (!accept_name("in")) fail(here(), "expected 'in' in a for loop");
      node->expr = parse_or_with_filters_no_cond();
      if (accept_name("if")) node->cond = parse_or_with_filters_no_cond();
      accept_name("recursive");
      expect_end();
      std::string found;
      ++loop_depth_;
      node->body = parse_body({"else", "endfor"}, found);
      --loop_depth_;
      begin_tag_tokens();
      if (found == "else") {
        expect_end();
        ++index_;
        std::string end;
        node->else_body = parse_body({"endfor"}, end);
        begin_tag_tokens();
      }
      expect_end();
      ++index_;
      return node;
    }
    if (word == "set") {
      const std::string target = expect_name();
      std::string attr;
      std::vector<std::string> targets;  // {% set a, b = ... %}
      if (accept_op(".")) attr = expect_name();
      else if (peek_op(",")) {
        targets.push_back(target);
        while (accept_op(",")) targets.push_back(expect_name());
      }
      if (accept_op("=")) {
        NodePtr node = make(Node::Kind::Set, at);
        node->name = target;
        node->attr = attr;
        node->names = targets;
        node->expr = parse_bare_tuple([this] { return parse_expression(); });
        expect_end();
        return node;
      }
      if (!targets.empty()) fail(here(), "expected '=' after several set targets");
      expect_end();
      NodePtr node = make(Node::Kind::SetBlock, at);
      node->name = target;
      node->attr = attr;
      std::string end;
      node->body = parse_body({"endset"}, end);
      begin_tag_tokens();
      expect_end();
      ++index_;
      return node;
    }
    if (word == "macro") {
      NodePtr node = make(Node::Kind::Macro, at);
      node->name = expect_name();
      expect_op("(");
      if (!accept_op(")")) {
        do {
          node->names.push_back(expect_name());
          node->kw_values.push_back(accept_op("=") ? parse_expression() : nullptr);
        } while (accept_op(","));
        expect_op(")");
      }
      expect_end();
      std::string end;
      const int outer_loops = loop_depth_;
      loop_depth_ = 0;  // a macro body is not inside the loop around its definition
      node->body = parse_body({"endmacro"}, end);
      loop_depth_ = outer_loops;
      begin_tag_tokens();
      expect_end();
      ++index_;
      return node;
    }
    if (word == "break" || word == "continue") {
      if (loop_depth_ == 0) fail(at, "'{% " + word + " %}' outside a for loop");
      expect_end();
      return make(word == "break" ? Node::Kind::Break : Node::Kind::Continue, at);
    }
    if (word == "with") {  // {% with a = x, b = y %}: a scope of its own, values read from outside it
      NodePtr node = make(Node::Kind::With, at);
      if (!tokens_done()) {
        do {
          node->names.push_back(expect_name());
          expect_op("=");
          node->kw_values.push_back(parse_expression());
        } while (accept_op(","));
      }
      expect_end();
      std::string end;
      node->body = parse_body({"endwith"}, end);
      begin_tag_tokens();
      expect_end();
      ++index_;
      return node;
    }
    if (word == "generation") {  // transformers' assistant-mask marker: renders its body
      expect_end();
      std::string end;
      NodePtr body = parse_body({"endgeneration"}, end);
      begin_tag_tokens();
      expect_end();
      ++index_;
      return body;
    }
    fail(at, "unsupported statement '{% " + word + " %}'");
  }

  // Expressions nest through recursion: bound it so that "((((..." or "not not not ..." ends
  // with an error instead of a stack overflow.
  struct ExpressionDepth {
    explicit ExpressionDepth(Parser& p) : parser(p) {
      if (++parser.expression_depth_ > 150) fail(parser.here(), "expression nesting is too deep");
    }
    ~ExpressionDepth() { --parser.expression_depth_; }
    Parser& parser;
  };

  // Positions the token cursor after the first word of the current (ending) tag.
  void begin_tag_tokens() {
    tokens_ = &chunks_[index_].tokens;
    tok_ = 1;
    at_ = chunks_[index_].at;
  }

  // ---- expressions

  NodePtr parse_expression() {
    NodePtr value = parse_or();
    if (peek_name("if")) {
      ++tok_;
      NodePtr node = make(Node::Kind::Cond, value->at);
      node->children.push_back(value);
      node->cond = parse_or();
      node->else_body = accept_name("else") ? parse_expression() : nullptr;
      return node;
    }
    return value;
  }

  NodePtr parse_or_with_filters_no_cond() { return parse_bare_tuple([this] { return parse_or(); }); }

  // `a, b` without parentheses is a tuple where Jinja allows one (output, set, for).
  template <class ParseItem>
  NodePtr parse_bare_tuple(ParseItem parse_item) {
    NodePtr first = parse_item();
    if (!peek_op(",")) return first;
    NodePtr tuple = make(Node::Kind::TupleLit, first->at);
    tuple->children.push_back(first);
    while (accept_op(",")) {
      if (tok_ >= tokens_->size() || peek_name("if")) break;
      tuple->children.push_back(parse_item());
    }
    return tuple;
  }

  NodePtr parse_or() {
    NodePtr left = parse_and();
    while (accept_name("or")) {
      NodePtr node = make(Node::Kind::Or, left->at);
      node->children = {left, parse_and()};
      left = node;
    }
    return left;
  }

  NodePtr parse_and() {
    NodePtr left = parse_not();
    while (accept_name("and")) {
      NodePtr node = make(Node::Kind::And, left->at);
      node->children = {left, parse_not()};
      left = node;
    }
    return left;
  }

  NodePtr parse_not() {
    if (peek_name("not")) {
      const ExpressionDepth guard(*this);
      const Located at = here();
      ++tok_;
      NodePtr node = make(Node::Kind::Not, at);
      node->children.push_back(parse_not());
      return node;
    }
    return parse_compare();
  }

  NodePtr parse_compare() {
    NodePtr left = parse_math1();
    while (true) {
      std::string op;
      if (peek_op("==") || peek_op("!=") || peek_op("<") || peek_op("<=") || peek_op(">") || peek_op(">=")) {
        op = (*tokens_)[tok_++].text;
      } else if (peek_name("in")) {
        ++tok_;
        op = "in";
      } else if (peek_name("not") && tok_ + 1 < tokens_->size() && (*tokens_)[tok_ + 1].kind == Token::Kind::Name &&
                 (*tokens_)[tok_ + 1].text == "in") {
        tok_ += 2;
        op = "not in";
      } else {
        return left;
      }
      NodePtr node = make(Node::Kind::Binary, left->at);
      node->name = op;
      node->children = {left, parse_math1()};
      left = node;
    }
  }

  NodePtr parse_math1() {
    NodePtr left = parse_concat();
    while (peek_op("+") || peek_op("-")) {
      NodePtr node = make(Node::Kind::Binary, left->at);
      node->name = (*tokens_)[tok_++].text;
      node->children = {left, parse_concat()};
      left = node;
    }
    return left;
  }

  NodePtr parse_concat() {
    NodePtr left = parse_math2();
    while (peek_op("~")) {
      ++tok_;
      NodePtr node = make(Node::Kind::Binary, left->at);
      node->name = "~";
      node->children = {left, parse_math2()};
      left = node;
    }
    return left;
  }

  NodePtr parse_math2() {
    NodePtr left = parse_pow();
    while (peek_op("*") || peek_op("/") || peek_op("//") || peek_op("%")) {
      NodePtr node = make(Node::Kind::Binary, left->at);
      node->name = (*tokens_)[tok_++].text;
      node->children = {left, parse_pow()};
      left = node;
    }
    return left;
  }

  NodePtr parse_pow() {
    NodePtr left = parse_unary(true);
    while (peek_op("**")) {
      ++tok_;
      NodePtr node = make(Node::Kind::Binary, left->at);
      node->name = "**";
      node->children = {left, parse_unary(true)};
      left = node;
    }
    return left;
  }

  NodePtr parse_unary(bool with_filter) {
    const ExpressionDepth guard(*this);
    NodePtr node;
    if (peek_op("-")) {
      const Located at = here();
      ++tok_;
      node = make(Node::Kind::Neg, at);
      node->children.push_back(parse_unary(false));
    } else if (peek_op("+")) {
      ++tok_;
      node = parse_unary(false);
    } else {
      node = parse_postfix(parse_primary());
    }
    if (with_filter) node = parse_filters(node);
    return node;
  }

  NodePtr parse_primary() {
    if (tok_ >= tokens_->size()) fail(at_, "expression expected");
    const Token& t = (*tokens_)[tok_];
    const Located at{t.line, t.col};
    ++tok_;
    switch (t.kind) {
      case Token::Kind::Int: { NodePtr n = make(Node::Kind::Literal, at); n->literal = Value::integer(t.i); return n; }
      case Token::Kind::Float: { NodePtr n = make(Node::Kind::Literal, at); n->literal = Value::number(t.f); return n; }
      case Token::Kind::String: {
        NodePtr n = make(Node::Kind::Literal, at);
        std::string s = t.text;
        while (tok_ < tokens_->size() && (*tokens_)[tok_].kind == Token::Kind::String) s += (*tokens_)[tok_++].text;
        n->literal = Value::string(s);
        return n;
      }
      case Token::Kind::Name: {
        NodePtr n = make(Node::Kind::Literal, at);
        if (t.text == "true" || t.text == "True") { n->literal = Value::boolean(true); return n; }
        if (t.text == "false" || t.text == "False") { n->literal = Value::boolean(false); return n; }
        if (t.text == "none" || t.text == "None") { n->literal = Value::none(); return n; }
        n->kind = Node::Kind::Name;
        n->name = t.text;
        return n;
      }
      case Token::Kind::Op:
        if (t.text == "(") {
          if (accept_op(")")) return make(Node::Kind::TupleLit, at);
          NodePtr inner = parse_expression();
          if (accept_op(",")) {
            NodePtr list = make(Node::Kind::TupleLit, at);
            list->children.push_back(inner);
            while (!peek_op(")")) {
              list->children.push_back(parse_expression());
              if (!accept_op(",")) break;
            }
            expect_op(")");
            return list;
          }
          expect_op(")");
          return inner;
        }
        if (t.text == "[") {
          NodePtr list = make(Node::Kind::ListLit, at);
          while (!peek_op("]")) {
            list->children.push_back(parse_expression());
            if (!accept_op(",")) break;
          }
          expect_op("]");
          return list;
        }
        if (t.text == "{") {
          NodePtr dict = make(Node::Kind::DictLit, at);
          while (!peek_op("}")) {
            dict->children.push_back(parse_expression());
            expect_op(":");
            dict->kw_values.push_back(parse_expression());
            if (!accept_op(",")) break;
          }
          expect_op("}");
          return dict;
        }
        break;
      default: break;
    }
    fail(at, "unexpected '" + t.text + "' in an expression");
  }

  NodePtr parse_postfix(NodePtr node) {
    while (true) {
      if (peek_op(".")) {
        ++tok_;
        NodePtr a = make(Node::Kind::Attr, node->at);
        a->children.push_back(node);
        if (tok_ < tokens_->size() && (*tokens_)[tok_].kind == Token::Kind::Int) a->name = (*tokens_)[tok_++].text;
        else a->name = expect_name();
        node = a;
      } else if (peek_op("[")) {
        ++tok_;
        NodePtr start, stop, step;
        bool is_slice = false;
        if (!peek_op(":")) start = parse_expression();
        if (accept_op(":")) {
          is_slice = true;
          if (!peek_op(":") && !peek_op("]")) stop = parse_expression();
          if (accept_op(":") && !peek_op("]")) step = parse_expression();
        }
        expect_op("]");
        NodePtr s = make(is_slice ? Node::Kind::Slice : Node::Kind::Subscript, node->at);
        s->children = {node, start, stop, step};
        node = s;
      } else if (peek_op("(")) {
        ++tok_;
        NodePtr call = make(Node::Kind::Call, node->at);
        call->expr = node;
        parse_call_args(*call);
        node = call;
      } else {
        return node;
      }
    }
  }

  void parse_call_args(Node& call) {
    while (!peek_op(")")) {
      if (tok_ + 1 < tokens_->size() && (*tokens_)[tok_].kind == Token::Kind::Name && (*tokens_)[tok_ + 1].kind == Token::Kind::Op &&
          (*tokens_)[tok_ + 1].text == "=") {
        call.names.push_back((*tokens_)[tok_].text);
        tok_ += 2;
        call.kw_values.push_back(parse_expression());
      } else {
        call.children.push_back(parse_expression());
      }
      if (!accept_op(",")) break;
    }
    expect_op(")");
  }

  NodePtr parse_filters(NodePtr node) {
    while (true) {
      if (peek_op("|")) {
        ++tok_;
        NodePtr f = make(Node::Kind::Filter, node->at);
        f->name = expect_name();
        f->expr = node;
        if (accept_op("(")) parse_call_args(*f);
        node = f;
      } else if (peek_name("is")) {
        ++tok_;
        NodePtr t = make(Node::Kind::Test, node->at);
        t->negated = accept_name("not");
        t->name = expect_name();
        t->expr = node;
        if (accept_op("(")) {
          parse_call_args(*t);
        } else if (tok_ < tokens_->size() && !peek_op(")") && !peek_op(",") && !peek_op("]") && !peek_op("}") &&
                   !peek_name("and") && !peek_name("or") && !peek_name("else") && !peek_name("if") && !peek_op(":") &&
                   ((*tokens_)[tok_].kind != Token::Kind::Op) && !peek_name("is") && !peek_name("not") && !peek_name("in")) {
          t->children.push_back(parse_primary());  // `x is sameas y`, `x is divisibleby 3`
        }
        node = t;
      } else {
        return node;
      }
    }
  }

  // ---- token helpers

  Located here() const {
    if (tok_ < tokens_->size()) return {(*tokens_)[tok_].line, (*tokens_)[tok_].col};
    return at_;
  }
  bool tokens_done() const { return tok_ >= tokens_->size(); }
  bool peek_op(const char* op) const {
    return tok_ < tokens_->size() && (*tokens_)[tok_].kind == Token::Kind::Op && (*tokens_)[tok_].text == op;
  }
  bool peek_name(const char* name) const {
    return tok_ < tokens_->size() && (*tokens_)[tok_].kind == Token::Kind::Name && (*tokens_)[tok_].text == name;
  }
  bool accept_op(const char* op) {
    if (!peek_op(op)) return false;
    ++tok_;
    return true;
  }
  bool accept_name(const char* name) {
    if (!peek_name(name)) return false;
    ++tok_;
    return true;
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) fail(here(), std::string("expected '") + op + "'" + got());
  }
  std::string expect_name() {
    if (tok_ >= tokens_->size() || (*tokens_)[tok_].kind != Token::Kind::Name) fail(here(), "expected a name" + got());
    return (*tokens_)[tok_++].text;
  }
  void expect_end() {
    if (tok_ < tokens_->size()) fail(here(), "unexpected '" + (*tokens_)[tok_].text + "' (expected the end of the tag)");
  }
  std::string got() const { return tok_ < tokens_->size() ? ", got '" + (*tokens_)[tok_].text + "'" : ", got the end of the tag"; }

  std::vector<Chunk> chunks_;
  size_t index_ = 0;
  const std::vector<Token>* tokens_ = nullptr;
  size_t tok_ = 0;
  Located at_;
  int depth_ = 0;
  int loop_depth_ = 0;
  int expression_depth_ = 0;
};

// ------------------------------------------------------------------------------------------------
// Evaluation

bool is_py_space_char(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

enum class CaseChange { Upper, Lower, Title, Capitalize, Swap };

// Python's str.upper/lower/title/capitalize/swapcase with Unicode's simple case mappings (utf8proc);
// Python applies the full mappings, so the few characters that expand ('ß'.upper() == 'SS') differ.
std::string change_case(const std::string& s, CaseChange change) {
  std::string out;
  out.reserve(s.size());
  bool after_cased = false;  // title: inside a word
  bool first = true;
  for (size_t k = 0; k < s.size();) {
    size_t length = 1;
    const int32_t cp = next_code_point(s, k, length);
    const int32_t lower = utf8proc_tolower(cp), upper = utf8proc_toupper(cp);
    const bool cased = lower != cp || upper != cp || utf8proc_category(cp) == UTF8PROC_CATEGORY_LL ||
                       utf8proc_category(cp) == UTF8PROC_CATEGORY_LU || utf8proc_category(cp) == UTF8PROC_CATEGORY_LT;
    int32_t mapped = cp;
    switch (change) {
      case CaseChange::Upper: mapped = upper; break;
      case CaseChange::Lower: mapped = lower; break;
      case CaseChange::Title: mapped = after_cased ? lower : utf8proc_totitle(cp); break;
      case CaseChange::Capitalize: mapped = first ? utf8proc_totitle(cp) : lower; break;
      case CaseChange::Swap: mapped = upper != cp ? upper : lower; break;
    }
    after_cased = cased;
    first = false;
    if (mapped == cp) {
      out.append(s, k, length);
    } else {
      utf8proc_uint8_t buf[4];
      out.append(reinterpret_cast<const char*>(buf), size_t(utf8proc_encode_char(mapped, buf)));
    }
    k += length;
  }
  return out;
}

std::string lower_ascii_and_unicode(const std::string& s) { return change_case(s, CaseChange::Lower); }

// str.isdigit/isalpha/isalnum/isspace/isupper/islower, by Unicode category.
bool classify(const std::string& s, const std::string& what) {
  if (s.empty()) return false;
  bool any_cased = false;
  for (size_t k = 0; k < s.size();) {
    size_t length = 1;
    const int32_t cp = next_code_point(s, k, length);
    k += length;
    const utf8proc_category_t category = utf8proc_category(cp);
    const bool letter = category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_LO;
    const bool digit = category == UTF8PROC_CATEGORY_ND;
    if (what == "isdigit" && !digit) return false;
    if (what == "isalpha" && !letter) return false;
    if (what == "isalnum" && !letter && !digit && category != UTF8PROC_CATEGORY_NL && category != UTF8PROC_CATEGORY_NO) return false;
    if (what == "isspace" && !(cp < 0x80 ? is_py_space_char(char(cp)) || (cp >= 0x1c && cp <= 0x1f)
                                         : category == UTF8PROC_CATEGORY_ZS || category == UTF8PROC_CATEGORY_ZL ||
                                               category == UTF8PROC_CATEGORY_ZP || cp == 0x85))
      return false;
    if (what == "isupper" || what == "islower") {
      if (category == UTF8PROC_CATEGORY_LU || category == UTF8PROC_CATEGORY_LT) {
        if (what == "islower") return false;
        any_cased = true;
      } else if (category == UTF8PROC_CATEGORY_LL) {
        if (what == "isupper") return false;
        any_cased = true;
      }
    }
  }
  return what == "isupper" || what == "islower" ? any_cased : true;
}

struct LoopControl {
  enum class Kind { None, Break, Continue } kind = Kind::None;
};

class Renderer {
 public:
  Renderer(const Options& options, const ojson& context) : options_(options) {
    scopes_.emplace_back();
    for (const auto& [k, v] : context.items()) scopes_.back()[k] = from_json(v);
    install_globals();
  }

  std::string run(const Node& root) {
    std::string out;
    LoopControl control;
    exec(root, out, control);
    return out;
  }

 private:
  void install_globals() {
    auto& g = scopes_.front();
    g["raise_exception"] = Value::function([](Args& args, Kwargs&) -> Value {
      throw_error("chat template", "raise_exception: " + (args.empty() ? std::string() : to_text(args[0])));
    });
    g["namespace"] = Value::function([](Args& args, Kwargs& kwargs) {
      Value ns = Value::make_dict();
      ns.is_namespace = true;
      if (!args.empty() && args[0].kind == Value::Kind::Dict) *ns.dict = *args[0].dict;
      for (auto& [k, v] : kwargs) ns.dict->emplace_back(k, v);
      return ns;
    });
    g["dict"] = Value::function([](Args& args, Kwargs& kwargs) {
      Value d = Value::make_dict();
      if (!args.empty() && args[0].kind == Value::Kind::Dict) *d.dict = *args[0].dict;
      for (auto& [k, v] : kwargs) set_key(*d.dict, k, v);
      return d;
    });
    g["range"] = Value::function([](Args& args, Kwargs&) {
      int64_t start = 0, stop = 0, step = 1;
      if (args.size() == 1) stop = args[0].i;
      else if (args.size() >= 2) { start = args[0].i; stop = args[1].i; if (args.size() > 2) step = args[2].i; }
      if (step == 0) throw_error("chat template", "range() step must not be zero");
      List l;
      for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
        if (l.size() >= 100'000) throw_error("chat template", "range() is too long (limit 100000 items)");
        l.push_back(Value::integer(k));
      }
      return Value::make_list(std::move(l));
    });
    g["strftime_now"] = Value::function([](Args& args, Kwargs&) {
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[256];
      const std::string format = args.empty() ? "%Y-%m-%d" : to_text(args[0]);
      std::strftime(buf, sizeof buf, format.c_str(), &tm);
      return Value::string(buf);
    });
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      const auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    return Value::undefined(name);
  }

  void emit(std::string& out, const std::string& text) {
    out += text;
    if (out.size() > options_.max_output) throw_error("chat template", "output exceeds the size limit");
  }

  void exec(const Node& node, std::string& out, LoopControl& control) {
    switch (node.kind) {
      case Node::Kind::Body:
        for (const NodePtr& child : node.children) {
          exec(*child, out, control);
          if (control.kind != LoopControl::Kind::None) return;
        }
        return;
      case Node::Kind::Text: emit(out, node.name); return;
      case Node::Kind::Output: emit(out, to_text(eval(*node.expr))); return;
      case Node::Kind::If:
        if (truthy(eval(*node.cond))) exec(*node.body, out, control);
        else if (node.else_body) exec(*node.else_body, out, control);
        return;
      case Node::Kind::For: exec_for(node, out); return;
      case Node::Kind::Set: assign(node, eval(*node.expr)); return;
      case Node::Kind::SetBlock: {
        std::string captured;
        LoopControl inner;
        exec(*node.body, captured, inner);
        assign(node, Value::string(captured));
        return;
      }
      case Node::Kind::Macro: define_macro(node); return;
      case Node::Kind::With: {
        std::map<std::string, Value> frame;
        for (size_t k = 0; k < node.names.size(); ++k) frame[node.names[k]] = eval(*node.kw_values[k]);
        scopes_.push_back(std::move(frame));
        exec(*node.body, out, control);
        scopes_.pop_back();
        return;
      }
      case Node::Kind::Break: control.kind = LoopControl::Kind::Break; return;
      case Node::Kind::Continue: control.kind = LoopControl::Kind::Continue; return;
      default: fail(node.at, "not a statement");
    }
  }

  void assign(const Node& node, Value value) {
    if (!node.names.empty()) {
      if (value.kind != Value::Kind::List || value.list->size() != node.names.size())
        fail(node.at, "cannot unpack a " + kind_name(value) + " into " + std::to_string(node.names.size()) + " names");
      for (size_t k = 0; k < node.names.size(); ++k) scopes_.back()[node.names[k]] = (*value.list)[k];
      return;
    }
    if (node.attr.empty()) {
      scopes_.back()[node.name] = std::move(value);
      return;
    }
    Value target = lookup(node.name);
    if (target.kind != Value::Kind::Dict || !target.is_namespace)
      fail(node.at, "cannot set '" + node.name + "." + node.attr + "': '" + node.name + "' is not a namespace()");
    for (auto& [k, v] : *target.dict)
      if (k == node.attr) { v = std::move(value); return; }
    target.dict->emplace_back(node.attr, std::move(value));
  }

  void define_macro(const Node& node) {
    const Node* macro = &node;
    scopes_.back()[node.name] = Value::function([this, macro](Args& args, Kwargs& kwargs) {
      std::map<std::string, Value> frame;
      for (size_t k = 0; k < macro->names.size(); ++k) {
        if (k < args.size()) frame[macro->names[k]] = args[k];
        else if (macro->kw_values[k]) frame[macro->names[k]] = eval(*macro->kw_values[k]);
        else frame[macro->names[k]] = Value::undefined(macro->names[k]);
      }
      for (auto& [k, v] : kwargs) frame[k] = v;
      if (++call_depth_ > 100) fail(macro->at, "macro calls nest too deeply");
      scopes_.push_back(std::move(frame));
      std::string out;
      LoopControl control;
      exec(*macro->body, out, control);
      scopes_.pop_back();
      --call_depth_;
      return Value::string(out);
    });
  }

  void exec_for(const Node& node, std::string& out) {
    const Value iterable = eval(*node.expr);
    List items;
    if (iterable.kind == Value::Kind::List) items = *iterable.list;
    else if (iterable.kind == Value::Kind::Dict)
      for (const auto& [k, v] : *iterable.dict) items.push_back(Value::string(k));
    else if (iterable.kind == Value::Kind::String)
      items = characters(iterable.s);
    else if (!iterable.is_undefined())
      fail(node.expr->at, "cannot loop over a " + kind_name(iterable));
    scopes_.emplace_back();
    // The `if` filter applies before loop.* counts, as in Jinja.
    if (node.cond) {
      List kept;
      for (const Value& item : items) {
        bind_targets(node, item);
        if (truthy(eval(*node.cond))) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const int64_t n = int64_t(items.size());
    for (int64_t k = 0; k < n; ++k) {
      if (++iterations_ > options_.max_iterations) fail(node.at, "too many loop iterations");
      bind_targets(node, items[size_t(k)]);
      Dict loop;
      loop.emplace_back("index", Value::integer(k + 1));
      loop.emplace_back("index0", Value::integer(k));
      loop.emplace_back("revindex", Value::integer(n - k));
      loop.emplace_back("revindex0", Value::integer(n - k - 1));
      loop.emplace_back("first", Value::boolean(k == 0));
      loop.emplace_back("last", Value::boolean(k == n - 1));
      loop.emplace_back("length", Value::integer(n));
      loop.emplace_back("previtem", k > 0 ? items[size_t(k - 1)] : Value::undefined("previtem"));
      loop.emplace_back("nextitem", k + 1 < n ? items[size_t(k + 1)] : Value::undefined("nextitem"));
      loop.emplace_back("cycle", Value::function([k](Args& args, Kwargs&) {
        if (args.empty()) throw_error("chat template", "loop.cycle() needs at least one value");
        return args[size_t(k) % args.size()];
      }));
      scopes_.back()["loop"] = Value::make_dict(std::move(loop));
      LoopControl control;
      exec(*node.body, out, control);
      if (control.kind == LoopControl::Kind::Break) break;
    }
    scopes_.pop_back();
    if (n == 0 && node.else_body) {
      LoopControl control;
      exec(*node.else_body, out, control);
    }
  }

  void bind_targets(const Node& node, const Value& item) {
    if (node.names.size() == 1) {
      scopes_.back()[node.names[0]] = item;
      return;
    }
    if (item.kind != Value::Kind::List || item.list->size() != node.names.size())
      fail(node.at, "cannot unpack a " + kind_name(item) + " into " + std::to_string(node.names.size()) + " names");
    for (size_t k = 0; k < node.names.size(); ++k) scopes_.back()[node.names[k]] = (*item.list)[k];
  }

  static std::string kind_name(const Value& v) {
    switch (v.kind) {
      case Value::Kind::Undefined: return "undefined value";
      case Value::Kind::None: return "none";
      case Value::Kind::Bool: return "boolean";
      case Value::Kind::Int: return "integer";
      case Value::Kind::Float: return "float";
      case Value::Kind::String: return "string";
      case Value::Kind::List: return "list";
      case Value::Kind::Dict: return "dict";
      case Value::Kind::Function: return "function";
    }
    return "value";
  }

  [[noreturn]] void undefined_error(const Node& node, const Value& v) {
    fail(node.at, "'" + (v.s.empty() ? std::string("value") : v.s) + "' is undefined");
  }

  Value eval(const Node& node) {
    switch (node.kind) {
      case Node::Kind::Literal: return node.literal;
      case Node::Kind::Name: return lookup(node.name);
      case Node::Kind::ListLit:
      case Node::Kind::TupleLit: {
        List l;
        for (const NodePtr& c : node.children) l.push_back(eval(*c));
        return Value::make_list(std::move(l), node.kind == Node::Kind::TupleLit ? Value::Seq::Tuple : Value::Seq::List);
      }
      case Node::Kind::DictLit: {
        Dict d;
        for (size_t k = 0; k < node.children.size(); ++k) {
          const Value key = eval(*node.children[k]);
          if (key.kind != Value::Kind::String) fail(node.at, "dict keys must be strings");
          d.emplace_back(key.s, eval(*node.kw_values[k]));
        }
        return Value::make_dict(std::move(d));
      }
      case Node::Kind::Attr: return get_attr(node, eval(*node.children[0]), node.name);
      case Node::Kind::Subscript: {
        const Value obj = eval(*node.children[0]);
        const Value key = eval(*node.children[1]);
        if (key.kind == Value::Kind::String) return get_attr(node, obj, key.s);
        if (obj.is_undefined()) undefined_error(node, obj);
        if (key.kind == Value::Kind::Int || key.kind == Value::Kind::Bool) {
          const int64_t index = key.kind == Value::Kind::Bool ? int64_t(key.b) : key.i;
          if (obj.kind == Value::Kind::List) {
            // dict views (d.items()) cannot be indexed in Python: Jinja gives undefined
            if (obj.seq != Value::Seq::List && obj.seq != Value::Seq::Tuple) return Value::undefined("item");
            const int64_t n = int64_t(obj.list->size()), k = index < 0 ? index + n : index;
            return k >= 0 && k < n ? (*obj.list)[size_t(k)] : Value::undefined("item");
          }
          if (obj.kind == Value::Kind::String) {
            const std::vector<size_t> at = code_point_offsets(obj.s);
            const int64_t n = int64_t(at.size()) - 1, k = index < 0 ? index + n : index;
            return k >= 0 && k < n ? Value::string(obj.s.substr(at[size_t(k)], at[size_t(k) + 1] - at[size_t(k)]))
                                   : Value::undefined("item");
          }
        }
        return Value::undefined("item");
      }
      case Node::Kind::Slice: return slice(node);
      case Node::Kind::Call: {
        const Value callee = eval(*node.expr);
        if (callee.kind != Value::Kind::Function) {
          if (callee.is_undefined()) undefined_error(*node.expr, callee);
          fail(node.at, "a " + kind_name(callee) + " is not callable");
        }
        Args args;
        for (const NodePtr& c : node.children) args.push_back(eval(*c));
        Kwargs kwargs;
        for (size_t k = 0; k < node.names.size(); ++k) kwargs.emplace_back(node.names[k], eval(*node.kw_values[k]));
        return (*callee.fn)(args, kwargs);
      }
      case Node::Kind::Filter: return apply_filter(node);
      case Node::Kind::Test: {
        const bool result = apply_test(node);
        return Value::boolean(node.negated ? !result : result);
      }
      case Node::Kind::Not: return Value::boolean(!truthy(eval(*node.children[0])));
      case Node::Kind::Neg: {
        const Value v = eval(*node.children[0]);
        if (v.kind == Value::Kind::Int) return Value::integer(-v.i);
        if (v.is_number()) return Value::number(-v.as_double());
        fail(node.at, "cannot negate a " + kind_name(v));
      }
      case Node::Kind::And: {
        const Value left = eval(*node.children[0]);
        return truthy(left) ? eval(*node.children[1]) : left;
      }
      case Node::Kind::Or: {
        const Value left = eval(*node.children[0]);
        return truthy(left) ? left : eval(*node.children[1]);
      }
      case Node::Kind::Cond:
        if (truthy(eval(*node.cond))) return eval(*node.children[0]);
        return node.else_body ? eval(*node.else_body) : Value::undefined("");
      case Node::Kind::Binary: return binary(node);
      default: fail(node.at, "not an expression");
    }
  }

  Value slice(const Node& node) {
    const Value obj = eval(*node.children[0]);
    if (obj.is_undefined()) undefined_error(node, obj);
    auto bound = [&](const NodePtr& e, bool present) -> std::optional<int64_t> {
      if (!present || !e) return std::nullopt;
      const Value v = eval(*e);
      if (v.kind == Value::Kind::None) return std::nullopt;
      if (v.kind != Value::Kind::Int) fail(node.at, "slice bounds must be integers");
      return v.i;
    };
    const std::optional<int64_t> start = bound(node.children[1], true), stop = bound(node.children[2], true),
                                 step_opt = bound(node.children[3], true);
    const int64_t step = step_opt.value_or(1);
    if (step == 0) fail(node.at, "slice step cannot be zero");
    if (obj.kind != Value::Kind::List && obj.kind != Value::Kind::String) fail(node.at, "cannot slice a " + kind_name(obj));
    const std::vector<size_t> at = obj.kind == Value::Kind::String ? code_point_offsets(obj.s) : std::vector<size_t>{};
    const int64_t n = obj.kind == Value::Kind::List ? int64_t(obj.list->size()) : int64_t(at.size()) - 1;
    // Python's slice.indices().
    auto clamp_index = [&](std::optional<int64_t> v, int64_t fallback, bool is_stop) {
      if (!v) return fallback;
      int64_t k = *v;
      if (k < 0) k += n;
      if (step > 0) return std::clamp<int64_t>(k, 0, n);
      (void)is_stop;
      return std::clamp<int64_t>(k, -1, n - 1);
    };
    const int64_t begin = clamp_index(start, step > 0 ? 0 : n - 1, false);
    const int64_t end = clamp_index(stop, step > 0 ? n : -1, true);
    List out_list;
    std::string out_string;
    for (int64_t k = begin; step > 0 ? k < end : k > end; k += step) {
      if (obj.kind == Value::Kind::List) out_list.push_back((*obj.list)[size_t(k)]);
      else out_string.append(obj.s, at[size_t(k)], at[size_t(k) + 1] - at[size_t(k)]);
    }
    return obj.kind == Value::Kind::List ? Value::make_list(std::move(out_list), obj.seq == Value::Seq::Tuple ? Value::Seq::Tuple : Value::Seq::List)
                                         : Value::string(out_string);
  }

  Value get_attr(const Node& node, const Value& obj, const std::string& name) {
    if (obj.is_undefined()) undefined_error(node, obj);
    if (obj.kind == Value::Kind::Dict) {
      if (const Value* v = obj.find(name)) return *v;
      if (!obj.is_namespace) {
        if (Value method = dict_method(obj, name); !method.is_undefined()) return method;
      }
      return Value::undefined(name);
    }
    if (obj.kind == Value::Kind::String) return string_method(node, obj, name);
    if (obj.kind == Value::Kind::List) {
      if (!name.empty() && std::isdigit(uint8_t(name[0]))) {
        const size_t k = std::stoul(name);
        return k < obj.list->size() ? (*obj.list)[k] : Value::undefined(name);
      }
    }
    return Value::undefined(name);
  }

  Value dict_method(const Value& obj, const std::string& name) {
    if (name == "items")
      return Value::function([obj](Args&, Kwargs&) {
        List l;
        for (const auto& [k, v] : *obj.dict) l.push_back(Value::make_tuple({Value::string(k), v}));
        return Value::make_list(std::move(l), Value::Seq::Items);
      });
    if (name == "keys")
      return Value::function([obj](Args&, Kwargs&) {
        List l;
        for (const auto& [k, v] : *obj.dict) l.push_back(Value::string(k));
        return Value::make_list(std::move(l), Value::Seq::Keys);
      });
    if (name == "values")
      return Value::function([obj](Args&, Kwargs&) {
        List l;
        for (const auto& [k, v] : *obj.dict) l.push_back(v);
        return Value::make_list(std::move(l), Value::Seq::Values);
      });
    if (name == "get")
      return Value::function([obj](Args& args, Kwargs&) {
        if (!args.empty() && args[0].kind == Value::Kind::String)
          if (const Value* v = obj.find(args[0].s)) return *v;
        return args.size() > 1 ? args[1] : Value::none();
      });
    return Value::undefined(name);
  }

  static bool is_py_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

  Value string_method(const Node& node, const Value& obj, const std::string& name) {
    const std::string s = obj.s;
    auto strip_impl = [s](Args& args, bool left, bool right) {
      const bool custom = !args.empty() && args[0].kind == Value::Kind::String;
      const std::string chars = custom ? args[0].s : std::string();
      auto strippable = [&](char c) { return custom ? chars.find(c) != std::string::npos : is_py_space(c); };
      size_t b = 0, e = s.size();
      if (left) while (b < e && strippable(s[b])) ++b;
      if (right) while (e > b && strippable(s[e - 1])) --e;
      return Value::string(s.substr(b, e - b));
    };
    if (name == "strip") return Value::function([strip_impl](Args& a, Kwargs&) { return strip_impl(a, true, true); });
    if (name == "lstrip") return Value::function([strip_impl](Args& a, Kwargs&) { return strip_impl(a, true, false); });
    if (name == "rstrip") return Value::function([strip_impl](Args& a, Kwargs&) { return strip_impl(a, false, true); });
    if (name == "startswith" || name == "endswith") {
      const bool starts = name == "startswith";
      return Value::function([s, starts](Args& args, Kwargs&) {
        auto check = [&](const std::string& p) {
          return p.size() <= s.size() && (starts ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0);
        };
        if (args.empty()) return Value::boolean(false);
        if (args[0].kind == Value::Kind::List) {
          for (const Value& p : *args[0].list)
            if (p.kind == Value::Kind::String && check(p.s)) return Value::boolean(true);
          return Value::boolean(false);
        }
        return Value::boolean(check(to_text(args[0])));
      });
    }
    if (name == "split")
      return Value::function([s](Args& args, Kwargs&) {
        List parts;
        const int64_t maxsplit = args.size() > 1 && args[1].kind == Value::Kind::Int ? args[1].i : -1;
        if (args.empty() || args[0].kind == Value::Kind::None) {  // split on whitespace runs
          size_t k = 0;
          int64_t splits = 0;
          while (k < s.size()) {
            while (k < s.size() && is_py_space(s[k])) ++k;
            if (k >= s.size()) break;
            size_t e = k;
            if (maxsplit >= 0 && splits >= maxsplit) e = s.size();
            else while (e < s.size() && !is_py_space(s[e])) ++e;
            parts.push_back(Value::string(s.substr(k, e - k)));
            ++splits;
            k = e;
          }
          return Value::make_list(std::move(parts));
        }
        const std::string sep = to_text(args[0]);
        if (sep.empty()) throw_error("chat template", "split(): empty separator");
        size_t k = 0;
        int64_t splits = 0;
        while (true) {
          const size_t at = (maxsplit >= 0 && splits >= maxsplit) ? std::string::npos : s.find(sep, k);
          if (at == std::string::npos) { parts.push_back(Value::string(s.substr(k))); break; }
          parts.push_back(Value::string(s.substr(k, at - k)));
          k = at + sep.size();
          ++splits;
        }
        return Value::make_list(std::move(parts));
      });
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" || name == "swapcase") {
      const CaseChange change = name == "upper" ? CaseChange::Upper : name == "lower" ? CaseChange::Lower
                                : name == "title" ? CaseChange::Title : name == "capitalize" ? CaseChange::Capitalize
                                                                      : CaseChange::Swap;
      return Value::function([s, change](Args&, Kwargs&) { return Value::string(change_case(s, change)); });
    }
    if (name == "replace")
      return Value::function([s](Args& args, Kwargs&) { return Value::string(replace_all(s, args)); });
    if (name == "find" || name == "rfind" || name == "index" || name == "rindex")
      return Value::function([s, name, at = node.at](Args& args, Kwargs&) {
        if (args.empty() || args[0].kind != Value::Kind::String) fail(at, name + "() needs a string");
        const size_t found = name[0] == 'r' ? s.rfind(args[0].s) : s.find(args[0].s);
        if (found == std::string::npos) {
          if (name == "index" || name == "rindex") fail(at, name + "(): substring not found");
          return Value::integer(-1);
        }
        return Value::integer(int64_t(code_point_offsets(s.substr(0, found)).size()) - 1);  // Python counts characters
      });
    if (name == "count")
      return Value::function([s](Args& args, Kwargs&) {
        const std::string sub = args.empty() ? std::string() : to_text(args[0]);
        if (sub.empty()) return Value::integer(int64_t(code_point_offsets(s).size()));
        int64_t n = 0;
        for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
        return Value::integer(n);
      });
    if (name == "join")
      return Value::function([this, s, at = node.at](Args& args, Kwargs&) {
        if (args.empty()) fail(at, "join() needs a list of strings");
        std::string out;
        bool first = true;
        for (const Value& item : iterate_value(args[0], at)) {
          if (item.kind != Value::Kind::String) fail(at, "join(): expected strings, got a " + kind_name(item));
          if (!first) out += s;
          out += item.s;
          first = false;
        }
        return Value::string(out);
      });
    if (name == "rsplit")
      return Value::function([s, at = node.at](Args& args, Kwargs&) {
        const int64_t maxsplit = args.size() > 1 && args[1].kind == Value::Kind::Int ? args[1].i : -1;
        if (args.empty() || args[0].kind != Value::Kind::String || args[0].s.empty())
          fail(at, "rsplit() is supported with a non-empty separator only");
        const std::string& sep = args[0].s;
        List parts;
        size_t end = s.size();
        int64_t splits = 0;
        while (maxsplit < 0 || splits < maxsplit) {
          if (end < sep.size()) break;
          const size_t found = s.rfind(sep, end - sep.size());
          if (found == std::string::npos) break;
          parts.insert(parts.begin(), Value::string(s.substr(found + sep.size(), end - found - sep.size())));
          end = found;
          ++splits;
        }
        parts.insert(parts.begin(), Value::string(s.substr(0, end)));
        return Value::make_list(std::move(parts));
      });
    if (name == "splitlines")
      return Value::function([s](Args& args, Kwargs&) {
        const bool keep_ends = !args.empty() && truthy(args[0]);
        List lines;
        size_t k = 0;
        while (k < s.size()) {
          size_t e = k;
          while (e < s.size() && s[e] != '\n' && s[e] != '\r') ++e;
          size_t next = e;
          if (next < s.size()) next += (s[next] == '\r' && next + 1 < s.size() && s[next + 1] == '\n') ? 2 : 1;
          lines.push_back(Value::string(s.substr(k, (keep_ends ? next : e) - k)));
          k = next;
        }
        return Value::make_list(std::move(lines));
      });
    if (name == "removeprefix" || name == "removesuffix")
      return Value::function([s, prefix = name == "removeprefix"](Args& args, Kwargs&) {
        const std::string affix = args.empty() ? std::string() : to_text(args[0]);
        if (prefix && s.compare(0, affix.size(), affix) == 0) return Value::string(s.substr(affix.size()));
        if (!prefix && affix.size() <= s.size() && s.compare(s.size() - affix.size(), affix.size(), affix) == 0)
          return Value::string(s.substr(0, s.size() - affix.size()));
        return Value::string(s);
      });
    if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" || name == "isupper" || name == "islower")
      return Value::function([s, name](Args&, Kwargs&) { return Value::boolean(classify(s, name)); });
    if (name == "format")
      fail(node.at, "the string method 'format' is not supported");
    return Value::undefined(name);
  }

  static std::string replace_all(const std::string& s, const Args& args) {
    if (args.size() < 2) throw_error("chat template", "replace() needs two arguments");
    const std::string from = to_text(args[0]), to = to_text(args[1]);
    int64_t budget = args.size() > 2 && args[2].kind == Value::Kind::Int && args[2].i >= 0 ? args[2].i : -1;  // count
    if (from.empty()) return s;
    std::string out;
    size_t k = 0;
    for (size_t at = s.find(from); at != std::string::npos && budget != 0; at = s.find(from, k), --budget) {
      out += s.substr(k, at - k) + to;
      k = at + from.size();
    }
    return out + s.substr(k);
  }

  // Strings built by templates obey the output limit too (doubling a string in a loop grows fast).
  std::string bounded(const Node& node, std::string s) const {
    if (s.size() > options_.max_output) fail(node.at, "string exceeds the size limit");
    return s;
  }

  // Python's ordering: numbers with numbers, strings by code point, lists/tuples item by item.
  int compare(const Node& node, const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) return a.as_double() < b.as_double() ? -1 : a.as_double() > b.as_double() ? 1 : 0;
    if (a.kind == Value::Kind::String && b.kind == Value::Kind::String) return a.s < b.s ? -1 : a.s == b.s ? 0 : 1;
    if (a.kind == Value::Kind::List && b.kind == Value::Kind::List && (a.seq == Value::Seq::Tuple) == (b.seq == Value::Seq::Tuple)) {
      for (size_t k = 0; k < a.list->size() && k < b.list->size(); ++k)
        if (!equal((*a.list)[k], (*b.list)[k])) return compare(node, (*a.list)[k], (*b.list)[k]);
      return a.list->size() < b.list->size() ? -1 : a.list->size() == b.list->size() ? 0 : 1;
    }
    fail(node.at, "cannot compare a " + kind_name(a) + " with a " + kind_name(b));
  }

  Value binary(const Node& node) {
    const std::string& op = node.name;
    const Value a = eval(*node.children[0]);
    const Value b = eval(*node.children[1]);
    if (op == "==") return Value::boolean(equal(a, b));
    if (op == "!=") return Value::boolean(!equal(a, b));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.kind == Value::Kind::String) found = b.s.find(to_text(a)) != std::string::npos;
      else if (b.kind == Value::Kind::List) found = std::any_of(b.list->begin(), b.list->end(), [&](const Value& x) { return equal(x, a); });
      else if (b.kind == Value::Kind::Dict) found = a.kind == Value::Kind::String && b.find(a.s) != nullptr;
      else if (b.is_undefined()) undefined_error(*node.children[1], b);
      else fail(node.at, "'in' needs a string, list or dict on the right, got a " + kind_name(b));
      return Value::boolean(op == "in" ? found : !found);
    }
    if (op == "~") return Value::string(bounded(node, to_text(a) + to_text(b)));
    if (op == "<" || op == "<=" || op == ">" || op == ">=") {
      if (a.is_undefined()) undefined_error(*node.children[0], a);
      if (b.is_undefined()) undefined_error(*node.children[1], b);
      const int cmp = compare(node, a, b);
      if (op == "<") return Value::boolean(cmp < 0);
      if (op == "<=") return Value::boolean(cmp <= 0);
      if (op == ">") return Value::boolean(cmp > 0);
      return Value::boolean(cmp >= 0);
    }
    if (op == "+") {
      if (a.kind == Value::Kind::String && b.kind == Value::Kind::String) return Value::string(bounded(node, a.s + b.s));
      if (a.kind == Value::Kind::List && b.kind == Value::Kind::List) {
        if (a.list->size() + b.list->size() > 100'000) fail(node.at, "list concatenation exceeds the size limit (100000 items)");
        List l = *a.list;
        l.insert(l.end(), b.list->begin(), b.list->end());
        return Value::make_list(std::move(l));
      }
    }
    if (op == "*" && ((a.kind == Value::Kind::List && b.kind == Value::Kind::Int) || (a.kind == Value::Kind::Int && b.kind == Value::Kind::List))) {
      const Value& l = a.kind == Value::Kind::List ? a : b;
      const int64_t n = a.kind == Value::Kind::Int ? a.i : b.i;
      if (n > 0 && int64_t(l.list->size()) * n > 100'000) fail(node.at, "list repetition exceeds the size limit (100000 items)");
      List r;
      for (int64_t k = 0; k < n; ++k) r.insert(r.end(), l.list->begin(), l.list->end());
      return Value::make_list(std::move(r), l.seq == Value::Seq::Tuple ? Value::Seq::Tuple : Value::Seq::List);
    }
    if (op == "*" && ((a.kind == Value::Kind::String && b.kind == Value::Kind::Int) || (a.kind == Value::Kind::Int && b.kind == Value::Kind::String))) {
      const std::string& s = a.kind == Value::Kind::String ? a.s : b.s;
      const int64_t n = a.kind == Value::Kind::Int ? a.i : b.i;
      if (n > 0 && int64_t(s.size()) * n > int64_t(options_.max_output)) fail(node.at, "string repetition exceeds the size limit");
      std::string r;
      for (int64_t k = 0; k < n; ++k) r += s;
      return Value::string(r);
    }
    if (!a.is_number() || !b.is_number()) {
      if (a.is_undefined()) undefined_error(*node.children[0], a);
      if (b.is_undefined()) undefined_error(*node.children[1], b);
      fail(node.at, "unsupported operand types for " + op + ": " + kind_name(a) + " and " + kind_name(b));
    }
    const bool both_int = a.kind != Value::Kind::Float && b.kind != Value::Kind::Float;
    const int64_t ai = a.kind == Value::Kind::Bool ? a.b : a.i, bi = b.kind == Value::Kind::Bool ? b.b : b.i;
    const double ad = a.as_double(), bd = b.as_double();
    if (op == "+") return both_int ? Value::integer(ai + bi) : Value::number(ad + bd);
    if (op == "-") return both_int ? Value::integer(ai - bi) : Value::number(ad - bd);
    if (op == "*") return both_int ? Value::integer(ai * bi) : Value::number(ad * bd);
    if (op == "/") {
      if (bd == 0) fail(node.at, "division by zero");
      return Value::number(ad / bd);
    }
    if (op == "//" || op == "%") {
      if (bd == 0) fail(node.at, "division by zero");
      if (both_int) {
        int64_t q = ai / bi, r = ai % bi;
        if (r != 0 && ((r < 0) != (bi < 0))) { --q; r += bi; }
        return Value::integer(op == "//" ? q : r);
      }
      const double q = std::floor(ad / bd);
      return Value::number(op == "//" ? q : ad - q * bd);
    }
    if (op == "**") return both_int && bi >= 0 ? Value::integer(int64_t(std::llround(std::pow(ad, bd)))) : Value::number(std::pow(ad, bd));
    fail(node.at, "unknown operator " + op);
  }

  Value apply_filter(const Node& node) {
    Value v = eval(*node.expr);
    Args args;
    for (const NodePtr& c : node.children) args.push_back(eval(*c));
    Kwargs kwargs;
    for (size_t k = 0; k < node.names.size(); ++k) kwargs.emplace_back(node.names[k], eval(*node.kw_values[k]));
    return call_filter(node, node.name, v, args, kwargs);
  }

  // The items a for loop would visit: list items, dict keys, string characters.
  List iterate_value(const Value& v, const Located& at) {
    Node where;
    where.at = at;
    return iterate(where, v);
  }

  List iterate(const Node& node, const Value& v) {
    if (v.kind == Value::Kind::List) return *v.list;
    List items;
    if (v.kind == Value::Kind::Dict)
      for (const auto& [k, x] : *v.dict) items.push_back(Value::string(k));
    else if (v.kind == Value::Kind::String) items = characters(v.s);
    else if (!v.is_undefined()) fail(node.at, "cannot iterate over a " + kind_name(v));
    return items;
  }

  static List characters(const std::string& s) {
    List chars;
    const std::vector<size_t> at = code_point_offsets(s);
    for (size_t k = 0; k + 1 < at.size(); ++k) chars.push_back(Value::string(s.substr(at[k], at[k + 1] - at[k])));
    return chars;
  }

  static std::string strip_copy(const std::string& s) {
    size_t b = 0, e = s.size();
    while (b < e && is_py_space(s[b])) ++b;
    while (e > b && is_py_space(s[e - 1])) --e;
    return s.substr(b, e - b);
  }

  Value call_filter(const Node& node, const std::string& name, Value v, Args args, Kwargs kwargs) {
    auto kwarg = [&](const char* key, size_t position) -> const Value* {
      for (auto& [k, val] : kwargs)
        if (k == key) return &val;
      return position < args.size() ? &args[position] : nullptr;
    };
    if (name == "default" || name == "d") {
      const Value* fallback = kwarg("default_value", 0);
      const Value* boolean = kwarg("boolean", 1);
      const bool use_fallback = v.is_undefined() || (boolean && truthy(*boolean) && !truthy(v));
      return use_fallback ? (fallback ? *fallback : Value::string("")) : v;
    }
    if (v.is_undefined() && name != "string" && name != "length" && name != "count")
      undefined_error(*node.expr, v);
    if (name == "tojson") {  // transformers' tojson: json.dumps(x, ensure_ascii, indent, separators, sort_keys)
      JsonStyle style;
      if (const Value* ensure_ascii = kwarg("ensure_ascii", 0)) style.ensure_ascii = truthy(*ensure_ascii);
      if (const Value* indent = kwarg("indent", 1); indent && indent->kind != Value::Kind::None) {
        if (indent->kind == Value::Kind::Int) style.indent = std::string(size_t(std::clamp<int64_t>(indent->i, 0, 64)), ' ');
        else if (indent->kind == Value::Kind::String) style.indent = indent->s;
        else fail(node.at, "tojson: indent must be an integer or a string");
        style.pretty = true;
        style.item_separator = ",";
      }
      if (const Value* separators = kwarg("separators", 2); separators && separators->kind != Value::Kind::None) {
        if (separators->kind != Value::Kind::List || separators->list->size() != 2 || (*separators->list)[0].kind != Value::Kind::String ||
            (*separators->list)[1].kind != Value::Kind::String)
          fail(node.at, "tojson: separators must be a pair of strings");
        style.item_separator = (*separators->list)[0].s;
        style.key_separator = (*separators->list)[1].s;
      }
      if (const Value* sort_keys = kwarg("sort_keys", 3)) style.sort_keys = truthy(*sort_keys);
      std::string out;
      to_json_text(v, style, 0, out);
      return Value::string(out);
    }
    if (name == "length" || name == "count") {
      if (v.kind == Value::Kind::String) {
        int64_t n = 0;
        for (unsigned char c : v.s) n += (c & 0xC0) != 0x80;
        return Value::integer(n);
      }
      if (v.kind == Value::Kind::List) return Value::integer(int64_t(v.list->size()));
      if (v.kind == Value::Kind::Dict) return Value::integer(int64_t(v.dict->size()));
      if (v.is_undefined()) return Value::integer(0);
      fail(node.at, "length of a " + kind_name(v));
    }
    if (name == "string") return Value::string(to_text(v));
    if (name == "trim") {
      Args a;
      return (*string_method(node, Value::string(to_text(v)), "strip").fn)(a, kwargs);
    }
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
      Args a;
      return (*string_method(node, Value::string(to_text(v)), name).fn)(a, kwargs);
    }
    if (name == "wordcount") {
      int64_t words = 0;
      bool in_word = false;
      for (const Value& c : characters(to_text(v))) {
        size_t length = 1;
        const int32_t cp = next_code_point(c.s, 0, length);
        const bool word_char = cp == '_' || (cp < 0x80 ? std::isalnum(cp) != 0 : utf8proc_category(cp) <= UTF8PROC_CATEGORY_NO);
        if (word_char && !in_word) ++words;
        in_word = word_char;
      }
      return Value::integer(words);
    }
    if (name == "replace") return Value::string(replace_all(to_text(v), args));
    if (name == "safe" || name == "e" || name == "escape") {
      if (name == "safe") return v;
      std::string out;
      for (char c : to_text(v)) {
        switch (c) {
          case '&': out += "&amp;"; break;
          case '<': out += "&lt;"; break;
          case '>': out += "&gt;"; break;
          case '"': out += "&#34;"; break;
          case '\'': out += "&#39;"; break;
          default: out += c;
        }
      }
      return Value::string(out);
    }
    if (name == "join") {
      const Value* sep = kwarg("d", 0);
      std::string out;
      if (v.kind != Value::Kind::List) fail(node.at, "join needs a list, got a " + kind_name(v));
      for (size_t k = 0; k < v.list->size(); ++k) out += (k && sep ? to_text(*sep) : "") + to_text((*v.list)[k]);
      return Value::string(out);
    }
    if (name == "first" || name == "last") {
      if (v.kind == Value::Kind::List) {
        if (v.list->empty()) return Value::undefined(name);
        return name == "first" ? v.list->front() : v.list->back();
      }
      if (v.kind == Value::Kind::String) {
        const List chars = characters(v.s);
        if (chars.empty()) return Value::undefined(name);
        return name == "first" ? chars.front() : chars.back();
      }
      if (v.kind == Value::Kind::Dict) {
        if (v.dict->empty()) return Value::undefined(name);
        if (name == "first") return Value::string(v.dict->front().first);
      }
      fail(node.at, "'" + name + "' of a " + kind_name(v));
    }
    if (name == "list") return Value::make_list(iterate(node, v));
    if (name == "items") {
      if (v.kind != Value::Kind::Dict) fail(node.at, "items needs a dict");
      Args a;
      return (*dict_method(v, "items").fn)(a, kwargs);
    }
    if (name == "reverse") {
      if (v.kind == Value::Kind::String) {
        std::string out;
        const List chars = characters(v.s);
        for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += it->s;
        return Value::string(out);
      }
      List l = iterate(node, v);
      std::reverse(l.begin(), l.end());
      return Value::make_list(std::move(l));
    }
    if (name == "int") {
      if (v.kind == Value::Kind::String) {
        const Value* fallback = kwarg("default", 0);
        char* end = nullptr;
        const std::string text = strip_copy(v.s);
        const long long parsed = std::strtoll(text.c_str(), &end, 10);
        if (!text.empty() && end && *end == '\0') return Value::integer(parsed);
        const double as_float = std::strtod(text.c_str(), &end);  // Jinja falls back to int(float(x))
        if (!text.empty() && end && *end == '\0' && std::isfinite(as_float)) return Value::integer(int64_t(as_float));
        return fallback ? *fallback : Value::integer(0);
      }
      return Value::integer(v.is_number() ? int64_t(v.as_double()) : 0);
    }
    if (name == "float") {
      if (v.kind == Value::Kind::String) {
        char* end = nullptr;
        const std::string text = strip_copy(v.s);
        const double parsed = std::strtod(text.c_str(), &end);
        if (!text.empty() && end && *end == '\0') return Value::number(parsed);
        const Value* fallback = kwarg("default", 0);
        return fallback ? *fallback : Value::number(0.0);
      }
      return Value::number(v.is_number() ? v.as_double() : 0.0);
    }
    if (name == "abs") {
      if (v.kind == Value::Kind::Int) return Value::integer(v.i < 0 ? -v.i : v.i);
      if (v.kind == Value::Kind::Bool) return Value::integer(v.b);
      if (v.kind == Value::Kind::Float) return Value::number(std::fabs(v.f));
      fail(node.at, "abs of a " + kind_name(v));
    }
    if (name == "round") {
      const Value* precision = kwarg("precision", 0);
      const Value* method = kwarg("method", 1);
      const std::string how = method ? to_text(*method) : "common";
      if (!v.is_number()) fail(node.at, "round of a " + kind_name(v));
      const double scale = std::pow(10.0, precision && precision->kind == Value::Kind::Int ? double(precision->i) : 0.0);
      const double x = v.as_double() * scale;
      double r;
      if (how == "common") r = std::nearbyint(x);  // Python's round(): ties to even
      else if (how == "ceil") r = std::ceil(x);
      else if (how == "floor") r = std::floor(x);
      else fail(node.at, "round: method must be 'common', 'ceil' or 'floor'");
      return Value::number(r / scale);
    }
    if (name == "sort" || name == "dictsort" || name == "unique" || name == "max" || name == "min") {
      const bool reverse = name == "sort" && [&] { const Value* r = kwarg("reverse", 0); return r && truthy(*r); }();
      const Value* case_sensitive = kwarg("case_sensitive", name == "sort" ? 1 : 0);
      const bool fold_case = !(case_sensitive && truthy(*case_sensitive));
      const Value* attribute = kwarg("attribute", name == "sort" ? 2 : name == "unique" || name == "dictsort" ? 99 : 1);
      List items = name == "dictsort" ? List{} : iterate(node, v);
      if (name == "dictsort") {
        if (v.kind != Value::Kind::Dict) fail(node.at, "dictsort needs a dict");
        for (const auto& [k, x] : *v.dict) items.push_back(Value::make_tuple({Value::string(k), x}));
      }
      // The key Jinja sorts by: the item (or its attribute, or a dict item's key), lower-cased
      // strings unless case_sensitive.
      auto key = [&](const Value& item) {
        Value k = item;
        if (name == "dictsort") k = (*item.list)[0];
        else if (attribute) k = get_attr(node, item, to_text(*attribute));
        if (fold_case && k.kind == Value::Kind::String) k = Value::string(lower_ascii_and_unicode(k.s));
        return k;
      };
      if (name == "unique") {
        List out, seen;
        for (const Value& item : items) {
          const Value k = key(item);
          if (std::none_of(seen.begin(), seen.end(), [&](const Value& x) { return equal(x, k); })) {
            seen.push_back(k);
            out.push_back(item);
          }
        }
        return Value::make_list(std::move(out));
      }
      if (name == "max" || name == "min") {
        if (items.empty()) return Value::undefined(name);
        size_t best = 0;
        for (size_t k = 1; k < items.size(); ++k) {
          const int cmp = compare(node, key(items[k]), key(items[best]));
          if (name == "max" ? cmp > 0 : cmp < 0) best = k;
        }
        return items[best];
      }
      std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
        return reverse ? compare(node, key(b), key(a)) < 0 : compare(node, key(a), key(b)) < 0;
      });
      return Value::make_list(std::move(items));
    }
    if (name == "sum") {
      const Value* attribute = kwarg("attribute", 0);
      const Value* start = kwarg("start", 1);
      Value total = start ? *start : Value::integer(0);
      for (const Value& item : iterate(node, v)) {
        const Value x = attribute ? get_attr(node, item, to_text(*attribute)) : item;
        if (!x.is_number() || !total.is_number()) fail(node.at, "sum needs numbers, got a " + kind_name(x));
        total = total.kind == Value::Kind::Float || x.kind == Value::Kind::Float
                    ? Value::number(total.as_double() + x.as_double())
                    : Value::integer((total.kind == Value::Kind::Bool ? total.b : total.i) + (x.kind == Value::Kind::Bool ? x.b : x.i));
      }
      return total;
    }
    if (name == "indent") {
      const Value* width = kwarg("width", 0);
      const Value* first = kwarg("first", 1);
      const Value* blank = kwarg("blank", 2);
      const std::string pad = width && width->kind == Value::Kind::String ? width->s
                                                                          : std::string(size_t(width ? std::clamp<int64_t>(width->i, 0, 256) : 4), ' ');
      const std::string text = to_text(v);
      std::string out;
      size_t line_start = 0;
      bool first_line = true;
      while (true) {
        const size_t end = text.find('\n', line_start);
        const std::string line = text.substr(line_start, end == std::string::npos ? std::string::npos : end - line_start);
        const bool indent_this = first_line ? (first && truthy(*first)) : (!line.empty() || (blank && truthy(*blank)));
        if (indent_this) out += pad;
        out += line;
        if (end == std::string::npos) break;
        out += '\n';
        line_start = end + 1;
        first_line = false;
      }
      return Value::string(out);
    }
    if (name == "map") {
      const Value* attribute = kwarg("attribute", 99);
      List out;
      if (attribute) {
        const Value* fallback = kwarg("default", 99);
        for (const Value& item : iterate(node, v)) {
          Value x = get_attr(node, item, to_text(*attribute));
          out.push_back(x.is_undefined() && fallback ? *fallback : x);
        }
        return Value::make_list(std::move(out));
      }
      if (args.empty()) fail(node.at, "map needs a filter name or attribute=...");
      const std::string filter = to_text(args[0]);
      for (const Value& item : iterate(node, v)) out.push_back(call_filter(node, filter, item, Args(args.begin() + 1, args.end()), kwargs));
      return Value::make_list(std::move(out));
    }
    if (name == "select" || name == "reject") {
      List out;
      const std::string test = args.empty() ? "" : to_text(args[0]);
      const Args test_args(args.size() > 1 ? args.begin() + 1 : args.end(), args.end());
      for (const Value& item : iterate(node, v)) {
        const bool pass = test.empty() ? truthy(item) : run_test(node, test, item, test_args);
        if (pass == (name == "select")) out.push_back(item);
      }
      return Value::make_list(std::move(out));
    }
    if (name == "selectattr" || name == "rejectattr") {
      if (args.empty()) fail(node.at, name + " needs an attribute name");
      const std::string attr = to_text(args[0]);
      const std::string test = args.size() > 1 ? to_text(args[1]) : "";
      const Args test_args(args.size() > 2 ? args.begin() + 2 : args.end(), args.end());
      List out;
      for (const Value& item : iterate(node, v)) {
        const Value field = get_attr(node, item, attr);
        const bool pass = test.empty() ? truthy(field) : run_test(node, test, field, test_args);
        if (pass == (name == "selectattr")) out.push_back(item);
      }
      return Value::make_list(std::move(out));
    }
    fail(node.at, "unsupported filter '" + name + "'");
  }

  bool apply_test(const Node& node) {
    const Value v = eval(*node.expr);
    Args args;
    for (const NodePtr& c : node.children) args.push_back(eval(*c));
    return run_test(node, node.name, v, args);
  }

  bool run_test(const Node& node, const std::string& name, const Value& v, const Args& args) {
    if (name == "lt" || name == "lessthan" || name == "le" || name == "gt" || name == "greaterthan" || name == "ge") {
      if (args.empty()) fail(node.at, "the test '" + name + "' needs a value to compare with");
      const int cmp = compare(node, v, args[0]);
      if (name == "lt" || name == "lessthan") return cmp < 0;
      if (name == "le") return cmp <= 0;
      if (name == "gt" || name == "greaterthan") return cmp > 0;
      return cmp >= 0;
    }
    if (name == "in") {
      if (args.empty()) fail(node.at, "the test 'in' needs a container");
      const Value& c = args[0];
      if (c.kind == Value::Kind::String) return v.kind == Value::Kind::String && c.s.find(v.s) != std::string::npos;
      if (c.kind == Value::Kind::List) return std::any_of(c.list->begin(), c.list->end(), [&](const Value& x) { return equal(x, v); });
      if (c.kind == Value::Kind::Dict) return v.kind == Value::Kind::String && c.find(v.s) != nullptr;
      fail(node.at, "the test 'in' needs a string, list or dict, got a " + kind_name(c));
    }
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.kind == Value::Kind::None;
    if (name == "string") return v.kind == Value::Kind::String;
    if (name == "number") return v.is_number();  // Python's bool is a number too
    if (name == "integer") return v.kind == Value::Kind::Int;
    if (name == "float") return v.kind == Value::Kind::Float;
    if (name == "boolean") return v.kind == Value::Kind::Bool;
    if (name == "true") return v.kind == Value::Kind::Bool && v.b;
    if (name == "false") return v.kind == Value::Kind::Bool && !v.b;
    if (name == "mapping") return v.kind == Value::Kind::Dict;
    if (name == "sequence") return v.kind == Value::Kind::List || v.kind == Value::Kind::String || v.kind == Value::Kind::Dict;
    if (name == "iterable") return v.kind == Value::Kind::List || v.kind == Value::Kind::String || v.kind == Value::Kind::Dict;
    if (name == "callable") return v.kind == Value::Kind::Function;
    if (name == "equalto" || name == "eq" || name == "sameas") return !args.empty() && equal(v, args[0]);
    if (name == "ne") return args.empty() || !equal(v, args[0]);
    if (name == "odd" || name == "even") {
      if (v.kind != Value::Kind::Int) fail(node.at, name + " needs an integer");
      return (v.i % 2 != 0) == (name == "odd");
    }
    if (name == "divisibleby") return !args.empty() && args[0].kind == Value::Kind::Int && args[0].i != 0 && v.kind == Value::Kind::Int && v.i % args[0].i == 0;
    if (name == "lower") return v.kind == Value::Kind::String && std::none_of(v.s.begin(), v.s.end(), [](char c) { return std::isupper(uint8_t(c)); });
    if (name == "upper") return v.kind == Value::Kind::String && std::none_of(v.s.begin(), v.s.end(), [](char c) { return std::islower(uint8_t(c)); });
    fail(node.at, "unsupported test 'is " + name + "'");
  }

  const Options& options_;
  std::vector<std::map<std::string, Value>> scopes_;
  int64_t iterations_ = 0;
  int call_depth_ = 0;
};

}  // namespace

// Jinja reads "\r\n" and "\r" as "\n", and (keep_trailing_newline=False) drops one newline that ends
// the template.
static std::string normalize_newlines(const std::string& source) {
  std::string out;
  out.reserve(source.size());
  for (size_t k = 0; k < source.size(); ++k) {
    if (source[k] == '\r') {
      out += '\n';
      if (k + 1 < source.size() && source[k + 1] == '\n') ++k;
    } else {
      out += source[k];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

Template::Template(const std::string& source, Options options) : options_(options) {
  const std::string normalized = normalize_newlines(source);
  Lexer lexer(normalized, options_);
  Parser parser(lexer.run());
  root_ = parser.parse_template();
}

Template::~Template() = default;

std::string Template::render(const nlohmann::ordered_json& context) const {
  if (!context.is_object()) throw_error("chat template", "the render context must be a JSON object");
  Renderer renderer(options_, context);
  return renderer.run(*root_);
}

}  // namespace jetlm::jinja
