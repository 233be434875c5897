// Engine entry points call LibTorch inside GuardTorch so that its exceptions
// become absl::Status values instead of crossing module boundaries.
#pragma once

#include "absl/strings/string_view.h"
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace d2lora::engine {

// Must be called from inside a catch block: maps the exception in flight
// (c10::Error, std::bad_alloc, std::exception, anything) to a Status whose
// message starts with `context`.
absl::Status StatusFromCurrentException(absl::string_view context);

// Runs `fn` (returning absl::Status or absl::StatusOr<T>) and converts any
// exception it throws into an error Status.
template <typename Fn>
auto GuardTorch(absl::string_view context, Fn&& fn) -> decltype(fn()) {
  try {
    return std::forward<Fn>(fn)();
  } catch (...) {
    return StatusFromCurrentException(context);
  }
}

}  // namespace d2lora::engine
