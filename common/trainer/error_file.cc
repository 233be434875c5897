#include "common/trainer/error_file.h"

#include <cstdlib>
#include <ctime>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_codes.h"
#include "common/trainer/output_names.h"

namespace d2lora::trainer {
namespace {

using json = nlohmann::json;

constexpr char kReasonPayload[] = "type.d2lora.dev/trainer.FailureReason";
constexpr char kStepPayload[] = "type.d2lora.dev/trainer.Step";

constexpr FailureReason kReasons[] = {FailureReason::kNone, FailureReason::kDiverged,
                                      FailureReason::kMergeCheckFailed, FailureReason::kStopped,
                                      FailureReason::kUsage};

absl::Status FieldError(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("field \"", field, "\": ", problem));
}

}  // namespace

absl::string_view FailureReasonName(FailureReason reason) {
  switch (reason) {
    case FailureReason::kNone: return "";
    case FailureReason::kDiverged: return "DIVERGED";
    case FailureReason::kMergeCheckFailed: return "MERGE_CHECK_FAILED";
    case FailureReason::kStopped: return "STOPPED";
    case FailureReason::kUsage: return "USAGE";
  }
  return "";
}

std::optional<FailureReason> ParseFailureReason(absl::string_view name) {
  for (FailureReason r : kReasons) {
    if (FailureReasonName(r) == name) return r;
  }
  return std::nullopt;
}

absl::Status WithReason(absl::Status status, FailureReason reason) {
  if (!status.ok()) status.SetPayload(kReasonPayload, absl::Cord(FailureReasonName(reason)));
  return status;
}

absl::Status WithStep(absl::Status status, int64_t step) {
  if (!status.ok() && !status.GetPayload(kStepPayload).has_value()) {
    status.SetPayload(kStepPayload, absl::Cord(absl::StrCat(step)));
  }
  return status;
}

FailureReason ReasonOf(const absl::Status& status) {
  const auto payload = status.GetPayload(kReasonPayload);
  if (!payload.has_value()) return FailureReason::kNone;
  return ParseFailureReason(std::string(*payload)).value_or(FailureReason::kNone);
}

std::optional<int64_t> StepOf(const absl::Status& status) {
  const auto payload = status.GetPayload(kStepPayload);
  int64_t step = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &step)) return std::nullopt;
  return step;
}

bool IsRetryable(absl::StatusCode code, FailureReason reason) {
  switch (reason) {
    case FailureReason::kDiverged:          // the same seeds from the same checkpoint diverge again
    case FailureReason::kMergeCheckFailed:  // the same weights merge the same way again
    case FailureReason::kUsage:
      return false;
    case FailureReason::kNone:
    case FailureReason::kStopped:
      break;
  }
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
      return false;
    default:
      return true;
  }
}

TrainerError ErrorFromStatus(const absl::Status& status) {
  TrainerError error;
  error.code = status.code();
  error.message = std::string(status.message());
  error.reason = ReasonOf(status);
  error.retryable = IsRetryable(error.code, error.reason);
  error.step = StepOf(status);
  return error;
}

std::string ErrorToJson(const TrainerError& error) {
  json j{{"code", absl::StatusCodeToString(error.code)}, {"message", error.message}, {"retryable", error.retryable}};
  if (error.reason != FailureReason::kNone) j["reason"] = std::string(FailureReasonName(error.reason));
  if (error.step.has_value()) j["step"] = *error.step;
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

absl::StatusOr<TrainerError> ErrorFromJson(absl::string_view text) {
  const json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("not JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  TrainerError error;
  auto code = j.find("code");
  if (code == j.end() || !code->is_string()) return FieldError("code", "missing, or not a string");
  std::optional<absl::StatusCode> parsed = ParseStatusCode(code->get<std::string>());
  if (!parsed.has_value() || *parsed == absl::StatusCode::kOk) {
    return FieldError("code", absl::StrCat("\"", code->get<std::string>(), "\" is not an error code's name"));
  }
  error.code = *parsed;
  auto message = j.find("message");
  if (message == j.end() || !message->is_string()) return FieldError("message", "missing, or not a string");
  error.message = message->get<std::string>();
  auto retryable = j.find("retryable");
  if (retryable == j.end() || !retryable->is_boolean()) return FieldError("retryable", "missing, or not true/false");
  error.retryable = retryable->get<bool>();
  if (auto reason = j.find("reason"); reason != j.end()) {
    std::optional<FailureReason> r = reason->is_string() ? ParseFailureReason(reason->get<std::string>()) : std::nullopt;
    if (!r.has_value()) return FieldError("reason", absl::StrCat(reason->dump(), " is not a failure reason"));
    error.reason = *r;
  }
  if (auto step = j.find("step"); step != j.end()) {
    if (!step->is_number_integer() || step->get<int64_t>() < 0) {
      return FieldError("step", absl::StrCat(step->dump(), " is not a step number"));
    }
    error.step = step->get<int64_t>();
  }
  return error;
}

absl::Status WriteErrorFile(const std::string& path, const TrainerError& error) {
  return WriteFileAtomically(path, ErrorToJson(error));
}

absl::StatusOr<TrainerError> ReadErrorFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<TrainerError> error = ErrorFromJson(*text);
  if (!error.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", error.status().message()));
  return error;
}

std::string TorchelasticErrorJson(const TrainerError& error, int64_t unix_seconds) {
  // There is no Python stack: the "call stack" says where and how it failed.
  std::string how = absl::StrCat("d2lora train (C++): ", absl::StatusCodeToString(error.code));
  if (error.reason != FailureReason::kNone) absl::StrAppend(&how, ", reason ", FailureReasonName(error.reason));
  if (error.step.has_value()) absl::StrAppend(&how, ", at step ", *error.step);
  absl::StrAppend(&how, error.retryable ? ", retryable" : ", not retryable");
  json j{{"message",
          {{"message", absl::StrCat(absl::StatusCodeToString(error.code), ": ", error.message)},
           {"extraInfo", {{"py_callstack", how}, {"timestamp", std::to_string(unix_seconds)}}}}}};
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

absl::Status WriteErrorFileFromEnvironment(const TrainerError& error) {
  absl::Status status;
  const char* path = std::getenv(kErrorFileEnv);
  if (path != nullptr && *path != '\0') status.Update(WriteErrorFile(path, error));
  const char* torchelastic = std::getenv(kTorchelasticErrorFileEnv);
  if (torchelastic != nullptr && *torchelastic != '\0') {
    status.Update(WriteFileAtomically(torchelastic, TorchelasticErrorJson(error, static_cast<int64_t>(std::time(nullptr)))));
  }
  return status;
}

}  // namespace d2lora::trainer
