#include "client/remote/job_watch.h"

#include <unistd.h>

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cli_util.h"
#include "client/remote/event_printer.h"
#include "client/remote/job_format.h"

namespace d2lora::cli {
namespace {

constexpr absl::Duration kRetryBudget = absl::Seconds(30);
constexpr absl::Duration kFirstBackoff = absl::Milliseconds(250);
constexpr absl::Duration kMaxBackoff = absl::Seconds(5);

bool Retryable(const grpc::Status& status) {
  // UNAVAILABLE: the connection broke or the coordinator is restarting;
  // CANCELLED: the coordinator cancelled the stream while shutting down.
  return status.error_code() == grpc::StatusCode::UNAVAILABLE || status.error_code() == grpc::StatusCode::CANCELLED;
}

absl::StatusOr<v1::Job> GetJob(const Remote& remote, const std::string& id) {
  v1::GetJobRequest request;
  request.set_id(id);
  return Call(remote, &v1::JobService::Stub::GetJob, request);
}

}  // namespace

absl::Status StreamEvents(const Remote& remote, const std::string& job_id, bool follow, int64_t* after_seq,
                          const std::function<void(const v1::JobEvent&)>& on_event) {
  absl::Time give_up = absl::InfiniteFuture();
  absl::Duration backoff = kFirstBackoff;
  for (;;) {
    grpc::ClientContext context;
    remote.Prepare(context, /*unary=*/false);
    v1::WatchJobRequest request;
    request.set_id(job_id);
    request.set_after_seq(*after_seq);
    request.set_follow(follow);
    auto reader = remote.stub->WatchJob(&context, request);
    v1::JobEvent event;
    bool progressed = false;
    while (reader->Read(&event)) {
      if (event.seq() <= *after_seq) continue;  // already shown before a reconnect
      *after_seq = event.seq();
      progressed = true;
      on_event(event);
    }
    const grpc::Status status = reader->Finish();
    if (status.ok()) return absl::OkStatus();
    if (!Retryable(status)) return ServerError(status);
    if (progressed || give_up == absl::InfiniteFuture()) {
      give_up = absl::Now() + kRetryBudget;
      if (progressed) backoff = kFirstBackoff;
    }
    if (absl::Now() + backoff > give_up) {
      return ServerError(status, absl::StrCat("the event stream of job ", job_id, " broke and did not come back: "));
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

absl::StatusOr<int> WatchUntilEnd(const Remote& remote, const std::string& job_id, int64_t after_seq) {
  absl::StatusOr<v1::Job> job = GetJob(remote, job_id);  // fails fast on a wrong id or endpoint
  if (!job.ok()) return job.status();
  EventPrinter::Options options;
  options.tty = ::isatty(STDOUT_FILENO) == 1;
  options.width = EventPrinter::TerminalWidth();
  EventPrinter printer(options);
  auto on_event = [&](const v1::JobEvent& event) {
    if (remote.json) {
      std::cout << MessageToJson(event) << std::endl;
    } else {
      printer.Print(event);
    }
  };
  // The stream ends when the job has ended; should it end early (a
  // coordinator going away cleanly), look again until the job has ended.
  for (int quiet_ends = 0;; ++quiet_ends) {
    const int64_t before = after_seq;
    if (absl::Status s = StreamEvents(remote, job_id, /*follow=*/true, &after_seq, on_event); !s.ok()) return s;
    job = GetJob(remote, job_id);
    if (job.ok() && IsTerminal(job->state())) break;
    // UNAVAILABLE: the coordinator went away after ending the stream; the
    // next StreamEvents waits for it to come back.
    if (!job.ok() && job.status().code() != absl::StatusCode::kUnavailable) return job.status();
    if (after_seq != before) quiet_ends = 0;
    if (quiet_ends >= 30) {
      if (!job.ok()) return job.status();
      return MarkServerError(
          absl::UnavailableError(absl::StrCat("the coordinator keeps ending the event stream of job ", job_id,
                                              " while it is ", JobStateName(job->state()))));
    }
    absl::SleepFor(absl::Seconds(1));
  }
  printer.End();
  const std::string state = JobStateName(job->state());
  if (job->state() == v1::SUCCEEDED) {
    std::string line = absl::StrCat("job ", job_id, " SUCCEEDED");
    if (job->has_metrics()) {
      absl::StrAppend(&line, " after ", job->metrics().step(), " steps in ",
                      FormatDuration(job->metrics().elapsed_seconds()), ", final loss ",
                      FormatNumber(job->metrics().loss()));
    }
    (remote.json ? std::cerr : std::cout) << line << "; artifacts: d2lora artifacts " << job_id << std::endl;
    return kExitOk;
  }
  std::cerr << "job " << job_id << " " << state << std::endl << FormatJobError(job->error()) << std::flush;
  return kExitJobFailed;
}

}  // namespace d2lora::cli
