// The canonical YAML and JSON forms of a job spec, and spec equality.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "common/spec/job_spec.h"
#include "common/spec/job_spec_fields.h"

namespace d2lora::spec {
namespace {

// The shortest decimal form that reads back as exactly `v`.
std::string ShortestDouble(double v) {
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

void Str(YAML::Emitter& out, const char* key, const std::string& value) {
  out << YAML::Key << key << YAML::Value;
  if (value.empty()) {
    out << YAML::Null;  // "not set"; reads back as the default
  } else {
    out << YAML::DoubleQuoted << value;
  }
}
void Plain(YAML::Emitter& out, const char* key, const std::string& value) {
  out << YAML::Key << key << YAML::Value << value;
}
void Int(YAML::Emitter& out, const char* key, int64_t value) {
  Plain(out, key, std::to_string(value));
}
void Double(YAML::Emitter& out, const char* key, double value) {
  Plain(out, key, ShortestDouble(value));
}
void Bool(YAML::Emitter& out, const char* key, bool value) {
  Plain(out, key, value ? "true" : "false");
}
void Begin(YAML::Emitter& out, const char* section) {
  out << YAML::Key << section << YAML::Value << YAML::BeginMap;
}

nlohmann::json OrNull(const std::string& s) { return s.empty() ? nlohmann::json() : nlohmann::json(s); }

void Emit(YAML::Emitter& out, const char* key, const std::string& value) { Str(out, key, value); }
void Emit(YAML::Emitter& out, const char* key, int64_t value) { Int(out, key, value); }
void Emit(YAML::Emitter& out, const char* key, uint64_t value) { Plain(out, key, std::to_string(value)); }
void Emit(YAML::Emitter& out, const char* key, double value) { Double(out, key, value); }
void Emit(YAML::Emitter& out, const char* key, bool value) { Bool(out, key, value); }
void Emit(YAML::Emitter& out, const char* key, const std::vector<std::string>& value) {
  out << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const std::string& v : value) out << YAML::DoubleQuoted << v;
  out << YAML::EndSeq;
}

// The canonical YAML: every key with its value, sections as block mappings.
class YamlVisitor {
 public:
  explicit YamlVisitor(const JobSpec& spec) : spec_(spec) { out_ << YAML::BeginMap; }
  std::string Finish() {
    if (!section_.empty()) out_ << YAML::EndMap;
    out_ << YAML::EndMap;
    return std::string(out_.c_str()) + "\n";
  }
  template <typename Get>
  void Value(const char* section, const char* key, Get get) {
    Enter(section);
    Emit(out_, key, get(spec_));
  }
  template <typename Get>
  void Plain(const char* section, const char* key, Get get) {
    Enter(section);
    spec::Plain(out_, key, get(spec_));
  }
  template <typename Get, typename NameFn, typename ParseFn>
  void Named(const char* section, const char* key, Get get, NameFn name, ParseFn) {
    Enter(section);
    spec::Plain(out_, key, name(get(spec_)));
  }

 private:
  void Enter(const std::string& section) {
    if (section == section_) return;
    if (!section_.empty()) out_ << YAML::EndMap;
    section_ = section;
    Begin(out_, section_.c_str());
  }
  const JobSpec& spec_;
  YAML::Emitter out_;
  std::string section_;
};

// The same tree as JSON; an empty string is null (not set).
class JsonVisitor {
 public:
  explicit JsonVisitor(const JobSpec& spec) : spec_(spec) {}
  nlohmann::json& json() { return json_; }
  template <typename Get>
  void Value(const char* section, const char* key, Get get) {
    Slot(section, key) = Json(get(spec_));
  }
  template <typename Get>
  void Plain(const char* section, const char* key, Get get) {
    Value(section, key, get);
  }
  template <typename Get, typename NameFn, typename ParseFn>
  void Named(const char* section, const char* key, Get get, NameFn name, ParseFn) {
    Slot(section, key) = name(get(spec_));
  }

 private:
  nlohmann::json& Slot(const std::string& section, const char* key) {
    return section.empty() ? json_[key] : json_[section][key];
  }
  static nlohmann::json Json(const std::string& v) { return OrNull(v); }
  template <typename T>
  static nlohmann::json Json(const T& v) {
    return nlohmann::json(v);
  }
  const JobSpec& spec_;
  nlohmann::json json_;
};

// Every key equal.
struct EqualVisitor {
  const JobSpec& a;
  const JobSpec& b;
  bool equal = true;
  template <typename Get>
  void Value(const char*, const char*, Get get) {
    equal = equal && get(a) == get(b);
  }
  template <typename Get>
  void Plain(const char* section, const char* key, Get get) {
    Value(section, key, get);
  }
  template <typename Get, typename NameFn, typename ParseFn>
  void Named(const char* section, const char* key, Get get, NameFn, ParseFn) {
    Value(section, key, get);
  }
};

}  // namespace

bool operator==(const JobSpec& a, const JobSpec& b) {
  EqualVisitor v{a, b};
  internal::ForEachField(v);
  // What follows from the keys (adapter.method from method, adapter.seed from train.seed).
  return v.equal && a.adapter.method == b.adapter.method && a.adapter.seed == b.adapter.seed;
}

std::string JobSpecToYaml(const JobSpec& s) {
  YamlVisitor v(s);
  internal::ForEachField(v);
  return v.Finish();
}

nlohmann::json JobSpecToJson(const JobSpec& s) {
  JsonVisitor v(s);
  internal::ForEachField(v);
  return std::move(v.json());
}

}  // namespace d2lora::spec
