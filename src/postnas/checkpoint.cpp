#include "postnas/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <unistd.h>

#include "core/error.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "model/presets.h"
#include "model/weights.h"

namespace jetlm::postnas {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

std::string shape_text(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

torch::ScalarType torch_type(DType dtype, const std::string& where) {
  switch (dtype) {
    case DType::F32: return torch::kFloat;
    case DType::BF16: return torch::kBFloat16;
    case DType::F16: return torch::kHalf;
    default: throw_error(where, std::string("has dtype ") + dtype_name(dtype) + ", expected F32, BF16 or F16");
  }
}

// Sets json[path] where path is "a.b.c" (objects created on the way).
void set_field(ojson& json, const std::string& path, const ojson& value) {
  ojson* node = &json;
  size_t start = 0;
  for (size_t dot; (dot = path.find('.', start)) != std::string::npos; start = dot + 1) {
    ojson& next = (*node)[path.substr(start, dot - start)];
    if (!next.is_object()) next = ojson::object();
    node = &next;
  }
  (*node)[path.substr(start)] = value;
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    out.flush();
    if (!out) throw_error(tmp, "cannot write (disk full or no permission?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw_error(path, "cannot rename the temporary file into place");
  }
}

ModelSpec parse_model_spec(ojson json, const std::vector<std::string>& overrides, const std::string& where) {
  if (!json.is_object()) throw_error(where, "config is not a JSON object");
  for (const std::string& kv : overrides) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw_error("--set " + kv, "expected KEY=VALUE, e.g. num_hidden_layers=2");
    ojson value = ojson::parse(kv.substr(eq + 1), nullptr, false);
    if (value.is_discarded()) value = kv.substr(eq + 1);  // a bare word is a string
    set_field(json, kv.substr(0, eq), value);
  }
  ModelSpec spec;
  // The engine's parser knows attn/swa/jet: search-only blocks are parsed as jet (same sizes).
  nlohmann::json engine_json = nlohmann::json::parse(json.dump());
  std::vector<std::string> names;
  if (json.contains("layer_types") && json["layer_types"].is_array() && json.value("model_type", "") == "jet_nemotron") {
    for (size_t i = 0; i < json["layer_types"].size(); ++i) {
      const ojson& t = json["layer_types"][i];
      const std::string name = t.is_string() ? t.get<std::string>() : t.dump();
      names.push_back(name);
      if (name == "gdn" || name == "gla") engine_json["layer_types"][i] = "jet";
    }
  }
  spec.config = parse_model_config(engine_json, where);
  for (size_t i = 0; i < spec.config.layer_types.size(); ++i)
    spec.blocks.push_back(names.empty() ? block_kind_of(spec.config.layer_types[i])
                                        : parse_block_kind(names[i], where + ": layer_types[" + std::to_string(i) + "]"));
  spec.json = std::move(json);
  return spec;
}

ModelSpec load_model_spec(const std::string& source, const std::vector<std::string>& overrides) {
  std::string text, where = source;
  if (const char* preset = find_preset_config(source)) {
    text = preset;
    where = "preset " + source;
  } else if (fs::is_directory(source)) {
    where = (fs::path(source) / "config.json").string();
    text = read_text_file(where);
  } else if (fs::is_regular_file(source)) {
    text = read_text_file(source);
  } else {
    throw_error(source, "no such model directory, config.json or preset (presets: " + preset_names() + ")");
  }
  ojson json = ojson::parse(text, nullptr, false);
  if (json.is_discarded()) throw_error(where, "not valid JSON");
  return parse_model_spec(std::move(json), overrides, where);
}

void load_weights(HybridModelImpl& model, const std::string& dir) {
  const Checkpoint checkpoint(dir);
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& param = item.value();
    const TensorRef* ref = checkpoint.find(name);
    if (ref == nullptr)
      throw_error(dir, "tensor '" + name + "' is missing (expected shape " + shape_text(param.sizes()) + ")");
    const std::string where = ref->file + ": tensor '" + name + "'";
    if (at::IntArrayRef(ref->shape) != param.sizes())
      throw_error(where, "has shape " + shape_text(ref->shape) + ", expected " + shape_text(param.sizes()));
    const torch::Tensor stored =
        torch::from_blob(const_cast<void*>(ref->data), ref->shape, torch::TensorOptions().dtype(torch_type(ref->dtype, where)));
    param.copy_(stored.to(param.scalar_type()));
    used.insert(name);
  }
  for (const std::string& name : checkpoint.names()) {
    if (used.count(name)) continue;
    if (model.config().tie_embeddings && name == "lm_head.weight") continue;
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;
    throw_error(checkpoint.find(name)->file, "unexpected tensor '" + name +
                                                 "': not a parameter of this model (wrong layer_types or model_type?)");
  }
}

HybridModel load_model(const std::string& dir) {
  const ModelSpec spec = load_model_spec(dir);
  HybridModel model(spec.config, spec.blocks);
  load_weights(*model, dir);
  return model;
}

void save_model(HybridModelImpl& model, const ModelSpec& spec, const std::string& dir, DType dtype, bool overwrite) {
  JETLM_ASSERT(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16);
  const ModelConfig& c = model.config();
  bool engine_model = true;
  for (BlockKind k : model.blocks()) engine_model = engine_model && engine_runs(k);

  std::vector<torch::Tensor> host;  // keeps the converted bytes alive until written
  std::vector<TensorToWrite> tensors;
  std::map<std::string, std::vector<int64_t>> written;
  for (const auto& item : model.named_parameters()) {
    host.push_back(item.value().detach().to(torch::kCPU).to(torch_type(dtype, "save")).contiguous());
    const std::vector<int64_t> shape(host.back().sizes().begin(), host.back().sizes().end());
    tensors.push_back({item.key(), dtype, shape, host.back().data_ptr()});
    written[item.key()] = shape;
  }
  if (engine_model) {
    // The trainer's names are the engine's names: a mismatch is a bug here, not a user error.
    std::map<std::string, std::vector<int64_t>> expected;
    for (const TensorSpec& t : expected_tensors(c)) expected[t.name] = t.shape;
    for (const auto& [name, shape] : expected)
      JETLM_ASSERT(written.count(name) && written[name] == shape, "save_model: engine tensor '" + name +
                                                                      "' missing or of another shape");
    JETLM_ASSERT(written.size() == expected.size(), "save_model: parameters the engine does not know");
  }

  ojson json = spec.json;
  if (c.family == Family::JetNemotron) {
    ojson types = ojson::array();
    for (BlockKind k : model.blocks()) types.push_back(block_kind_name(k));
    json["layer_types"] = types;
  } else {
    for (BlockKind k : model.blocks())
      if (k != BlockKind::Attn)
        throw_error(dir, std::string("a ") + c.model_type + " model has only attn layers, got a " + block_kind_name(k) +
                             " block (use model_type jet_nemotron for hybrids)");
  }
  json["torch_dtype"] = dtype == DType::F32 ? "float32" : dtype == DType::BF16 ? "bfloat16" : "float16";
  if (!json.contains("architectures")) {
    if (c.family == Family::Qwen2) json["architectures"] = {"Qwen2ForCausalLM"};
    else if (c.family == Family::Qwen3) json["architectures"] = {"Qwen3ForCausalLM"};
    else json["architectures"] = {"JetNemotronForCausalLM"};
  }

  fs::create_directories(dir);
  const std::string config_path = (fs::path(dir) / "config.json").string();
  if (!overwrite && fs::exists(config_path)) throw_error(config_path, "already exists (pass overwrite to replace it)");
  write_safetensors((fs::path(dir) / "model.safetensors").string(), tensors,
                    {{"format", "pt"}, {"generator", "jetlm postnas"}}, overwrite);
  write_file_atomic(config_path, json.dump(2) + "\n");
}

}  // namespace jetlm::postnas
