// Parsing, overriding and checking job specs.
#include "common/spec/job_spec.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/utf8.h"
#include "common/spec/job_spec_fields.h"
#include "common/status_macros.h"

namespace d2lora::spec {
namespace {

using Schema_ = std::vector<std::pair<std::string, std::vector<std::string>>>;

// Collects the keys of each section, in order; a section's name is a key of the top level.
struct SchemaVisitor {
  Schema_ schema{{"", {}}};
  void Add(const char* section, const char* key) {
    if (schema.back().first != section) {
      schema.emplace_back(section, std::vector<std::string>{});
      schema.front().second.push_back(section);
    }
    schema.back().second.push_back(key);
  }
  template <typename Get>
  void Value(const char* section, const char* key, Get) { Add(section, key); }
  template <typename Get>
  void Plain(const char* section, const char* key, Get) { Add(section, key); }
  template <typename Get, typename NameFn, typename ParseFn>
  void Named(const char* section, const char* key, Get, NameFn, ParseFn) { Add(section, key); }
};

// The schema: the keys of each section ("" = top level), from the field list
// (job_spec_fields.h). A top-level key that is itself listed here is a section.
const Schema_& Schema() {
  static const auto* schema = [] {
    SchemaVisitor v;
    internal::ForEachField(v);
    return new Schema_(std::move(v.schema));
  }();
  return *schema;
}

const std::vector<std::string>* SectionKeys(const std::string& section) {
  for (const auto& [name, keys] : Schema()) {
    if (name == section) return &keys;
  }
  return nullptr;
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

absl::Status Error(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar:
      return node.Tag() == "?" ? absl::StrCat("'", node.Scalar(), "'")
                               : absl::StrCat("the quoted string \"", node.Scalar(), "\"");
    default:
      return "null";
  }
}

// One mapping of the tree, read key by key with type checks. Absent and null
// keys leave the output untouched (the default).
class SectionReader {
 public:
  SectionReader(YAML::Node node, std::string section)
      : node_(std::move(node)), section_(std::move(section)) {}

  // The node must be a mapping (or null) of known, unique keys.
  absl::Status CheckKeys() const {
    if (!node_.IsDefined() || node_.IsNull()) return absl::OkStatus();
    if (!node_.IsMap()) {
      return Error(section_.empty() ? "spec" : section_,
                   absl::StrCat("must be a mapping, got ", Describe(node_)));
    }
    const std::vector<std::string>& known = *SectionKeys(section_);
    std::vector<std::string> seen;
    for (const auto& kv : node_) {
      if (!kv.first.IsScalar()) return Error(Path("?"), "keys must be strings");
      const std::string key = kv.first.Scalar();
      if (!Contains(known, key)) {
        return Error(Path(key), absl::StrCat("unknown key (", section_.empty() ? "top level" : section_,
                                             " has: ", absl::StrJoin(known, ", "), ")"));
      }
      if (Contains(seen, key)) return Error(Path(key), "duplicate key");
      seen.push_back(key);
    }
    return absl::OkStatus();
  }

  YAML::Node Child(const std::string& key) const {
    if (!node_.IsDefined() || !node_.IsMap()) return YAML::Node();
    for (const auto& kv : node_) {
      if (kv.first.IsScalar() && kv.first.Scalar() == key) return kv.second;
    }
    return YAML::Node();
  }

  std::string Path(const std::string& key) const {
    return section_.empty() ? key : absl::StrCat(section_, ".", key);
  }

  absl::Status String(const std::string& key, std::string* out) const {
    YAML::Node n = Child(key);
    if (!Present(n)) return absl::OkStatus();
    if (!n.IsScalar()) return Error(Path(key), absl::StrCat("must be a string, got ", Describe(n)));
    if (!IsValidUtf8(n.Scalar())) return Error(Path(key), "is not valid UTF-8");
    *out = n.Scalar();
    return absl::OkStatus();
  }

  absl::Status StringList(const std::string& key, std::vector<std::string>* out) const {
    YAML::Node n = Child(key);
    if (!Present(n)) return absl::OkStatus();
    if (n.IsScalar()) {  // one pattern, e.g. all-linear
      if (!IsValidUtf8(n.Scalar())) return Error(Path(key), "is not valid UTF-8");
      *out = {n.Scalar()};
      return absl::OkStatus();
    }
    if (!n.IsSequence()) {
      return Error(Path(key), absl::StrCat("must be a list of strings, got ", Describe(n)));
    }
    std::vector<std::string> v;
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) {
        return Error(absl::StrCat(Path(key), "[", i, "]"),
                     absl::StrCat("must be a string, got ", Describe(n[i])));
      }
      if (!IsValidUtf8(n[i].Scalar())) return Error(absl::StrCat(Path(key), "[", i, "]"), "is not valid UTF-8");
      v.push_back(n[i].Scalar());
    }
    *out = std::move(v);
    return absl::OkStatus();
  }

  absl::Status Bool(const std::string& key, bool* out) const {
    YAML::Node n = Child(key);
    if (!Present(n)) return absl::OkStatus();
    const std::string s = PlainScalar(n);
    if (s == "true" || s == "True" || s == "TRUE") {
      *out = true;
    } else if (s == "false" || s == "False" || s == "FALSE") {
      *out = false;
    } else {
      return Error(Path(key), absl::StrCat("must be true or false, got ", Describe(n)));
    }
    return absl::OkStatus();
  }

  absl::Status Int(const std::string& key, int64_t* out) const {
    YAML::Node n = Child(key);
    if (!Present(n)) return absl::OkStatus();
    if (!n.IsScalar() || n.Tag() != "?" || !absl::SimpleAtoi(n.Scalar(), out)) {
      return Error(Path(key), absl::StrCat("must be an integer, got ", Describe(n)));
    }
    return absl::OkStatus();
  }

  absl::Status Uint64(const std::string& key, uint64_t* out) const {
    YAML::Node n = Child(key);
    if (!Present(n)) return absl::OkStatus();
    if (!n.IsScalar() || n.Tag() != "?" || !absl::SimpleAtoi(n.Scalar(), out)) {
      return Error(Path(key),
                   absl::StrCat("must be an integer in [0, 2^64), got ", Describe(n)));
    }
    return absl::OkStatus();
  }

  absl::Status Double(const std::string& key, double* out) const {
    YAML::Node n = Child(key);
    if (!Present(n)) return absl::OkStatus();
    if (!n.IsScalar() || n.Tag() != "?" || !absl::SimpleAtod(n.Scalar(), out)) {
      return Error(Path(key), absl::StrCat("must be a number, got ", Describe(n)));
    }
    return absl::OkStatus();
  }

  template <typename E, typename ParseFn>
  absl::Status Enum(const std::string& key, ParseFn parse, E* out) const {
    YAML::Node n = Child(key);
    if (!Present(n)) return absl::OkStatus();
    if (!n.IsScalar()) return Error(Path(key), absl::StrCat("must be a name, got ", Describe(n)));
    auto v = parse(n.Scalar());
    if (!v.ok()) return Error(absl::StrCat(Path(key), " = ", n.Scalar()), v.status().message());
    *out = *v;
    return absl::OkStatus();
  }

 private:
  static bool Present(const YAML::Node& n) { return n.IsDefined() && !n.IsNull(); }
  static std::string PlainScalar(const YAML::Node& n) {
    return n.IsScalar() && n.Tag() == "?" ? n.Scalar() : std::string();
  }

  YAML::Node node_;
  std::string section_;
};

// Reads every field of the list into `spec`, checking each section's keys
// before its first field; stops at the first error.
class ReadVisitor {
 public:
  ReadVisitor(const YAML::Node& tree, JobSpec* spec) : top_(tree, ""), spec_(spec) {}

  absl::Status status() const { return status_; }

  template <typename Get>
  void Value(const char* section, const char* key, Get get) {
    if (!Ready(section)) return;
    status_ = Read(*reader_, key, &get(*spec_));
  }
  template <typename Get>
  void Plain(const char* section, const char* key, Get get) {
    Value(section, key, get);
  }
  template <typename Get, typename NameFn, typename ParseFn>
  void Named(const char* section, const char* key, Get get, NameFn, ParseFn parse) {
    if (!Ready(section)) return;
    status_ = reader_->Enum(key, parse, &get(*spec_));
  }

 private:
  // The section's reader, its keys checked the first time; false after an error.
  bool Ready(const std::string& section) {
    if (!status_.ok()) return false;
    if (!started_) {
      started_ = true;
      status_ = top_.CheckKeys();
      if (!status_.ok()) return false;
    }
    if (!reader_.has_value() || section != current_) {
      current_ = section;
      // emplace, never assign: assigning a YAML::Node writes into the tree it refers to.
      if (section.empty()) {
        reader_.emplace(top_);
      } else {
        reader_.emplace(top_.Child(section), section);
        status_ = reader_->CheckKeys();
      }
    }
    return status_.ok();
  }
  static absl::Status Read(const SectionReader& r, const char* key, std::string* out) { return r.String(key, out); }
  static absl::Status Read(const SectionReader& r, const char* key, std::vector<std::string>* out) {
    return r.StringList(key, out);
  }
  static absl::Status Read(const SectionReader& r, const char* key, bool* out) { return r.Bool(key, out); }
  static absl::Status Read(const SectionReader& r, const char* key, int64_t* out) { return r.Int(key, out); }
  static absl::Status Read(const SectionReader& r, const char* key, uint64_t* out) { return r.Uint64(key, out); }
  static absl::Status Read(const SectionReader& r, const char* key, double* out) { return r.Double(key, out); }

  SectionReader top_;
  std::optional<SectionReader> reader_;
  std::string current_;
  bool started_ = false;
  JobSpec* spec_;
  absl::Status status_;
};

absl::StatusOr<JobSpec> ReadSpec(const YAML::Node& tree) {
  JobSpec spec;
  ReadVisitor reader(tree, &spec);
  internal::ForEachField(reader);
  D2_RETURN_IF_ERROR(reader.status());
  const YAML::Node norm_grad = SectionReader(SectionReader(tree, "").Child("adapter"), "adapter").Child("norm_grad");
  SetDerivedFields(spec, norm_grad.IsDefined() && !norm_grad.IsNull());
  return spec;
}

// "PATH = V: must be ..." unless lo <= v <= hi.
absl::Status IntRange(absl::string_view path, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo) return Error(absl::StrCat(path, " = ", v), absl::StrCat("must be >= ", lo));
  if (v > hi) return Error(absl::StrCat(path, " = ", v), absl::StrCat("must be <= ", hi));
  return absl::OkStatus();
}

absl::Status NonNegativeFinite(absl::string_view path, double v) {
  if (!std::isfinite(v) || v < 0) {
    return Error(absl::StrCat(path, " = ", v), "must be a finite number >= 0");
  }
  return absl::OkStatus();
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

// A Hugging Face hub id: NAME or OWNER/NAME, each part 1 to 96 of [A-Za-z0-9._-],
// neither "." nor "..".
bool ValidModelId(const std::string& id) {
  std::vector<absl::string_view> parts = absl::StrSplit(id, '/');
  if (parts.size() > 2) return false;
  for (absl::string_view part : parts) {
    if (part.empty() || part.size() > 96 || part == "." || part == "..") return false;
    for (char c : part) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
    }
  }
  return true;
}

constexpr int64_t kMaxInt = int64_t{1} << 40;  // "no practical limit"

}  // namespace

absl::Status ValidateJobSpec(const JobSpec& spec) {
  if (spec.name.empty()) return Error("name", "required");
  if (!ValidName(spec.name)) {
    return Error(absl::StrCat("name = '", spec.name, "'"),
                 "must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-'");
  }
  if (spec.model.empty()) return Error("model", "required (a Hugging Face model directory)");
  if (!spec.model_id.empty() && !ValidModelId(spec.model_id)) {
    return Error(absl::StrCat("model_id = '", spec.model_id, "'"),
                 "must be a hub id, NAME or OWNER/NAME, each 1 to 96 characters of A-Z, a-z, 0-9, '.', '_', '-'");
  }
  D2_RETURN_IF_ERROR(spec.adapter.Validate());
  if (!spec.full_finetune() && MethodName(spec.adapter.method) != TrainingMethodName(spec.method)) {
    // Not a key a spec file has: a spec built in code must follow method (SetDerivedFields).
    return Error(absl::StrCat("adapter.method = ", MethodName(spec.adapter.method)),
                 absl::StrCat("does not follow method = ", TrainingMethodName(spec.method)));
  }
  const InitSpec& init = spec.init;
  D2_RETURN_IF_ERROR(IntRange("init.step", init.step, 0, kMaxInt));
  if (!init.from_job.empty() && !ValidName(init.from_job)) {
    return Error(absl::StrCat("init.from_job = '", init.from_job, "'"),
                 "must be a job id (1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-')");
  }
  if (init.step > 0 && init.from_job.empty()) {
    return Error(absl::StrCat("init.step = ", init.step), "names a checkpoint of init.from_job, which is not set");
  }
  if (!init.empty() && spec.full_finetune()) {
    return Error("init", "starts an adapter, and method full trains no adapter (merge the adapter into the model, "
                         "then fine-tune that)");
  }

  const DataSpec& d = spec.data;
  if (d.train.empty()) return Error("data.train", "required (a JSONL file)");
  if (d.format != "lm" && d.format != "instruction" && d.format != "multiple_choice") {
    return Error(absl::StrCat("data.format = ", d.format),
                 "unknown value; expected lm, instruction, multiple_choice");
  }
  D2_RETURN_IF_ERROR(IntRange("data.max_seq_len", d.max_seq_len, 2, int64_t{1} << 20));

  const TrainSpec& t = spec.train;
  D2_RETURN_IF_ERROR(IntRange("train.max_steps", t.max_steps, 0, kMaxInt));
  if (t.max_steps == 0 && t.epochs < 1) {
    return Error(absl::StrCat("train.epochs = ", t.epochs),
                 "must be >= 1 unless train.max_steps > 0");
  }
  D2_RETURN_IF_ERROR(IntRange("train.epochs", t.epochs, 0, 1000000));
  D2_RETURN_IF_ERROR(IntRange("train.batch_size", t.batch_size, 1, 1 << 24));
  D2_RETURN_IF_ERROR(IntRange("train.micro_batch_size", t.micro_batch_size, 1, 1 << 24));
  if (!std::isfinite(t.lr) || t.lr <= 0) {
    return Error(absl::StrCat("train.lr = ", t.lr), "must be a finite number > 0");
  }
  D2_RETURN_IF_ERROR(IntRange("train.warmup_steps", t.warmup_steps, 0, kMaxInt));
  D2_RETURN_IF_ERROR(NonNegativeFinite("train.weight_decay", t.weight_decay));
  D2_RETURN_IF_ERROR(NonNegativeFinite("train.grad_clip", t.grad_clip));
  D2_RETURN_IF_ERROR(IntRange("train.checkpoint_every", t.checkpoint_every, 0, kMaxInt));
  D2_RETURN_IF_ERROR(IntRange("train.keep_checkpoints", t.keep_checkpoints, 1, 1000000));
  D2_RETURN_IF_ERROR(IntRange("train.max_nonfinite_steps", t.max_nonfinite_steps, 0, kMaxInt));

  const EvalSpec& e = spec.eval;
  D2_RETURN_IF_ERROR(IntRange("eval.every", e.every, 0, kMaxInt));
  D2_RETURN_IF_ERROR(IntRange("eval.max_examples", e.max_examples, 0, kMaxInt));
  D2_RETURN_IF_ERROR(
      IntRange("eval.generate_max_new_tokens", e.generate_max_new_tokens, 1, int64_t{1} << 20));

  D2_RETURN_IF_ERROR(
      IntRange("metrics.volatility_window", spec.metrics.volatility_window, 2, kMaxInt));
  D2_RETURN_IF_ERROR(IntRange("metrics.log_every", spec.metrics.log_every, 1, kMaxInt));

  const GuardSpec& g = spec.guard;
  if (!std::isfinite(g.spike_factor) || (g.spike_factor != 0 && g.spike_factor <= 1)) {
    return Error(absl::StrCat("guard.spike_factor = ", g.spike_factor), "must be 0 (off) or a finite number > 1");
  }
  D2_RETURN_IF_ERROR(IntRange("guard.max_rollbacks", g.max_rollbacks, 0, kMaxInt));
  if (!std::isfinite(g.lr_backoff) || g.lr_backoff <= 0 || g.lr_backoff > 1) {
    return Error(absl::StrCat("guard.lr_backoff = ", g.lr_backoff), "must be in (0, 1]");
  }
  D2_RETURN_IF_ERROR(IntRange("guard.skip_batches", g.skip_batches, 0, kMaxInt));

  if (spec.output.dir.empty()) return Error("output.dir", "must not be empty");
  const MergeThresholds& mt = spec.output.merge_thresholds;
  D2_RETURN_IF_ERROR(NonNegativeFinite("output.merge_max_row_norm_deviation", mt.max_row_norm_deviation));
  D2_RETURN_IF_ERROR(NonNegativeFinite("output.merge_max_cast_error", mt.max_cast_error));
  D2_RETURN_IF_ERROR(NonNegativeFinite("output.merge_max_logit_diff", mt.max_logit_diff));
  D2_RETURN_IF_ERROR(NonNegativeFinite("output.merge_max_kl", mt.max_kl));
  D2_RETURN_IF_ERROR(NonNegativeFinite("output.merge_max_accuracy_gap_pp", mt.max_accuracy_gap_pp));

  const ResourcesSpec& r = spec.resources;
  D2_RETURN_IF_ERROR(IntRange("resources.world_size", r.world_size, 1, 4096));
  D2_RETURN_IF_ERROR(IntRange("resources.threads", r.threads, 0, 4096));
  D2_RETURN_IF_ERROR(IntRange("resources.min_world_size", r.min_world_size, 0, kMaxInt));
  if (r.min_world_size > r.world_size) {
    return Error(absl::StrCat("resources.min_world_size = ", r.min_world_size),
                 absl::StrCat("must be <= ", r.world_size, " (resources.world_size)"));
  }
  D2_RETURN_IF_ERROR(IntRange("resources.elastic_wait_seconds", r.elastic_wait_seconds, 0, 30 * 86400));

  if (t.batch_size % (t.micro_batch_size * r.world_size) != 0) {
    // The global batch is what the math depends on; the micro-batch is free
    // (also on --resume at another world size), so name one that works.
    const int64_t fit = FittingMicroBatchSize(t.batch_size, t.micro_batch_size, r.world_size);
    const std::string hint =
        fit == 0 ? absl::StrCat(" (no micro_batch_size can: ", r.world_size, " ranks cannot share ", t.batch_size,
                                " examples evenly)")
                 : absl::StrCat(" (train.micro_batch_size = ", fit, " would)");
    return Error(absl::StrCat("train.batch_size = ", t.batch_size),
                 absl::StrCat("must be divisible by train.micro_batch_size * resources.world_size = ",
                              t.micro_batch_size, " * ", r.world_size, hint));
  }
  return absl::OkStatus();
}

int64_t FittingMicroBatchSize(int64_t batch_size, int64_t micro_batch_size, int64_t world_size) {
  if (world_size < 1 || batch_size < 1 || micro_batch_size < 1 || batch_size % world_size != 0) return 0;
  const int64_t share = batch_size / world_size;
  int64_t fit = std::min(micro_batch_size, share);
  while (share % fit != 0) --fit;
  return fit;
}

absl::Status ApplyOverride(YAML::Node& tree, const std::string& assignment) {
  auto fail = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("override '", assignment, "': ", what));
  };
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos) return fail("expected key.path=value");
  const std::string key(absl::StripAsciiWhitespace(absl::string_view(assignment).substr(0, eq)));
  const std::string text = assignment.substr(eq + 1);
  if (key.empty()) return fail("expected key.path=value");
  const std::vector<std::string> parts = absl::StrSplit(key, '.');
  const bool known =
      (parts.size() == 1 && Contains(*SectionKeys(""), parts[0])) ||
      (parts.size() == 2 && SectionKeys(parts[0]) != nullptr && !parts[0].empty() &&
       Contains(*SectionKeys(parts[0]), parts[1]));
  if (!known) return fail(absl::StrCat(key, ": unknown key"));

  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return fail(absl::StrCat("value: ", e.msg));
  }
  if (!tree.IsDefined() || tree.IsNull()) tree = YAML::Node(YAML::NodeType::Map);
  if (!tree.IsMap()) return fail("the spec is not a mapping");
  if (parts.size() == 1) {
    tree[parts[0]] = value;
    return absl::OkStatus();
  }
  YAML::Node section = tree[parts[0]];
  if (!section.IsDefined() || section.IsNull()) {
    tree[parts[0]] = YAML::Node(YAML::NodeType::Map);
  } else if (!section.IsMap()) {
    return fail(absl::StrCat(parts[0], ": must be a mapping, got ", Describe(section)));
  }
  tree[parts[0]][parts[1]] = value;
  return absl::OkStatus();
}

void SetDerivedFields(JobSpec& spec, bool norm_grad_given) {
  spec.adapter.method = AdapterMethod::kD2Lora;
  if (!spec.full_finetune()) {
    // Every training method but full names an adapter method of the same name.
    spec.adapter.method = *ParseMethod(TrainingMethodName(spec.method));
  }
  // norm_grad's default follows the method: DoRA detaches ||W'|| as PEFT does.
  if (spec.method == TrainingMethod::kDora && !norm_grad_given) spec.adapter.norm_grad = NormGrad::kDetached;
  spec.adapter.seed = spec.train.seed;
}

absl::StatusOr<ValidJobSpec> ValidJobSpec::Check(JobSpec spec) {
  D2_RETURN_IF_ERROR(ValidateJobSpec(spec));
  return ValidJobSpec(std::move(spec));
}

absl::StatusOr<ValidJobSpec> ParseJobSpec(const std::string& text, const std::string& source_name,
                                          const std::vector<std::string>& overrides) {
  auto with_source = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(source_name, ": ", s.message()));
  };
  try {
    YAML::Node tree;
    try {
      tree = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
      return absl::InvalidArgumentError(absl::StrCat(source_name, ":", e.mark.line + 1, ":",
                                                     e.mark.column + 1, ": ", e.msg));
    }
    if (!tree.IsDefined() || tree.IsNull()) tree = YAML::Node(YAML::NodeType::Map);
    for (const std::string& o : overrides) {
      if (absl::Status s = ApplyOverride(tree, o); !s.ok()) return with_source(s);
    }
    absl::StatusOr<JobSpec> spec = ReadSpec(tree);
    if (!spec.ok()) return with_source(spec.status());
    absl::StatusOr<ValidJobSpec> valid = ValidJobSpec::Check(*std::move(spec));
    if (!valid.ok()) return with_source(valid.status());
    return valid;
  } catch (const YAML::Exception& e) {  // not expected: every access above is checked
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", e.what()));
  }
}

absl::StatusOr<ValidJobSpec> LoadJobSpec(const std::string& path,
                                         const std::vector<std::string>& overrides) {
  D2_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseJobSpec(text, path, overrides);
}

}  // namespace d2lora::spec
