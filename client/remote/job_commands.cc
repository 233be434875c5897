// d2lora list [--state S]... [--label k=v]... [--limit N] [--all]
// d2lora get ID
// d2lora cancel ID [--reason TEXT]
// d2lora pause ID [--reason TEXT] [--wait]
// d2lora resume ID
#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cli_util.h"
#include "client/remote/job_format.h"
#include "client/remote/remote_commands.h"
#include "client/remote/remote_util.h"
#include "common/status_macros.h"

namespace d2lora::cli {
namespace {

struct ListFlags {
  ConnectionFlags connection;
  std::vector<std::string> states;
  std::vector<std::string> labels;
  int limit = 0;  // 0 = the coordinator's page size
  bool all = false;
};

struct JobFlags {
  ConnectionFlags connection;
  std::string id;
  std::string reason;
  bool wait = false;  // pause: until the job is PAUSED (or has ended)
};

absl::StatusOr<int> RunList(const ListFlags& f) {
  v1::ListJobsRequest request;
  for (const std::string& name : f.states) {
    D2_ASSIGN_OR_RETURN(v1::JobState state, ParseJobStateName(name));
    request.add_states(state);
  }
  D2_ASSIGN_OR_RETURN(auto labels, ParseKeyValues(f.labels, "--label"));
  request.mutable_labels()->insert(labels.begin(), labels.end());
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(f.connection));

  v1::ListJobsResponse all;
  for (;;) {
    // --all: pages of --limit (or 1000) until the last; else one page of --limit.
    request.set_page_size(f.all ? (f.limit > 0 ? std::min(f.limit, 1000) : 1000) : std::min(f.limit, 1000));
    D2_ASSIGN_OR_RETURN(v1::ListJobsResponse page, Call(remote, &v1::JobService::Stub::ListJobs, request));
    for (v1::Job& job : *page.mutable_jobs()) *all.add_jobs() = std::move(job);
    if (!f.all || page.next_page_token().empty()) {
      all.set_next_page_token(page.next_page_token());
      break;
    }
    request.set_page_token(page.next_page_token());
  }
  if (remote.json) {
    std::cout << MessageToJson(all) << std::endl;
    return kExitOk;
  }
  std::cout << FormatJobTable({all.jobs().begin(), all.jobs().end()}, absl::Now()) << std::flush;
  if (!all.next_page_token().empty()) std::cerr << "(more jobs: use --all, or a larger --limit)" << std::endl;
  return kExitOk;
}

absl::StatusOr<int> RunGet(const JobFlags& f) {
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(f.connection));
  v1::GetJobRequest request;
  request.set_id(f.id);
  D2_ASSIGN_OR_RETURN(v1::Job job, Call(remote, &v1::JobService::Stub::GetJob, request));
  std::cout << (remote.json ? MessageToJson(job) + "\n" : FormatJobSummary(job, absl::Now())) << std::flush;
  return kExitOk;
}

// Prints what a pause or resume call answered: `doing` while the job is on its
// way (`on_the_way`), else the state it is in.
void PrintJobAnswer(const Remote& remote, const v1::Job& job, v1::JobState on_the_way, const char* doing) {
  if (remote.json) {
    std::cout << MessageToJson(job) << std::endl;
  } else if (job.state() == on_the_way) {
    std::cout << doing << " job " << job.id() << " (" << JobStateName(job.state()) << ")" << std::endl;
  } else {
    std::cout << "job " << job.id() << " is " << JobStateName(job.state()) << std::endl;
  }
}

absl::StatusOr<int> RunCancel(const JobFlags& f) {
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(f.connection));
  v1::CancelJobRequest request;
  request.set_id(f.id);
  request.set_reason(f.reason);
  D2_ASSIGN_OR_RETURN(v1::Job job, Call(remote, &v1::JobService::Stub::CancelJob, request));
  if (remote.json) {
    std::cout << MessageToJson(job) << std::endl;
  } else if (IsTerminal(job.state())) {
    std::cout << "job " << job.id() << " is " << JobStateName(job.state()) << std::endl;
  } else {
    std::cout << "cancelling job " << job.id() << " (" << JobStateName(job.state()) << ")" << std::endl;
  }
  return kExitOk;
}

absl::StatusOr<int> RunPause(const JobFlags& f) {
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(f.connection));
  v1::PauseJobRequest pause;
  pause.set_id(f.id);
  pause.set_reason(f.reason);
  D2_ASSIGN_OR_RETURN(v1::Job job, Call(remote, &v1::JobService::Stub::PauseJob, pause));
  // --wait: until the ranks have checkpointed and freed their slots.
  v1::GetJobRequest get;
  get.set_id(f.id);
  while (f.wait && job.state() == v1::PAUSING) {
    absl::SleepFor(absl::Milliseconds(500));
    D2_ASSIGN_OR_RETURN(job, Call(remote, &v1::JobService::Stub::GetJob, get));
  }
  PrintJobAnswer(remote, job, v1::PAUSING, "pausing");
  return kExitOk;
}

absl::StatusOr<int> RunResume(const JobFlags& f) {
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(f.connection));
  v1::ResumeJobRequest request;
  request.set_id(f.id);
  D2_ASSIGN_OR_RETURN(v1::Job job, Call(remote, &v1::JobService::Stub::ResumeJob, request));
  PrintJobAnswer(remote, job, v1::JOB_STATE_UNSPECIFIED, "");
  return kExitOk;
}

}  // namespace

void AddJobCommands(CLI::App& app, int* exit_code) {
  auto list = std::make_shared<ListFlags>();
  CLI::App* cmd = app.add_subcommand("list", "List jobs, newest first");
  cmd->add_option("--state", list->states,
                  "Only jobs in this state: queued, scheduled, running, succeeded, failed, cancelled, pausing, paused "
                  "(repeatable)")
      ->check(CLI::IsMember({"queued", "scheduled", "running", "succeeded", "failed", "cancelled", "pausing", "paused"},
                     CLI::ignore_case));
  cmd->add_option("--label", list->labels, "Only jobs with this label: key=value (repeatable)")
      ->check(KeyValueValidator());
  cmd->add_option("--limit", list->limit, "At most this many jobs (default: the coordinator's page, 100)")
      ->check(CLI::Range(1, 1000));
  cmd->add_flag("--all", list->all, "Every matching job (follows the pages)");
  AddConnectionFlags(cmd, &list->connection);
  cmd->callback([list, exit_code]() { RunCommand("list", exit_code, [&list]() { return RunList(*list); }); });

  auto get = std::make_shared<JobFlags>();
  cmd = app.add_subcommand("get", "Show a job: state, attempts, workers, metrics, error");
  cmd->add_option("id", get->id, "Job id")->required();
  AddConnectionFlags(cmd, &get->connection);
  cmd->callback([get, exit_code]() { RunCommand("get", exit_code, [&get]() { return RunGet(*get); }); });

  auto cancel = std::make_shared<JobFlags>();
  cmd = app.add_subcommand("cancel", "Cancel a job (its running ranks stop)");
  cmd->add_option("id", cancel->id, "Job id")->required();
  cmd->add_option("--reason", cancel->reason, "Why, for the job's record");
  AddConnectionFlags(cmd, &cancel->connection);
  cmd->callback([cancel, exit_code]() { RunCommand("cancel", exit_code, [&cancel]() { return RunCancel(*cancel); }); });

  auto pause = std::make_shared<JobFlags>();
  cmd = app.add_subcommand("pause", "Pause a job: its ranks checkpoint and free their slots (resume continues it)");
  cmd->add_option("id", pause->id, "Job id")->required();
  cmd->add_option("--reason", pause->reason, "Why, for the job's record");
  cmd->add_flag("--wait", pause->wait, "Return once the job is PAUSED (its checkpoint stored, its slots free)");
  AddConnectionFlags(cmd, &pause->connection);
  cmd->callback([pause, exit_code]() { RunCommand("pause", exit_code, [&pause]() { return RunPause(*pause); }); });

  auto resume = std::make_shared<JobFlags>();
  cmd = app.add_subcommand("resume", "Queue a paused job again; it continues from its last checkpoint");
  cmd->add_option("id", resume->id, "Job id")->required();
  AddConnectionFlags(cmd, &resume->connection);
  cmd->callback([resume, exit_code]() { RunCommand("resume", exit_code, [&resume]() { return RunResume(*resume); }); });
}

}  // namespace d2lora::cli
