// d2lora plot SOURCE... --out FILE.png [--label NAME]... [--bar LABEL=EVAL.json|VALUE]...
//             [--title TEXT] [--chance P]
// SOURCE: an output directory (its metrics.jsonl), a metrics.jsonl, or, with
// the service client built in, a job id (its metrics.jsonl is downloaded).
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/cli_util.h"
#include "client/plot/training_figure.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/trainer/output_names.h"
#ifdef D2LORA_WITH_REMOTE
#include "client/remote/client_config.h"
#include "client/remote/remote_commands.h"
#endif

namespace d2lora::cli {
namespace {

namespace fs = std::filesystem;

struct PlotFlags {
  std::vector<std::string> sources;
  std::string out;
  std::vector<std::string> labels;
  std::vector<std::string> bars;
  std::string title;
  double chance = -1;
#ifdef D2LORA_WITH_REMOTE
  ConnectionFlags connection;
#endif
};

// A temporary directory for downloaded metrics, removed with this object.
struct Scratch {
  std::string dir;
  ~Scratch() {
    std::error_code ec;
    if (!dir.empty()) fs::remove_all(dir, ec);
  }
};

absl::StatusOr<std::string> MetricsPath(const std::string& source, const PlotFlags& f, Scratch& scratch) {
  std::error_code ec;
  if (fs::is_directory(source, ec)) return (fs::path(source) / trainer::kMetricsFile).string();
  if (fs::exists(source, ec)) return source;
#ifdef D2LORA_WITH_REMOTE
  if (absl::StartsWith(source, "job-") && source.find('/') == std::string::npos) {  // a job id (server/job_ids.h)
    if (scratch.dir.empty()) {
      std::string pattern = (fs::temp_directory_path() / "d2lora-plot-XXXXXX").string();
      if (mkdtemp(pattern.data()) == nullptr) return absl::InternalError("cannot make a temporary directory");
      scratch.dir = pattern;
    }
    std::string path = (fs::path(scratch.dir) / absl::StrCat(source, ".metrics.jsonl")).string();
    D2_RETURN_IF_ERROR(DownloadJobArtifact(f.connection, source, trainer::kMetricsFile, path));
    return path;
  }
  return absl::NotFoundError(absl::StrCat(source, ": no such file or directory (nor a job id, job-...)"));
#else
  (void)f;
  (void)scratch;
  return absl::NotFoundError(absl::StrCat(source, ": no such file or directory"));
#endif
}

// LABEL=EVAL.json (`d2lora eval --json`'s last line: accuracy, standard_error) or LABEL=ACCURACY.
absl::StatusOr<plot::AccuracyBar> ParseBar(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    return absl::InvalidArgumentError(absl::StrCat("--bar '", text, "': expected LABEL=EVAL.json or LABEL=ACCURACY"));
  }
  plot::AccuracyBar bar;
  bar.label = text.substr(0, eq);
  const std::string value = text.substr(eq + 1);
  if (absl::SimpleAtod(value, &bar.accuracy)) {
    if (!(bar.accuracy >= 0 && bar.accuracy <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat("--bar '", text, "': accuracy ", value, " is not in [0, 1]"));
    }
    return bar;
  }
  D2_ASSIGN_OR_RETURN(std::string contents, ReadFileToString(value));
  // The last non-empty line: a whole `d2lora eval --json` log works too.
  const absl::string_view all = absl::StripTrailingAsciiWhitespace(contents);
  const size_t newline = all.rfind('\n');
  const absl::string_view last = newline == absl::string_view::npos ? all : all.substr(newline + 1);
  nlohmann::json j = nlohmann::json::parse(last.begin(), last.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("accuracy") || !j["accuracy"].is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(value, ": no \"accuracy\" in its last line (expected the output of d2lora eval --json)"));
  }
  bar.accuracy = j["accuracy"].get<double>();
  if (j.contains("standard_error") && j["standard_error"].is_number()) {
    bar.standard_error = j["standard_error"].get<double>();
  }
  return bar;
}

absl::Status RunPlot(const PlotFlags& f) {
  if (!f.labels.empty() && f.labels.size() != f.sources.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--label given ", f.labels.size(), " times for ", f.sources.size(), " sources"));
  }
  plot::TrainingFigureOptions options;
  options.title = f.title;
  options.labels = f.labels;
  options.chance = f.chance;
  for (const std::string& b : f.bars) {
    D2_ASSIGN_OR_RETURN(plot::AccuracyBar bar, ParseBar(b));
    options.bars.push_back(std::move(bar));
  }
  Scratch scratch;
  std::vector<plot::RunCurves> runs;
  for (const std::string& source : f.sources) {
    D2_ASSIGN_OR_RETURN(std::string path, MetricsPath(source, f, scratch));
    D2_ASSIGN_OR_RETURN(plot::RunCurves run, plot::ReadRunCurves(path));
    if (run.ignored_lines > 0) {
      std::cerr << "d2lora plot: " << path << ": ignored " << run.ignored_lines << " line(s) that are no event"
                << std::endl;
    }
    runs.push_back(std::move(run));
  }
  D2_RETURN_IF_ERROR(plot::WritePng(plot::TrainingFigure(runs, options), f.out));
  std::cout << "wrote " << f.out << std::endl;
  return absl::OkStatus();
}

}  // namespace

void AddPlotCommand(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<PlotFlags>();
  CLI::App* cmd = app.add_subcommand(
      "plot", "Draw a run's training loss, volatility and validation curves (and accuracy bars) into a PNG");
#ifdef D2LORA_WITH_REMOTE
  const char* source_help = "Output directories, metrics.jsonl files or job ids (their metrics.jsonl is downloaded)";
#else
  const char* source_help = "Output directories or metrics.jsonl files";
#endif
  cmd->add_option("source", f->sources, source_help)->required();
  cmd->add_option("--out", f->out, "The PNG to write")->required();
  cmd->add_option("--label", f->labels, "A legend label per source, in order (default: the run's name and method)");
  cmd->add_option("--bar", f->bars,
                  "An accuracy bar: LABEL=EVAL.json (the output of d2lora eval --json) or LABEL=ACCURACY");
  cmd->add_option("--title", f->title, "The figure's title");
  cmd->add_option("--chance", f->chance, "Draw the chance level on the accuracy charts (e.g. 0.25)")
      ->check(CLI::Range(0.0, 1.0));
#ifdef D2LORA_WITH_REMOTE
  AddConnectionFlags(cmd, &f->connection);
  cmd->remove_option(cmd->get_option("--json"));  // plot prints no JSON
#endif
  cmd->callback([f, exit_code]() {
    absl::Status status = RunPlot(*f);
    if (!status.ok()) *exit_code = Fail("plot", status);
  });
}

}  // namespace d2lora::cli
