// Reading a tokenizer from a model directory: tokenizer.json, or vocab.json + merges.txt +
// tokenizer_config.json. Only what byte-level BPE tokenizers use is accepted; anything else is
// refused with a message naming the field, rather than tokenized differently from HF.
#include <filesystem>
#include <map>

#include "core/error.h"
#include "io/json_fields.h"
#include "io/mapped_file.h"
#include "tokenizer/tokenizer_data.h"

namespace jetlm::tokenizer_detail {

namespace {

using json = nlohmann::json;
using json_fields::brief;

constexpr int64_t kMaxTokenId = int64_t(1) << 28;

// GPT-2's split, used by ByteLevel(use_regex = true).
const char* const kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

json parse_json_file(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw_error(path, std::string("not valid JSON: ") + e.what());
  }
}

const json* find_field(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

std::string string_field(const json& obj, const char* key, const std::string& where, const std::string& fallback) {
  const json* value = find_field(obj, key);
  if (value == nullptr) return fallback;
  if (!value->is_string()) throw_error(where, std::string("field '") + key + "': expected a string, got " + brief(*value));
  return value->get<std::string>();
}

bool bool_field(const json& obj, const char* key, const std::string& where, bool fallback) {
  const json* value = find_field(obj, key);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) throw_error(where, std::string("field '") + key + "': expected true or false, got " + brief(*value));
  return value->get<bool>();
}

int32_t token_id(const json& value, const std::string& where) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() >= kMaxTokenId)
    throw_error(where, "expected a token id (an integer in 0.." + std::to_string(kMaxTokenId - 1) + "), got " + brief(value));
  return int32_t(value.get<int64_t>());
}

void read_vocab(const json& vocab, const std::string& where, TokenizerData& data) {
  if (!vocab.is_object()) throw_error(where, "expected an object mapping token strings to ids, got " + brief(vocab));
  data.vocab.reserve(vocab.size());
  for (const auto& [token, id] : vocab.items()) data.vocab[token] = token_id(id, where + " token '" + token + "'");
}

// Turns the merge list into the id-pair table; every token involved must be in the vocab.
void add_merge(TokenizerData& data, const std::string& left, const std::string& right, size_t rank,
               const std::string& where) {
  const auto find = [&](const std::string& token) {
    const auto it = data.vocab.find(token);
    if (it == data.vocab.end())
      throw_error(where, "merge " + std::to_string(rank) + " ('" + left + "' '" + right + "') uses '" + token +
                             "', which is not in the vocab");
    return it->second;
  };
  const int32_t left_id = find(left), right_id = find(right), merged_id = find(left + right);
  data.bpe.merges.insert(left_id, right_id, {int32_t(rank), merged_id});
}

void split_merge_line(std::string_view line, size_t rank, const std::string& where, TokenizerData& data) {
  const size_t space = line.find(' ');
  if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
      line.find(' ', space + 1) != std::string_view::npos)
    throw_error(where, "merge " + std::to_string(rank) + ": expected two tokens separated by one space, got '" +
                           std::string(line) + "'");
  add_merge(data, std::string(line.substr(0, space)), std::string(line.substr(space + 1)), rank, where);
}

void read_merges_json(const json& merges, const std::string& where, TokenizerData& data) {
  if (!merges.is_array()) throw_error(where, "expected a list of merges, got " + brief(merges));
  data.bpe.merges.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& merge = merges[rank];
    if (merge.is_string()) {
      split_merge_line(merge.get<std::string>(), rank, where, data);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      add_merge(data, merge[0].get<std::string>(), merge[1].get<std::string>(), rank, where);
    } else {
      throw_error(where, "merge " + std::to_string(rank) + ": expected \"a b\" or [\"a\", \"b\"], got " + brief(merge));
    }
  }
}

void read_merges_txt(const std::string& path, TokenizerData& data) {
  const std::string text = read_text_file(path);
  size_t rank = 0, pos = 0, line_number = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = end + 1;
    ++line_number;
    if (line.empty() || (line_number == 1 && line.starts_with("#version"))) continue;
    split_merge_line(line, rank++, path + " line " + std::to_string(line_number), data);
  }
}

void read_model(const json& model, const std::string& where, TokenizerData& data) {
  if (!model.is_object()) throw_error(where, "field 'model': expected an object, got " + brief(model));
  const std::string type = string_field(model, "type", where + " model", "BPE");
  if (type != "BPE") throw_error(where, "model.type: expected \"BPE\", got \"" + type + "\" (only byte-level BPE is supported)");
  if (const json* dropout = find_field(model, "dropout"); dropout != nullptr && !(dropout->is_number() && dropout->get<double>() == 0.0))
    throw_error(where, "model.dropout: expected null (BPE dropout is for training), got " + brief(*dropout));
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (!string_field(model, key, where + " model", "").empty())
      throw_error(where, std::string("model.") + key + ": expected null or \"\" (byte-level BPE), got " + brief(model[key]));
  if (bool_field(model, "byte_fallback", where + " model", false))
    throw_error(where, "model.byte_fallback: expected false (byte-level BPE needs no byte fallback)");
  data.bpe.ignore_merges = bool_field(model, "ignore_merges", where + " model", false);
  const json* vocab = find_field(model, "vocab");
  if (vocab == nullptr) throw_error(where, "model.vocab: missing, expected an object mapping tokens to ids");
  read_vocab(*vocab, where + " model.vocab", data);
  const json* merges = find_field(model, "merges");
  if (merges == nullptr) throw_error(where, "model.merges: missing, expected a list of merges");
  read_merges_json(*merges, where + " model.merges", data);
}

void read_normalizer(const json& normalizer, const std::string& where, TokenizerData& data) {
  if (normalizer.is_null()) return;
  const std::string type = string_field(normalizer, "type", where, "");
  if (type == "NFC") {
    data.nfc = true;
  } else if (type == "Sequence" && normalizer.contains("normalizers") && normalizer["normalizers"].is_array()) {
    for (const json& inner : normalizer["normalizers"]) read_normalizer(inner, where, data);
  } else {
    throw_error(where, "normalizer: expected NFC, a Sequence of NFC, or null, got " + brief(normalizer) +
                           " (other normalizers are not supported)");
  }
}

SplitBehavior split_behavior(const std::string& name, const std::string& where) {
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  throw_error(where, "Split.behavior: expected Isolated, Removed, MergedWithPrevious, MergedWithNext or "
                     "Contiguous, got \"" + name + "\"");
}

void read_pre_tokenizer(const json& pre, const std::string& where, TokenizerData& data) {
  if (pre.is_null()) return;
  const std::string type = string_field(pre, "type", where, "");
  if (type == "Sequence") {
    const json* steps = find_field(pre, "pretokenizers");
    if (steps == nullptr || !steps->is_array())
      throw_error(where, "pre_tokenizer Sequence: expected a list 'pretokenizers', got " + brief(pre));
    for (const json& step : *steps) read_pre_tokenizer(step, where, data);
  } else if (type == "Split") {
    const json* pattern = find_field(pre, "pattern");
    PreTokenizerStep step;
    if (pattern != nullptr && pattern->is_object() && pattern->contains("Regex") && (*pattern)["Regex"].is_string())
      step.regex = std::make_unique<Regex>((*pattern)["Regex"].get<std::string>(), false, where + " pre_tokenizer Split");
    else if (pattern != nullptr && pattern->is_object() && pattern->contains("String") && (*pattern)["String"].is_string())
      step.regex = std::make_unique<Regex>((*pattern)["String"].get<std::string>(), true, where + " pre_tokenizer Split");
    else
      throw_error(where, "pre_tokenizer Split.pattern: expected {\"Regex\": ...} or {\"String\": ...}, got " +
                             (pattern ? brief(*pattern) : std::string("nothing")));
    step.behavior = split_behavior(string_field(pre, "behavior", where, "Isolated"), where);
    step.invert = bool_field(pre, "invert", where + " Split", false);
    data.pre_tokenizer.push_back(std::move(step));
  } else if (type == "ByteLevel") {
    PreTokenizerStep step;
    step.add_prefix_space = bool_field(pre, "add_prefix_space", where + " ByteLevel", true);
    if (bool_field(pre, "use_regex", where + " ByteLevel", true))
      step.regex = std::make_unique<Regex>(kGpt2SplitPattern, false, where + " ByteLevel");
    // The byte mapping itself happens in the BPE model, which works on raw bytes.
    if (step.regex || step.add_prefix_space) data.pre_tokenizer.push_back(std::move(step));
  } else {
    throw_error(where, "pre_tokenizer: expected Sequence, Split or ByteLevel, got " + brief(pre));
  }
}

AddedToken read_added_token(const json& entry, const std::string& where) {
  if (!entry.is_object()) throw_error(where, "expected an object with 'content', got " + brief(entry));
  AddedToken token;
  const json* content = find_field(entry, "content");
  if (content == nullptr || !content->is_string())
    throw_error(where, "field 'content': expected a string, got " + (content ? brief(*content) : std::string("nothing")));
  token.content = content->get<std::string>();
  token.special = bool_field(entry, "special", where, false);
  token.normalized = bool_field(entry, "normalized", where, !token.special);
  token.lstrip = bool_field(entry, "lstrip", where, false);
  token.rstrip = bool_field(entry, "rstrip", where, false);
  token.single_word = bool_field(entry, "single_word", where, false);
  return token;
}

std::unique_ptr<TokenizerData> load_tokenizer_json(const std::string& path) {
  const json root = parse_json_file(path);
  if (!root.is_object()) throw_error(path, "expected a JSON object at the top level, got " + brief(root));
  auto data = std::make_unique<TokenizerData>();
  const json* model = find_field(root, "model");
  if (model == nullptr) throw_error(path, "field 'model': missing, expected the BPE model");
  read_model(*model, path, *data);
  if (const json* normalizer = find_field(root, "normalizer")) read_normalizer(*normalizer, path, *data);
  if (const json* pre = find_field(root, "pre_tokenizer")) read_pre_tokenizer(*pre, path, *data);
  const json* decoder = find_field(root, "decoder");
  if (decoder == nullptr || string_field(*decoder, "type", path + " decoder", "") != "ByteLevel")
    throw_error(path, "field 'decoder': expected {\"type\": \"ByteLevel\"}, got " +
                          (decoder ? brief(*decoder) : std::string("nothing")) + " (only byte-level BPE is supported)");

  // HF ignores the ids written in added_tokens: each token gets its vocab id when its content is in
  // the vocab, else the next id after the vocab and the tokens added before it. We do the same so
  // that ids agree with HF even for hand-edited files.
  if (const json* added = find_field(root, "added_tokens")) {
    if (!added->is_array()) throw_error(path, "field 'added_tokens': expected a list, got " + brief(*added));
    const int64_t model_size = int64_t(data->vocab.size());
    int64_t max_added = -1;
    std::map<int32_t, AddedToken> by_id;
    for (size_t i = 0; i < added->size(); ++i) {
      AddedToken token = read_added_token((*added)[i], path + " added_tokens[" + std::to_string(i) + "]");
      if (token.content.empty()) continue;
      if (token.normalized && data->nfc && !is_valid_utf8(token.content))
        throw_error(path, "added_tokens[" + std::to_string(i) + "].content: expected valid UTF-8");
      int32_t id = 0;
      if (const auto it = data->added_by_content.find(token.content); it != data->added_by_content.end())
        id = it->second;
      else if (const auto v = data->vocab.find(token.content); v != data->vocab.end())
        id = v->second;
      else if (max_added < 0)
        id = int32_t(model_size);
      else
        id = int32_t(max_added >= model_size || model_size == 0 ? max_added + 1 : model_size);
      max_added = std::max<int64_t>(max_added, id);
      token.id = id;
      data->added_by_content[token.content] = id;
      by_id[id] = std::move(token);
    }
    for (auto& [id, token] : by_id) data->added_tokens.push_back(std::move(token));
  }
  data->finish();
  return data;
}

std::unique_ptr<TokenizerData> load_vocab_and_merges(const std::string& dir) {
  auto data = std::make_unique<TokenizerData>();
  const std::string vocab_path = dir + "/vocab.json";
  read_vocab(parse_json_file(vocab_path), vocab_path, *data);
  const std::string merges_path = dir + "/merges.txt";
  if (!file_exists(merges_path)) throw_error(merges_path, "missing: vocab.json needs merges.txt beside it");
  read_merges_txt(merges_path, *data);
  // Qwen2's slow tokenizer: NFC, then its split regex, then bytes.
  data->nfc = true;
  PreTokenizerStep split;
  split.regex = std::make_unique<Regex>(kQwen2SplitPattern, false, "Qwen2 split regex");
  data->pre_tokenizer.push_back(std::move(split));

  const std::string config_path = dir + "/tokenizer_config.json";
  if (!file_exists(config_path))
    throw_error(config_path, "missing: vocab.json + merges.txt need tokenizer_config.json (its added_tokens_decoder)");
  const json config = parse_json_file(config_path);
  if (!config.is_object()) throw_error(config_path, "expected a JSON object, got " + brief(config));
  if (const json* decoder = find_field(config, "added_tokens_decoder")) {
    if (!decoder->is_object())
      throw_error(config_path, "field 'added_tokens_decoder': expected an object mapping ids to tokens, got " + brief(*decoder));
    std::map<int32_t, AddedToken> by_id;
    for (const auto& [key, entry] : decoder->items()) {
      const std::string where = config_path + " added_tokens_decoder[\"" + key + "\"]";
      char* end = nullptr;
      const long long id = std::strtoll(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 || id >= kMaxTokenId)
        throw_error(where, "expected a token id as the key, got \"" + key + "\"");
      AddedToken token = read_added_token(entry, where);
      if (token.content.empty()) continue;
      token.id = int32_t(id);
      data->added_by_content[token.content] = token.id;
      by_id[token.id] = std::move(token);
    }
    for (auto& [id, token] : by_id) data->added_tokens.push_back(std::move(token));
  }
  data->finish();
  return data;
}

}  // namespace

void TokenizerData::finish() {
  int64_t size = 0;
  for (const auto& [token, id] : vocab) size = std::max<int64_t>(size, int64_t(id) + 1);
  for (const AddedToken& token : added_tokens) size = std::max<int64_t>(size, int64_t(token.id) + 1);
  id_to_token.assign(size_t(size), std::string());
  has_token.assign(size_t(size), 0);
  special.assign(size_t(size), 0);
  for (const auto& [token, id] : vocab) {
    id_to_token[size_t(id)] = token;
    has_token[size_t(id)] = 1;
  }
  // Special tokens are known by content, as HF's special-token set is.
  std::unordered_map<std::string, bool> special_content;
  for (const AddedToken& token : added_tokens)
    if (token.special) special_content[token.content] = true;
  for (const AddedToken& token : added_tokens) {
    // HF looks a normalized token up by its content as written but gives it back (and decodes it)
    // in normalized form.
    std::string storage;
    id_to_token[size_t(token.id)] = token.normalized && nfc ? std::string(nfc_normalize(token.content, storage)) : token.content;
    has_token[size_t(token.id)] = 1;
  }
  for (size_t id = 0; id < id_to_token.size(); ++id)
    if (has_token[id] && special_content.count(id_to_token[id])) special[id] = 1;
  token_bytes.assign(size_t(size), std::string());
  for (size_t id = 0; id < id_to_token.size(); ++id) token_bytes[id] = byte_level_token_to_bytes(id_to_token[id]);

  for (int b = 0; b < 256; ++b) {
    const auto it = vocab.find(bytes_to_byte_level(std::string(1, char(b))));
    bpe.byte_to_id[b] = it == vocab.end() ? -1 : it->second;
  }
  if (bpe.ignore_merges) {
    bpe.bytes_to_id.reserve(vocab.size());
    for (const auto& [token, id] : vocab) bpe.bytes_to_id[byte_level_token_to_bytes(token)] = id;
  }

  std::vector<std::pair<std::string, const AddedToken*>> raw, normalized;
  for (const AddedToken& token : added_tokens) {
    if (added_by_content.at(token.content) != token.id) continue;  // superseded by a later entry
    if (token.normalized && nfc) {
      std::string storage;
      normalized.emplace_back(std::string(nfc_normalize(token.content, storage)), &token);
    } else if (token.normalized) {
      normalized.emplace_back(token.content, &token);
    } else {
      raw.emplace_back(token.content, &token);
    }
  }
  raw_matcher.build(std::move(raw));
  normalized_matcher.build(std::move(normalized));
}

std::unique_ptr<TokenizerData> load_tokenizer_data(const std::string& model_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(model_dir, ec))
    throw_error(model_dir, "not a directory, expected a model directory with tokenizer.json "
                           "(or vocab.json + merges.txt + tokenizer_config.json)");
  const std::string tokenizer_json = model_dir + "/tokenizer.json";
  if (file_exists(tokenizer_json)) return load_tokenizer_json(tokenizer_json);
  if (file_exists(model_dir + "/vocab.json")) return load_vocab_and_merges(model_dir);
  throw_error(model_dir, "no tokenizer files: expected tokenizer.json, or vocab.json + merges.txt + tokenizer_config.json");
}

}  // namespace jetlm::tokenizer_detail
