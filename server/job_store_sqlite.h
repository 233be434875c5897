// JobStore in one SQLite database file (WAL, synchronous=FULL: a change is on
// disk when Apply returns).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "server/job_store.h"

struct sqlite3;

namespace d2lora::server {

class SqliteJobStore : public JobStore {
 public:
  // Opens or creates the database at `path` and its schema.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Create(const std::string& path);
  ~SqliteJobStore() override;

  absl::StatusOr<StoredState> Load() override;
  absl::Status Apply(const StoreMutation& mutation) override;
  absl::StatusOr<std::vector<v1::JobEvent>> ReadEvents(const std::string& job_id, int64_t after_seq,
                                                       int limit) override;

 private:
  SqliteJobStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  absl::Status Exec(const char* sql);
  absl::Status Error(const std::string& what);

  std::mutex mu_;  // one connection, used by one thread at a time
  sqlite3* db_;
  std::string path_;
};

}  // namespace d2lora::server
