// Following a job's event stream (WatchJob), surviving coordinator restarts:
// when the stream breaks (UNAVAILABLE) it is reopened after the last event
// seen, so nothing is shown twice; it gives up after ~30 s without success.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/remote/remote_util.h"

namespace d2lora::cli {

// Calls `on_event` for each event with seq > *after_seq, in order, and keeps
// *after_seq at the last seq seen. With `follow`, until the job has ended.
absl::Status StreamEvents(const Remote& remote, const std::string& job_id, bool follow, int64_t* after_seq,
                          const std::function<void(const v1::JobEvent&)>& on_event);

// `watch`: prints the job's events (EventPrinter, or a JSON line each) from
// after_seq on until the job ends, then its outcome. Returns kExitOk when it
// SUCCEEDED, kExitJobFailed when it FAILED or was CANCELLED.
absl::StatusOr<int> WatchUntilEnd(const Remote& remote, const std::string& job_id, int64_t after_seq);

}  // namespace d2lora::cli
