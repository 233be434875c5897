#include "common/model/model_config.h"

#include <cmath>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace d2lora::model {
namespace {

using json = nlohmann::json;

struct Family {
  const char* model_type;
  const char* architecture;
};
constexpr Family kFamilies[] = {
    {"llama", "LlamaForCausalLM"},
    {"mistral", "MistralForCausalLM"},
    {"qwen2", "Qwen2ForCausalLM"},
};

std::string Short(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

// Typed access to the fields of one JSON object; errors name `where` and the field.
class Fields {
 public:
  Fields(const json& object, std::string where) : object_(object), where_(std::move(where)) {}

  bool Has(const char* field) const { return object_.contains(field) && !object_.at(field).is_null(); }

  absl::Status Error(const char* field, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(where_, ": field '", field, "': ", what));
  }
  absl::Status TypeError(const char* field, absl::string_view expected) const {
    return Error(field, absl::StrCat("expected ", expected, ", got ", Short(object_.at(field))));
  }

  absl::StatusOr<int64_t> Int(const char* field) const {
    if (!Has(field)) return Error(field, "missing");
    const json& v = object_.at(field);
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return TypeError(field, "a 64-bit integer");
      return static_cast<int64_t>(v.get<uint64_t>());
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    return TypeError(field, "an integer");
  }
  absl::StatusOr<int64_t> PositiveInt(const char* field) const {
    D2_ASSIGN_OR_RETURN(int64_t v, Int(field));
    if (v <= 0) return Error(field, absl::StrCat("expected a positive integer, got ", v));
    return v;
  }
  absl::StatusOr<int64_t> PositiveInt(const char* field, int64_t fallback) const {
    if (!Has(field)) return fallback;
    return PositiveInt(field);
  }
  absl::StatusOr<std::optional<int64_t>> OptionalInt(const char* field) const {
    if (!Has(field)) return std::optional<int64_t>();
    D2_ASSIGN_OR_RETURN(int64_t v, Int(field));
    return std::optional<int64_t>(v);
  }
  absl::StatusOr<double> Number(const char* field) const {
    if (!Has(field)) return Error(field, "missing");
    const json& v = object_.at(field);
    if (!v.is_number()) return TypeError(field, "a number");
    double d = v.get<double>();
    if (!std::isfinite(d)) return TypeError(field, "a finite number");
    return d;
  }
  absl::StatusOr<double> PositiveNumber(const char* field, double fallback) const {
    if (!Has(field)) return fallback;
    D2_ASSIGN_OR_RETURN(double v, Number(field));
    if (!(v > 0)) return Error(field, absl::StrCat("expected a positive number, got ", v));
    return v;
  }
  absl::StatusOr<bool> Bool(const char* field, bool fallback) const {
    if (!Has(field)) return fallback;
    const json& v = object_.at(field);
    if (!v.is_boolean()) return TypeError(field, "true or false");
    return v.get<bool>();
  }
  absl::StatusOr<std::string> String(const char* field, std::string fallback) const {
    if (!Has(field)) return fallback;
    const json& v = object_.at(field);
    if (!v.is_string()) return TypeError(field, "a string");
    return v.get<std::string>();
  }

 private:
  const json& object_;
  std::string where_;
};

absl::Status ParseFamily(const Fields& f, const json& root, const std::string& source, ModelConfig& c) {
  std::string architecture;
  if (f.Has("architectures")) {
    const json& list = root.at("architectures");
    if (!list.is_array() || list.empty() || !list.at(0).is_string()) {
      return f.TypeError("architectures", "a non-empty list of strings");
    }
    architecture = list.at(0).get<std::string>();
  }
  D2_ASSIGN_OR_RETURN(std::string model_type, f.String("model_type", ""));
  if (model_type.empty() && architecture.empty()) {
    return f.Error("model_type", "missing (and no 'architectures' to infer it from)");
  }
  const Family* by_type = nullptr;
  const Family* by_arch = nullptr;
  for (const Family& family : kFamilies) {
    if (model_type == family.model_type) by_type = &family;
    if (architecture == family.architecture) by_arch = &family;
  }
  if (!model_type.empty() && by_type == nullptr) {
    return f.Error("model_type", absl::StrCat("unsupported model type '", model_type,
                                              "' (supported: llama, mistral, qwen2)"));
  }
  if (!architecture.empty() && by_arch == nullptr) {
    return f.Error("architectures",
                   absl::StrCat("unsupported architecture '", architecture,
                                "' (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)"));
  }
  if (by_type != nullptr && by_arch != nullptr && by_type != by_arch) {
    return f.Error("architectures", absl::StrCat("architecture '", architecture,
                                                 "' does not match model_type '", model_type, "'"));
  }
  const Family* family = by_type != nullptr ? by_type : by_arch;
  c.model_type = family->model_type;
  c.architecture = family->architecture;
  (void)source;
  return absl::OkStatus();
}

// partial_rotary_factor, where it may stand (top level or a rope object):
// only 1 (whole heads) is supported.
absl::Status RefusePartialRotary(const Fields& f) {
  if (!f.Has("partial_rotary_factor")) return absl::OkStatus();
  D2_ASSIGN_OR_RETURN(double partial, f.Number("partial_rotary_factor"));
  if (partial == 1.0) return absl::OkStatus();
  return f.Error("partial_rotary_factor", absl::StrCat("partial rotary embeddings (", partial,
                                                       ") are not supported; the model rotates whole heads"));
}

// The rope type and scaling of one rope object: transformers 4's
// `rope_scaling` or transformers 5's `rope_parameters` (`where` names it).
absl::StatusOr<RopeScaling> ParseRopeObject(const json& rs, const std::string& where) {
  Fields f(rs, where);
  RopeScaling out;
  std::string type;
  if (f.Has("rope_type")) {
    D2_ASSIGN_OR_RETURN(type, f.String("rope_type", ""));
  } else {
    D2_ASSIGN_OR_RETURN(type, f.String("type", ""));
  }
  D2_RETURN_IF_ERROR(RefusePartialRotary(f));
  if (type.empty() || type == "default") return out;
  if (type == "linear") {
    out.type = RopeScalingType::kLinear;
  } else if (type == "llama3") {
    out.type = RopeScalingType::kLlama3;
  } else {
    return f.Error("rope_type", absl::StrCat("unsupported rope scaling type '", type,
                                             "' (supported: default, linear, llama3)"));
  }
  D2_ASSIGN_OR_RETURN(out.factor, f.Number("factor"));
  if (!(out.factor > 0)) return f.Error("factor", absl::StrCat("expected a positive number, got ", out.factor));
  if (out.type == RopeScalingType::kLlama3) {
    D2_ASSIGN_OR_RETURN(out.low_freq_factor, f.Number("low_freq_factor"));
    D2_ASSIGN_OR_RETURN(out.high_freq_factor, f.Number("high_freq_factor"));
    D2_ASSIGN_OR_RETURN(out.original_max_position_embeddings, f.PositiveInt("original_max_position_embeddings"));
    if (!(out.low_freq_factor > 0)) return f.Error("low_freq_factor", "expected a positive number");
    if (!(out.high_freq_factor > out.low_freq_factor)) {
      return f.Error("high_freq_factor", "must be greater than low_freq_factor");
    }
  }
  return out;
}

bool SameScaling(const RopeScaling& a, const RopeScaling& b) {
  if (a.type != b.type) return false;
  if (a.type == RopeScalingType::kNone) return true;
  if (a.factor != b.factor) return false;
  return a.type != RopeScalingType::kLlama3 ||
         (a.low_freq_factor == b.low_freq_factor && a.high_freq_factor == b.high_freq_factor &&
          a.original_max_position_embeddings == b.original_max_position_embeddings);
}

// rope_theta and the scaling: transformers 4 keeps them at the top level
// (`rope_theta`, `rope_scaling`), transformers 5 in `rope_parameters`
// (modeling_rope_utils.py; its standardize_rope_params moves a top-level
// rope_theta in only where rope_parameters has none).
absl::Status ParseRope(const json& root, const std::string& source, ModelConfig& c) {
  Fields top(root, source);
  D2_ASSIGN_OR_RETURN(c.rope_theta, top.PositiveNumber("rope_theta", 10000.0));
  D2_RETURN_IF_ERROR(RefusePartialRotary(top));
  std::optional<RopeScaling> from_scaling;
  if (top.Has("rope_scaling")) {
    if (!root.at("rope_scaling").is_object()) return top.TypeError("rope_scaling", "null or an object");
    D2_ASSIGN_OR_RETURN(from_scaling, ParseRopeObject(root.at("rope_scaling"), absl::StrCat(source, ": rope_scaling")));
  }
  c.rope_scaling = from_scaling.value_or(RopeScaling{});
  if (!top.Has("rope_parameters")) return absl::OkStatus();
  const json& rp = root.at("rope_parameters");
  const std::string where = absl::StrCat(source, ": rope_parameters");
  if (!rp.is_object()) return top.TypeError("rope_parameters", "null or an object");
  for (const auto& [key, value] : rp.items()) {
    if (value.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": field '", key, "': rope parameters per layer type ",
                                                     "are not supported (one set for every layer)"));
    }
  }
  D2_ASSIGN_OR_RETURN(RopeScaling from_parameters, ParseRopeObject(rp, where));
  if (from_scaling.has_value() && !SameScaling(*from_scaling, from_parameters)) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": rope_scaling and rope_parameters disagree (", Short(root.at("rope_scaling")), " vs ",
                     Short(rp), "); give one"));
  }
  c.rope_scaling = from_parameters;
  Fields f(rp, where);
  D2_ASSIGN_OR_RETURN(c.rope_theta, f.PositiveNumber("rope_theta", c.rope_theta));
  return absl::OkStatus();
}

// `dtype` (transformers >= 4.56, preferred) or `torch_dtype`; both must agree.
absl::Status ParseDtype(const Fields& f, ModelConfig& c) {
  D2_ASSIGN_OR_RETURN(std::string dtype, f.String("dtype", ""));
  D2_ASSIGN_OR_RETURN(std::string torch_dtype, f.String("torch_dtype", ""));
  if (!dtype.empty() && !torch_dtype.empty() && dtype != torch_dtype) {
    return f.Error("dtype", absl::StrCat("'", dtype, "' contradicts torch_dtype '", torch_dtype, "'"));
  }
  c.dtype = dtype.empty() ? torch_dtype : dtype;
  return absl::OkStatus();
}

absl::Status ParseTokenIds(const Fields& f, const json& root, ModelConfig& c) {
  D2_ASSIGN_OR_RETURN(c.bos_token_id, f.OptionalInt("bos_token_id"));
  D2_ASSIGN_OR_RETURN(c.pad_token_id, f.OptionalInt("pad_token_id"));
  c.eos_token_ids.clear();
  if (f.Has("eos_token_id")) {
    const json& eos = root.at("eos_token_id");
    if (eos.is_array()) {
      for (const json& id : eos) {
        if (!id.is_number_integer()) return f.TypeError("eos_token_id", "an integer or a list of integers");
        c.eos_token_ids.push_back(id.get<int64_t>());
      }
    } else {
      D2_ASSIGN_OR_RETURN(int64_t id, f.Int("eos_token_id"));
      c.eos_token_ids.push_back(id);
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool ModelConfig::layer_uses_sliding_window(int64_t layer) const {
  if (!sliding_window.has_value()) return false;
  return model_type != "qwen2" || layer >= max_window_layers;
}

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text, const std::string& source) {
  json root = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  if (!root.is_object()) return absl::InvalidArgumentError(absl::StrCat(source, ": expected a JSON object"));
  ModelConfig c;
  Fields f(root, source);
  D2_RETURN_IF_ERROR(ParseFamily(f, root, source, c));

  D2_ASSIGN_OR_RETURN(c.vocab_size, f.PositiveInt("vocab_size"));
  D2_ASSIGN_OR_RETURN(c.hidden_size, f.PositiveInt("hidden_size"));
  D2_ASSIGN_OR_RETURN(c.intermediate_size, f.PositiveInt("intermediate_size"));
  D2_ASSIGN_OR_RETURN(c.num_hidden_layers, f.PositiveInt("num_hidden_layers"));
  D2_ASSIGN_OR_RETURN(c.num_attention_heads, f.PositiveInt("num_attention_heads"));
  D2_ASSIGN_OR_RETURN(c.num_key_value_heads, f.PositiveInt("num_key_value_heads", c.num_attention_heads));
  if (f.Has("head_dim")) {
    D2_ASSIGN_OR_RETURN(c.head_dim, f.PositiveInt("head_dim"));
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      return f.Error("num_attention_heads",
                     absl::StrCat("hidden_size ", c.hidden_size, " is not divisible by num_attention_heads ",
                                  c.num_attention_heads, " (and no head_dim is given)"));
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim % 2 != 0) {
    return f.Error("head_dim", absl::StrCat("rotary embeddings need an even head dimension, got ", c.head_dim));
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return f.Error("num_key_value_heads",
                   absl::StrCat("num_attention_heads ", c.num_attention_heads,
                                " is not divisible by num_key_value_heads ", c.num_key_value_heads));
  }
  D2_ASSIGN_OR_RETURN(c.rms_norm_eps, f.PositiveNumber("rms_norm_eps", 1e-6));
  D2_RETURN_IF_ERROR(ParseRope(root, source, c));
  D2_ASSIGN_OR_RETURN(c.max_position_embeddings, f.PositiveInt("max_position_embeddings", 2048));
  D2_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  D2_ASSIGN_OR_RETURN(c.attention_bias, f.Bool("attention_bias", false));
  D2_ASSIGN_OR_RETURN(c.mlp_bias, f.Bool("mlp_bias", false));
  D2_ASSIGN_OR_RETURN(c.initializer_range, f.PositiveNumber("initializer_range", 0.02));
  D2_ASSIGN_OR_RETURN(std::string act, f.String("hidden_act", "silu"));
  if (act != "silu" && act != "swish") {
    return f.Error("hidden_act", absl::StrCat("unsupported activation '", act, "' (supported: silu)"));
  }
  if (c.model_type == "mistral" && f.Has("sliding_window")) {
    D2_ASSIGN_OR_RETURN(int64_t window, f.PositiveInt("sliding_window"));
    c.sliding_window = window;
  }
  if (c.model_type == "qwen2") {
    D2_ASSIGN_OR_RETURN(bool use_window, f.Bool("use_sliding_window", false));
    if (use_window && f.Has("sliding_window")) {
      D2_ASSIGN_OR_RETURN(int64_t window, f.PositiveInt("sliding_window"));
      c.sliding_window = window;
      D2_ASSIGN_OR_RETURN(std::optional<int64_t> max_window, f.OptionalInt("max_window_layers"));
      c.max_window_layers = max_window.value_or(28);
    }
  }
  D2_RETURN_IF_ERROR(ParseTokenIds(f, root, c));
  D2_RETURN_IF_ERROR(ParseDtype(f, c));
  c.raw = std::move(root);
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  D2_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseModelConfig(text, path);
}

nlohmann::json ModelConfig::ToJson() const {
  json j = raw.is_object() ? raw : json::object();
  j["architectures"] = json::array({architecture});
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  if (j.contains("head_dim") || head_dim * num_attention_heads != hidden_size) j["head_dim"] = head_dim;
  j["rms_norm_eps"] = rms_norm_eps;
  // Both spellings of the rope settings, the same: transformers 4 reads the
  // top level, transformers 5 prefers rope_parameters (written where the
  // source had it).
  j["rope_theta"] = rope_theta;
  json scaling = nullptr;
  if (rope_scaling.type != RopeScalingType::kNone) {
    scaling = json::object();
    scaling["rope_type"] = rope_scaling.type == RopeScalingType::kLinear ? "linear" : "llama3";
    scaling["factor"] = rope_scaling.factor;
    if (rope_scaling.type == RopeScalingType::kLlama3) {
      scaling["low_freq_factor"] = rope_scaling.low_freq_factor;
      scaling["high_freq_factor"] = rope_scaling.high_freq_factor;
      scaling["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
    }
  }
  if (!scaling.is_null()) {
    json rs = j.contains("rope_scaling") && j["rope_scaling"].is_object() ? j["rope_scaling"] : json::object();
    if (rs.contains("type")) rs["type"] = scaling["rope_type"];
    rs.update(scaling);
    j["rope_scaling"] = rs;
  } else if (j.contains("rope_scaling")) {
    j["rope_scaling"] = nullptr;
  }
  if (j.contains("rope_parameters")) {
    json rp = scaling.is_null() ? json{{"rope_type", "default"}} : scaling;
    rp["rope_theta"] = rope_theta;
    j["rope_parameters"] = rp;
  }
  j["max_position_embeddings"] = max_position_embeddings;
  j["tie_word_embeddings"] = tie_word_embeddings;
  if (model_type != "qwen2" && (j.contains("attention_bias") || attention_bias)) j["attention_bias"] = attention_bias;
  if (j.contains("mlp_bias") || mlp_bias) j["mlp_bias"] = mlp_bias;
  if (bos_token_id.has_value()) j["bos_token_id"] = *bos_token_id;
  if (pad_token_id.has_value()) j["pad_token_id"] = *pad_token_id;
  if (eos_token_ids.size() == 1 && !(j.contains("eos_token_id") && j["eos_token_id"].is_array())) {
    j["eos_token_id"] = eos_token_ids[0];
  } else if (!eos_token_ids.empty()) {
    j["eos_token_id"] = eos_token_ids;
  }
  if (!dtype.empty()) {
    j["dtype"] = dtype;
    j["torch_dtype"] = dtype;
  }
  return j;
}

}  // namespace d2lora::model
