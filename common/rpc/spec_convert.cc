#include "common/rpc/spec_convert.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"

namespace d2lora::rpc {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

nlohmann::json Scalar(const Message& m, const Reflection& r, const FieldDescriptor* f, int index) {
  const bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: return rep ? r.GetRepeatedInt32(m, f, index) : r.GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64: return rep ? r.GetRepeatedInt64(m, f, index) : r.GetInt64(m, f);
    case FieldDescriptor::CPPTYPE_UINT32: return rep ? r.GetRepeatedUInt32(m, f, index) : r.GetUInt32(m, f);
    case FieldDescriptor::CPPTYPE_UINT64: return rep ? r.GetRepeatedUInt64(m, f, index) : r.GetUInt64(m, f);
    case FieldDescriptor::CPPTYPE_DOUBLE: return rep ? r.GetRepeatedDouble(m, f, index) : r.GetDouble(m, f);
    case FieldDescriptor::CPPTYPE_FLOAT: return rep ? r.GetRepeatedFloat(m, f, index) : r.GetFloat(m, f);
    case FieldDescriptor::CPPTYPE_BOOL: return rep ? r.GetRepeatedBool(m, f, index) : r.GetBool(m, f);
    case FieldDescriptor::CPPTYPE_STRING: return rep ? r.GetRepeatedString(m, f, index) : r.GetString(m, f);
    case FieldDescriptor::CPPTYPE_ENUM:
      return rep ? r.GetRepeatedEnum(m, f, index)->name() : r.GetEnum(m, f)->name();
    case FieldDescriptor::CPPTYPE_MESSAGE: break;
  }
  return nullptr;
}

nlohmann::json ToJsonTree(const Message& m) {
  nlohmann::json out = nlohmann::json::object();
  const Reflection& r = *m.GetReflection();
  const auto* d = m.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->is_repeated()) {
      const int n = r.FieldSize(m, f);
      if (n == 0) continue;
      nlohmann::json list = nlohmann::json::array();
      for (int k = 0; k < n; ++k) {
        list.push_back(f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE ? ToJsonTree(r.GetRepeatedMessage(m, f, k))
                                                                         : Scalar(m, r, f, k));
      }
      out[f->name()] = std::move(list);
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (r.HasField(m, f)) out[f->name()] = ToJsonTree(r.GetMessage(m, f));
    } else if (f->has_presence()) {
      if (r.HasField(m, f)) out[f->name()] = Scalar(m, r, f, -1);
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      if (!r.GetString(m, f).empty()) out[f->name()] = r.GetString(m, f);
    } else {
      out[f->name()] = Scalar(m, r, f, -1);
    }
  }
  return out;
}

}  // namespace

nlohmann::json SpecProtoToJson(const v1::JobSpec& spec) { return ToJsonTree(spec); }

absl::StatusOr<spec::JobSpec> SpecFromProto(const v1::JobSpec& spec) {
  return spec::ParseJobSpec(SpecProtoToJson(spec).dump(), "spec");
}

absl::StatusOr<v1::JobSpec> SpecToProto(const spec::JobSpec& spec) {
  nlohmann::json tree = spec::JobSpecToJson(spec);
  if (tree.contains("output")) tree["output"].erase("dir");
  v1::JobSpec out;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(tree.dump(), &out, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("job spec to protobuf: ", status.ToString()));
  }
  return out;
}

}  // namespace d2lora::rpc
