// BPE merges on the bytes of one pre-tokenized word.
//
// Merging works on token ids: a word starts as the ids of its single bytes, and the adjacent pair
// with the lowest merge rank (the leftmost one among equals) is replaced by its merged token until
// no pair has a merge. That is HF's order exactly. Short words (almost all) use a plain scan over
// a small array; long ones (whitespace runs, long digit-free strings) a heap, so the cost stays
// O(n log n).
#include <algorithm>
#include <climits>
#include <cstring>
#include <queue>

#include "tokenizer/tokenizer_data.h"

namespace jetlm::tokenizer_detail {

void MergeTable::reserve(size_t n) {
  size_t capacity = 16;
  while (capacity < n * 2) capacity *= 2;
  if (capacity <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  size_ = 0;
  for (const Slot& slot : old)
    if (slot.key != kEmpty) insert(int32_t(slot.key >> 32), int32_t(uint32_t(slot.key)), slot.merge);
}

void MergeTable::grow() { reserve(std::max<size_t>(16, slots_.size())); }

void MergeTable::insert(int32_t left, int32_t right, Merge merge) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  const uint64_t key = pack(left, right);
  for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
    Slot& slot = slots_[i];
    if (slot.key == key) {
      slot.merge = merge;
      return;
    }
    if (slot.key == kEmpty) {
      slot.key = key;
      slot.merge = merge;
      ++size_;
      return;
    }
  }
}

uint64_t WordCache::hash_word(std::string_view word) {
  // FNV-1a over 8-byte blocks, then a final mix; words are short (<= 64 bytes).
  uint64_t h = 0xcbf29ce484222325ull ^ word.size();
  size_t i = 0;
  for (; i + 8 <= word.size(); i += 8) {
    uint64_t block;
    std::memcpy(&block, word.data() + i, 8);
    h = (h ^ block) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, word.data() + i, word.size() - i);
  h = (h ^ tail) * 0x9E3779B97F4A7C15ull;
  h ^= h >> 32;
  return h | 1;  // never 0, which marks an empty slot
}

bool WordCache::lookup(std::string_view word, std::vector<int32_t>& out) const {
  if (slots_.empty()) return false;
  const uint64_t h = hash_word(word);
  const size_t mask = slots_.size() - 1;
  for (size_t i = size_t(h) & mask;; i = (i + 1) & mask) {
    const Slot& slot = slots_[i];
    if (slot.hash == 0) return false;
    if (slot.hash == h && slot.word_length == word.size() &&
        std::memcmp(words_.data() + slot.word_offset, word.data(), word.size()) == 0) {
      out.insert(out.end(), ids_.begin() + slot.ids_offset, ids_.begin() + slot.ids_offset + slot.ids_length);
      return true;
    }
  }
}

void WordCache::store(std::string_view word, const int32_t* ids, size_t n) {
  if (word.size() > kMaxWordBytes || n > 0xFFFF) return;
  if (size_ >= kMaxEntries) {  // bounded memory: start afresh rather than track recency
    std::fill(slots_.begin(), slots_.end(), Slot{});
    words_.clear();
    ids_.clear();
    size_ = 0;
  }
  if (2 * (size_ + 1) > slots_.size()) {  // keep the load at most 1/2; starts small for short texts
    std::vector<Slot> old(std::max<size_t>(256, 2 * slots_.size()));
    old.swap(slots_);
    const size_t new_mask = slots_.size() - 1;
    for (const Slot& slot : old) {
      if (slot.hash == 0) continue;
      size_t j = size_t(slot.hash) & new_mask;
      while (slots_[j].hash != 0) j = (j + 1) & new_mask;
      slots_[j] = slot;
    }
  }
  const uint64_t h = hash_word(word);
  const size_t mask = slots_.size() - 1;
  size_t i = size_t(h) & mask;
  for (; slots_[i].hash != 0; i = (i + 1) & mask)
    if (slots_[i].hash == h && slots_[i].word_length == word.size() &&
        std::memcmp(words_.data() + slots_[i].word_offset, word.data(), word.size()) == 0)
      return;
  slots_[i] = {h, uint32_t(words_.size()), uint32_t(ids_.size()), uint16_t(word.size()), uint16_t(n)};
  words_.append(word);
  ids_.insert(ids_.end(), ids, ids + n);
  ++size_;
}

void BpeModel::merge_small(std::vector<int32_t>& symbols) const {
  // ranks[i]: rank of the merge of symbols[i] and symbols[i + 1], INT_MAX when there is none.
  constexpr int32_t kNone = INT_MAX;
  int32_t ranks_buffer[64];
  int32_t* ranks = ranks_buffer;
  size_t n = symbols.size();
  auto rank_of = [&](size_t i) {
    const MergeTable::Merge* m = merges.find(symbols[i], symbols[i + 1]);
    return m != nullptr ? m->rank : kNone;
  };
  for (size_t i = 0; i + 1 < n; ++i) ranks[i] = rank_of(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i)
      if (ranks[i] < ranks[best]) best = i;
    if (ranks[best] == kNone) break;
    symbols[best] = merges.find(symbols[best], symbols[best + 1])->merged;
    // Drop symbol best + 1 and the pair rank that started at it.
    std::copy(symbols.begin() + long(best) + 2, symbols.begin() + long(n), symbols.begin() + long(best) + 1);
    if (best + 2 < n) std::copy(ranks + best + 2, ranks + n - 1, ranks + best + 1);
    --n;
    if (best > 0) ranks[best - 1] = rank_of(best - 1);
    if (best + 1 < n) ranks[best] = rank_of(best);
  }
  symbols.resize(n);
}

void BpeModel::merge_large(std::vector<int32_t>& symbols) const {
  const size_t n = symbols.size();
  // A doubly linked list over the original positions; a merged symbol keeps its left position.
  std::vector<int32_t> prev(n), next(n);
  std::vector<uint8_t> alive(n, 1);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = int32_t(i) - 1;
    next[i] = i + 1 < n ? int32_t(i + 1) : -1;
  }
  struct Candidate {
    int32_t rank, pos, left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto push_pair = [&](int32_t pos) {
    if (pos < 0 || next[size_t(pos)] < 0) return;
    const int32_t left = symbols[size_t(pos)], right = symbols[size_t(next[size_t(pos)])];
    if (const MergeTable::Merge* m = merges.find(left, right)) queue.push({m->rank, pos, left, right});
  };
  for (size_t i = 0; i + 1 < n; ++i) push_pair(int32_t(i));
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    // Skip candidates made stale by earlier merges: the pair must still be there as it was.
    const size_t pos = size_t(c.pos);
    if (!alive[pos] || next[pos] < 0) continue;
    const size_t right = size_t(next[pos]);
    if (symbols[pos] != c.left || symbols[right] != c.right) continue;
    symbols[pos] = merges.find(c.left, c.right)->merged;
    alive[right] = 0;
    next[pos] = next[right];
    if (next[pos] >= 0) prev[size_t(next[pos])] = int32_t(pos);
    push_pair(prev[pos]);
    push_pair(int32_t(pos));
  }
  size_t out = 0;
  for (size_t i = 0; i < n; ++i)
    if (alive[i]) symbols[out++] = symbols[i];
  symbols.resize(out);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() == 1) {  // digits, punctuation, single letters: no merging possible
    const int32_t id = byte_to_id[uint8_t(word[0])];
    if (id >= 0) out.push_back(id);
    return;
  }
  if (ignore_merges) {
    const auto it = bytes_to_id.find(word);
    if (it != bytes_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  thread_local std::vector<int32_t> symbols;
  symbols.clear();
  for (char c : word) {
    const int32_t id = byte_to_id[uint8_t(c)];
    if (id >= 0) symbols.push_back(id);  // HF drops characters missing from the vocab (no unk token)
  }
  if (symbols.size() <= 64)
    merge_small(symbols);
  else
    merge_large(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

}  // namespace jetlm::tokenizer_detail
