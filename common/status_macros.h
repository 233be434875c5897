// Status plumbing shared by every module: errors are values at module boundaries.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define D2_STATUS_CONCAT_INNER_(a, b) a##b
#define D2_STATUS_CONCAT_(a, b) D2_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function when `expr` yields a non-OK absl::Status.
#define D2_RETURN_IF_ERROR(expr)                    \
  do {                                              \
    ::absl::Status d2_status_ = (expr);             \
    if (!d2_status_.ok()) return d2_status_;        \
  } while (0)

// `lhs = value of expr`, or returns its error. `lhs` may declare a variable.
#define D2_ASSIGN_OR_RETURN(lhs, expr) \
  D2_ASSIGN_OR_RETURN_IMPL_(D2_STATUS_CONCAT_(d2_statusor_, __LINE__), lhs, expr)
#define D2_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
