#include "worker/engine/metrics/metrics_json.h"

#include <chrono>
#include <cmath>

namespace d2lora::engine {

nlohmann::json ToJson(const RunVolatility& r) {
  nlohmann::json j{{"steps", r.steps}, {"spikes", r.spikes}};
  auto put = [&j](const char* key, const std::optional<double>& v) {
    if (v.has_value()) j[key] = std::isfinite(*v) ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  put("volatility", r.volatility);
  put("mean_abs_change", r.mean_abs_change);
  put("loss_first", r.loss_first);
  put("loss_last", r.loss_last);
  return j;
}

double UnixNow() {
  using std::chrono::duration;
  using std::chrono::system_clock;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

}  // namespace d2lora::engine
