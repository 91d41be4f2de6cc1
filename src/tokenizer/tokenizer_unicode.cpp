// UTF-8 repair, NFC and the GPT-2 byte-level alphabet.
#include <utf8proc.h>

#include <array>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "tokenizer/tokenizer_data.h"

namespace jetlm::tokenizer_detail {

namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

struct ByteLevelAlphabet {
  std::array<uint32_t, 256> to_codepoint{};
  std::array<int16_t, 324> to_byte{};  // every code point of the alphabet is below 324

  ByteLevelAlphabet() {
    to_byte.fill(-1);
    // Printable Latin-1 bytes stand for themselves; the others (controls, space, DEL, NBSP, SHY)
    // are moved to 256.. in byte order, as GPT-2's bytes_to_unicode does.
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_codepoint[size_t(b)] = printable ? uint32_t(b) : next++;
      to_byte[to_codepoint[size_t(b)]] = int16_t(b);
    }
  }
};

const ByteLevelAlphabet& alphabet() {
  static const ByteLevelAlphabet table;
  return table;
}

}  // namespace

int utf8_char_status(const unsigned char* s, size_t available) {
  if (available == 0) return 0;
  const unsigned b0 = s[0];
  if (b0 < 0x80) return 1;
  int continuation = 0;
  unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte (narrower after E0/ED/F0/F4)
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    continuation = 1;
  } else if (b0 == 0xE0) {
    continuation = 2, lo = 0xA0;
  } else if (b0 == 0xED) {
    continuation = 2, hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xE1 && b0 <= 0xEF) {
    continuation = 2;
  } else if (b0 == 0xF0) {
    continuation = 3, lo = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    continuation = 3;
  } else if (b0 == 0xF4) {
    continuation = 3, hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return -1;  // a stray continuation byte, C0/C1 (overlong) or F5..FF
  }
  for (int k = 1; k <= continuation; ++k) {
    if (size_t(k) >= available) return 0;
    const unsigned c = s[k];
    if (c < lo || c > hi) return -k;
    lo = 0x80, hi = 0xBF;
  }
  return continuation + 1;
}

bool is_valid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    const int len = utf8_char_status(s + i, n - i);
    if (len <= 0) return false;
    i += size_t(len);
  }
  return true;
}

std::string repair_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  std::string out;
  out.reserve(text.size() + 8);
  size_t i = 0;
  while (i < text.size()) {
    const int len = utf8_char_status(s + i, text.size() - i);
    if (len > 0) {
      out.append(text.data() + i, size_t(len));
      i += size_t(len);
    } else if (len < 0) {
      out += kReplacement;
      i += size_t(-len);
    } else {  // a character cut off by the end of the text: one maximal invalid subsequence
      out += kReplacement;
      break;
    }
  }
  return out;
}

bool nfc_inert(uint32_t cp) {
  if (cp < 0x80) return true;
  if (cp >= 0x1100 && cp <= 0x11FF) return false;  // conjoining jamo compose algorithmically
  const utf8proc_property_t* p = utf8proc_get_property(utf8proc_int32_t(cp));
  if (p->combining_class != 0) return false;
  if (p->decomp_type == 0 && p->decomp_seqindex != UINT16_MAX) return false;  // canonical decomposition
  // utf8proc marks the second element of a composition pair with bit 15 of comb_index.
  return p->comb_index == UINT16_MAX || (p->comb_index & 0x8000) == 0;
}

namespace {

void append_nfc(const char* text, size_t size, std::string& out) {
  utf8proc_uint8_t* normalized = nullptr;
  const utf8proc_ssize_t length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text), utf8proc_ssize_t(size),
                                               &normalized, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (length < 0) throw_error("tokenizer", std::string("NFC normalization failed: ") + utf8proc_errmsg(length));
  out.append(reinterpret_cast<const char*>(normalized), size_t(length));
  std::free(normalized);
}

}  // namespace

std::string_view nfc_normalize(std::string_view text, std::string& storage) {
  // NFC can only change text around characters that are not inert; the text is cut before every
  // inert character, and only the segments holding something else go through utf8proc (each with
  // the inert starter before it, which such a character may compose with).
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t copied = 0;      // text[0, copied) is in storage already
  size_t prev_start = 0;  // start of the previous character
  bool changed = false;
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      prev_start = i++;
      continue;
    }
    size_t j = i;
    const uint32_t cp = next_codepoint(text, j);
    if (nfc_inert(cp)) {
      prev_start = i;
      i = j;
      continue;
    }
    const size_t segment_begin = i > 0 ? prev_start : 0;
    size_t segment_end = j;
    while (segment_end < n) {
      size_t k = segment_end;
      if (nfc_inert(next_codepoint(text, k))) break;
      segment_end = k;
    }
    if (!changed) {
      storage.clear();
      storage.reserve(n + 16);
      changed = true;
    }
    storage.append(text.data() + copied, segment_begin - copied);
    append_nfc(text.data() + segment_begin, segment_end - segment_begin, storage);
    copied = segment_end;
    i = segment_end;
    prev_start = i;  // not used before the next character sets it
  }
  if (!changed) return text;
  storage.append(text.data() + copied, n - copied);
  return storage;
}

uint32_t byte_to_codepoint(uint8_t b) { return alphabet().to_codepoint[b]; }

int codepoint_to_byte(uint32_t cp) { return cp < 324 ? alphabet().to_byte[cp] : -1; }

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) append_utf8(out, byte_to_codepoint(uint8_t(c)));
  return out;
}

std::string byte_level_token_to_bytes(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    const int b = codepoint_to_byte(next_codepoint(token, i));
    if (b < 0) return std::string(token);
    out += char(b);
  }
  return out;
}

uint32_t next_codepoint(std::string_view s, size_t& i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const uint32_t b0 = p[i];
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  const int len = utf8_char_status(p + i, s.size() - i);
  if (len <= 0) {  // not expected for valid text; treat the byte as a Latin-1 character
    ++i;
    return b0;
  }
  uint32_t cp = len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (p[i + size_t(k)] & 0x3F);
  i += size_t(len);
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

bool is_unicode_whitespace(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace jetlm::tokenizer_detail
