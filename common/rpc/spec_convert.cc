#include "common/rpc/spec_convert.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/spec/job_spec_fields.h"
#include "common/utf8.h"

namespace d2lora::rpc {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

std::string KeyPath(const char* section, const char* key) {
  return *section == '\0' ? std::string(key) : absl::StrCat(section, ".", key);
}

// The key's field in its section's message; nullptr for a key the wire form
// does not carry (output.dir).
const FieldDescriptor* KeyField(const Message& section, const char* key) {
  return section.GetDescriptor()->FindFieldByName(key);
}

// Reads each key of the list whose field is set; stops at the first error.
class ProtoReader {
 public:
  ProtoReader(const v1::JobSpec& wire, spec::JobSpec* out) : wire_(wire), out_(out) {}

  absl::Status status() const { return status_; }
  bool norm_grad_given() const { return wire_.has_adapter() && wire_.adapter().has_norm_grad(); }

  template <typename Get>
  void Value(const char* section, const char* key, Get get) {
    const Message* m = nullptr;
    const FieldDescriptor* f = Locate(section, key, &m);
    if (f != nullptr) Read(*m, f, KeyPath(section, key), &get(*out_));
  }
  template <typename Get>
  void Plain(const char* section, const char* key, Get get) {
    Value(section, key, get);
  }
  template <typename Get, typename NameFn, typename ParseFn>
  void Named(const char* section, const char* key, Get get, NameFn, ParseFn parse) {
    const Message* m = nullptr;
    const FieldDescriptor* f = Locate(section, key, &m);
    if (f == nullptr || !Expect(f, FieldDescriptor::CPPTYPE_STRING, KeyPath(section, key))) return;
    const std::string name = m->GetReflection()->GetString(*m, f);
    if (!Utf8(name, KeyPath(section, key))) return;
    auto value = parse(name);
    if (!value.ok()) {
      status_ = absl::InvalidArgumentError(absl::StrCat(KeyPath(section, key), " = ", name, ": ",
                                                        value.status().message()));
      return;
    }
    get(*out_) = *value;
  }

 private:
  // The key's field when it is set (a set section, a present value); else nullptr.
  const FieldDescriptor* Locate(const char* section, const char* key, const Message** message) {
    if (!status_.ok()) return nullptr;
    const Message* m = &wire_;
    if (*section != '\0') {
      const FieldDescriptor* s = KeyField(wire_, section);
      if (s == nullptr || s->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
        status_ = absl::InternalError(absl::StrCat("d2lora.v1.JobSpec has no section ", section));
        return nullptr;
      }
      if (!wire_.GetReflection()->HasField(wire_, s)) return nullptr;
      m = &wire_.GetReflection()->GetMessage(wire_, s);
    }
    const FieldDescriptor* f = KeyField(*m, key);
    if (f == nullptr) return nullptr;
    const Reflection& r = *m->GetReflection();
    if (f->is_repeated()) {
      if (r.FieldSize(*m, f) == 0) return nullptr;
    } else if (f->has_presence()) {
      if (!r.HasField(*m, f)) return nullptr;
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING && r.GetString(*m, f).empty()) {
      return nullptr;  // proto3 without presence: "" is unset
    }
    *message = m;
    return f;
  }

  bool Expect(const FieldDescriptor* f, FieldDescriptor::CppType type, const std::string& path) {
    if (f->cpp_type() == type) return true;
    status_ = absl::InternalError(absl::StrCat("d2lora.v1.JobSpec field ", path, " has type ", f->cpp_type_name(),
                                               ", not the spec's"));
    return false;
  }

  // A message built in-process may hold bytes that are not UTF-8 (the wire parser refuses them).
  bool Utf8(const std::string& value, const std::string& path) {
    if (IsValidUtf8(value)) return true;
    status_ = absl::InvalidArgumentError(absl::StrCat(path, ": is not valid UTF-8"));
    return false;
  }
  void Read(const Message& m, const FieldDescriptor* f, const std::string& path, std::string* out) {
    if (!Expect(f, FieldDescriptor::CPPTYPE_STRING, path)) return;
    std::string value = m.GetReflection()->GetString(m, f);
    if (Utf8(value, path)) *out = std::move(value);
  }
  void Read(const Message& m, const FieldDescriptor* f, const std::string& path, std::vector<std::string>* out) {
    if (!Expect(f, FieldDescriptor::CPPTYPE_STRING, path)) return;
    const Reflection& r = *m.GetReflection();
    std::vector<std::string> values;
    for (int i = 0; i < r.FieldSize(m, f); ++i) {
      values.push_back(r.GetRepeatedString(m, f, i));
      if (!Utf8(values.back(), absl::StrCat(path, "[", i, "]"))) return;
    }
    *out = std::move(values);
  }
  void Read(const Message& m, const FieldDescriptor* f, const std::string& path, bool* out) {
    if (Expect(f, FieldDescriptor::CPPTYPE_BOOL, path)) *out = m.GetReflection()->GetBool(m, f);
  }
  void Read(const Message& m, const FieldDescriptor* f, const std::string& path, int64_t* out) {
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
      *out = m.GetReflection()->GetInt32(m, f);
    } else if (Expect(f, FieldDescriptor::CPPTYPE_INT64, path)) {
      *out = m.GetReflection()->GetInt64(m, f);
    }
  }
  void Read(const Message& m, const FieldDescriptor* f, const std::string& path, uint64_t* out) {
    if (Expect(f, FieldDescriptor::CPPTYPE_UINT64, path)) *out = m.GetReflection()->GetUInt64(m, f);
  }
  void Read(const Message& m, const FieldDescriptor* f, const std::string& path, double* out) {
    if (Expect(f, FieldDescriptor::CPPTYPE_DOUBLE, path)) *out = m.GetReflection()->GetDouble(m, f);
  }

  const v1::JobSpec& wire_;
  spec::JobSpec* out_;
  absl::Status status_;
};

// Sets every key's field (creating its section) from the spec.
class ProtoWriter {
 public:
  ProtoWriter(const spec::JobSpec& spec, v1::JobSpec* wire) : spec_(spec), wire_(wire) {}

  template <typename Get>
  void Value(const char* section, const char* key, Get get) {
    Message* m = nullptr;
    if (const FieldDescriptor* f = Locate(section, key, &m)) Write(m, f, get(spec_));
  }
  template <typename Get>
  void Plain(const char* section, const char* key, Get get) {
    Value(section, key, get);
  }
  template <typename Get, typename NameFn, typename ParseFn>
  void Named(const char* section, const char* key, Get get, NameFn name, ParseFn) {
    Message* m = nullptr;
    if (const FieldDescriptor* f = Locate(section, key, &m)) Write(m, f, name(get(spec_)));
  }


 private:
  // The key's field in its (created) section; nullptr for a key the wire form does not carry.
  const FieldDescriptor* Locate(const char* section, const char* key, Message** message) {
    Message* m = wire_;
    if (*section != '\0') m = wire_->GetReflection()->MutableMessage(wire_, KeyField(*wire_, section));
    *message = m;
    return KeyField(*m, key);
  }

  // Reflection checks each setter's type against the field (a mismatch aborts in every test).
  static void Write(Message* m, const FieldDescriptor* f, const std::string& v) {
    if (v.empty() && f->has_presence()) return;  // "not set": the reader's default
    m->GetReflection()->SetString(m, f, v);
  }
  static void Write(Message* m, const FieldDescriptor* f, const std::vector<std::string>& v) {
    for (const std::string& s : v) m->GetReflection()->AddString(m, f, s);
  }
  static void Write(Message* m, const FieldDescriptor* f, bool v) { m->GetReflection()->SetBool(m, f, v); }
  static void Write(Message* m, const FieldDescriptor* f, int64_t v) {
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT32) {
      m->GetReflection()->SetInt32(m, f, static_cast<int32_t>(v));
    } else {
      m->GetReflection()->SetInt64(m, f, v);
    }
  }
  static void Write(Message* m, const FieldDescriptor* f, uint64_t v) { m->GetReflection()->SetUInt64(m, f, v); }
  static void Write(Message* m, const FieldDescriptor* f, double v) { m->GetReflection()->SetDouble(m, f, v); }

  const spec::JobSpec& spec_;
  v1::JobSpec* wire_;
};

}  // namespace

absl::StatusOr<spec::ValidJobSpec> SpecFromProto(const v1::JobSpec& wire,
                                                 const std::function<void(spec::JobSpec&)>& adjust) {
  spec::JobSpec out;
  ProtoReader reader(wire, &out);
  spec::internal::ForEachField(reader);
  absl::Status status = reader.status();
  if (status.ok()) {
    spec::SetDerivedFields(out, reader.norm_grad_given());
    if (adjust) adjust(out);
    auto valid = spec::ValidJobSpec::Check(std::move(out));
    if (valid.ok()) return valid;
    status = valid.status();
  }
  return absl::Status(status.code(), absl::StrCat("spec: ", status.message()));
}

v1::JobSpec SpecToProto(const spec::JobSpec& spec) {
  v1::JobSpec out;
  ProtoWriter writer(spec, &out);
  spec::internal::ForEachField(writer);
  return out;
}

}  // namespace d2lora::rpc
