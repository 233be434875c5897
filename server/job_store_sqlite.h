// JobStore in one SQLite database file (WAL, synchronous=FULL: a change is on
// disk when ApplyBatch returns; a batch is one transaction, so one fsync).
// Events are read on a second, read-only connection: in WAL mode a reader
// does not wait for a writer's commit and fsync.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "server/job_store.h"

struct sqlite3;

namespace d2lora::server {

struct SqliteJobStoreOptions {
  // How long a write waits for a lock another connection holds before it
  // fails with UNAVAILABLE.
  int busy_timeout_ms = 5000;
};

class SqliteJobStore : public JobStore {
 public:
  // Opens or creates the database at `path` and its schema.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Create(const std::string& path,
                                                                const SqliteJobStoreOptions& options = {});
  ~SqliteJobStore() override;

  absl::StatusOr<StoredState> Load() override;
  absl::Status ApplyBatch(const std::vector<const StoreMutation*>& batch) override;
  absl::StatusOr<std::vector<v1::JobEvent>> ReadEvents(const std::string& job_id, int64_t after_seq,
                                                       int limit) override;

 private:
  SqliteJobStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  absl::Status Exec(const char* sql);
  absl::Status Error(const std::string& what) { return Error(db_, what); }
  absl::Status Error(sqlite3* db, const std::string& what);

  std::mutex mu_;  // the writing connection, used by one thread at a time
  sqlite3* db_;
  std::mutex read_mu_;  // the reading connection (events)
  sqlite3* read_db_ = nullptr;
  std::string path_;
};

}  // namespace d2lora::server
