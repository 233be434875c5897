#include "server/job_store_sqlite.h"

#include <sqlite3.h>

#include <map>

#include "absl/strings/str_cat.h"

namespace d2lora::server {
namespace {

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return stmt_; }
  void Text(int i, const std::string& s) { sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT); }
  void Blob(int i, const std::string& s) { sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT); }
  void Int(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  int Step() { return sqlite3_step(stmt_); }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string ColumnBlob(int i) {
    const void* p = sqlite3_column_blob(stmt_, i);
    return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, i)))
             : std::string();
  }
  std::string ColumnText(int i) {
    const unsigned char* p = sqlite3_column_text(stmt_, i);
    return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
  }
  int64_t ColumnInt(int i) { return sqlite3_column_int64(stmt_, i); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_ERROR;
};

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  created INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
  job_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workers (
  id TEXT PRIMARY KEY,
  data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
  id TEXT PRIMARY KEY,
  worker_id TEXT NOT NULL,
  state INTEGER NOT NULL,
  stop_requested INTEGER NOT NULL,
  data BLOB NOT NULL
);
)sql";

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Create(const std::string& path,
                                                                      const SqliteJobStoreOptions& options) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("cannot open the job store ", path, ": ", message));
  }
  std::unique_ptr<SqliteJobStore> store(new SqliteJobStore(db, path));
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  // WAL: readers never block the writer; synchronous=FULL: a committed
  // transaction survives a crash of the process or the machine.
  for (const char* pragma : {"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=FULL;", "PRAGMA foreign_keys=ON;"}) {
    if (absl::Status s = store->Exec(pragma); !s.ok()) return s;
  }
  if (absl::Status s = store->Exec(kSchema); !s.ok()) return s;
  if (sqlite3_open_v2(path.c_str(), &store->read_db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, nullptr) !=
      SQLITE_OK) {
    return store->Error(store->read_db_, "opening a reading connection");
  }
  sqlite3_busy_timeout(store->read_db_, options.busy_timeout_ms);
  return store;
}

SqliteJobStore::~SqliteJobStore() {
  sqlite3_close(read_db_);
  sqlite3_close(db_);
}

absl::Status SqliteJobStore::Error(sqlite3* db, const std::string& what) {
  const int code = sqlite3_errcode(db);
  const std::string message = absl::StrCat("job store ", path_, ": ", what, ": ", sqlite3_errmsg(db));
  if (code == SQLITE_FULL || code == SQLITE_IOERR) return absl::ResourceExhaustedError(message);
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) return absl::UnavailableError(message);
  return absl::InternalError(message);
}

absl::Status SqliteJobStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string message = err ? err : "unknown error";
    sqlite3_free(err);
    return Error(absl::StrCat("executing ", std::string(sql).substr(0, 40), " (", message, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<StoredState> SqliteJobStore::Load() {
  std::lock_guard<std::mutex> lock(mu_);
  StoredState state;
  std::map<std::string, int64_t> last_seq;
  {
    Statement st(db_, "SELECT job_id, MAX(seq) FROM events GROUP BY job_id");
    if (!st.ok()) return Error("reading events");
    while (st.Step() == SQLITE_ROW) last_seq[st.ColumnText(0)] = st.ColumnInt(1);
  }
  {
    Statement st(db_, "SELECT data FROM jobs ORDER BY created");
    if (!st.ok()) return Error("reading jobs");
    while (st.Step() == SQLITE_ROW) {
      v1::Job job;
      if (!job.ParseFromString(st.ColumnBlob(0))) return absl::DataLossError(absl::StrCat("job store ", path_, ": a job row does not parse"));
      state.last_event_seq.push_back(last_seq.count(job.id()) ? last_seq[job.id()] : 0);
      state.jobs.push_back(std::move(job));
    }
  }
  {
    Statement st(db_, "SELECT id, data FROM workers");
    if (!st.ok()) return Error("reading workers");
    while (st.Step() == SQLITE_ROW) {
      StoredWorker w;
      w.id = st.ColumnText(0);
      if (!w.registration.ParseFromString(st.ColumnBlob(1))) return absl::DataLossError(absl::StrCat("job store ", path_, ": worker ", w.id, " does not parse"));
      state.workers.push_back(std::move(w));
    }
  }
  {
    Statement st(db_, "SELECT worker_id, state, stop_requested, data FROM assignments");
    if (!st.ok()) return Error("reading assignments");
    while (st.Step() == SQLITE_ROW) {
      StoredAssignment a;
      a.worker_id = st.ColumnText(0);
      a.state = static_cast<AssignmentState>(st.ColumnInt(1));
      a.stop_requested = st.ColumnInt(2) != 0;
      if (!a.assignment.ParseFromString(st.ColumnBlob(3))) return absl::DataLossError(absl::StrCat("job store ", path_, ": an assignment does not parse"));
      state.assignments.push_back(std::move(a));
    }
  }
  return state;
}

absl::Status SqliteJobStore::ApplyBatch(const std::vector<const StoreMutation*>& batch) {
  bool any = false;
  for (const StoreMutation* m : batch) any |= !m->empty();
  if (!any) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Exec("BEGIN IMMEDIATE;"); !s.ok()) return s;
  auto rollback = [&](absl::Status error) {
    Exec("ROLLBACK;").IgnoreError();
    return error;
  };
  // Prepared once for the whole batch; each mutation's changes in the order
  // Apply has always written them (a mutation after another sees its rows).
  Statement job_st(db_, "INSERT INTO jobs (id, created, data) VALUES (?1, ?2, ?3) "
                        "ON CONFLICT(id) DO UPDATE SET data = excluded.data");
  if (!job_st.ok()) return rollback(Error("preparing a job write"));
  Statement event_st(db_, "INSERT INTO events (job_id, seq, data) VALUES (?1, ?2, ?3)");
  if (!event_st.ok()) return rollback(Error("preparing an event write"));
  Statement worker_st(db_, "INSERT OR REPLACE INTO workers (id, data) VALUES (?1, ?2)");
  if (!worker_st.ok()) return rollback(Error("preparing a worker write"));
  Statement worker_del(db_, "DELETE FROM workers WHERE id = ?1");
  if (!worker_del.ok()) return rollback(Error("preparing a worker delete"));
  Statement asg_st(db_, "INSERT OR REPLACE INTO assignments (id, worker_id, state, stop_requested, data) "
                        "VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!asg_st.ok()) return rollback(Error("preparing an assignment write"));
  Statement asg_del(db_, "DELETE FROM assignments WHERE id = ?1");
  if (!asg_del.ok()) return rollback(Error("preparing an assignment delete"));
  for (const StoreMutation* m : batch) {
    for (const v1::Job& job : m->jobs) {
      job_st.Text(1, job.id());
      job_st.Int(2, job.create_time().seconds() * 1000000000LL + job.create_time().nanos());
      job_st.Blob(3, job.SerializeAsString());
      if (job_st.Step() != SQLITE_DONE) return rollback(Error("writing job " + job.id()));
      job_st.Reset();
    }
    for (const v1::JobEvent& e : m->events) {
      event_st.Text(1, e.job_id());
      event_st.Int(2, e.seq());
      event_st.Blob(3, e.SerializeAsString());
      if (event_st.Step() != SQLITE_DONE) {
        return rollback(Error(absl::StrCat("writing event ", e.seq(), " of job ", e.job_id())));
      }
      event_st.Reset();
    }
    for (const StoredWorker& w : m->workers) {
      worker_st.Text(1, w.id);
      worker_st.Blob(2, w.registration.SerializeAsString());
      if (worker_st.Step() != SQLITE_DONE) return rollback(Error("writing worker " + w.id));
      worker_st.Reset();
    }
    for (const std::string& id : m->deleted_workers) {
      worker_del.Text(1, id);
      if (worker_del.Step() != SQLITE_DONE) return rollback(Error("deleting worker " + id));
      worker_del.Reset();
    }
    for (const StoredAssignment& a : m->assignments) {
      asg_st.Text(1, a.assignment.id());
      asg_st.Text(2, a.worker_id);
      asg_st.Int(3, static_cast<int>(a.state));
      asg_st.Int(4, a.stop_requested ? 1 : 0);
      asg_st.Blob(5, a.assignment.SerializeAsString());
      if (asg_st.Step() != SQLITE_DONE) return rollback(Error("writing assignment " + a.assignment.id()));
      asg_st.Reset();
    }
    for (const std::string& id : m->deleted_assignments) {
      asg_del.Text(1, id);
      if (asg_del.Step() != SQLITE_DONE) return rollback(Error("deleting assignment " + id));
      asg_del.Reset();
    }
  }
  if (absl::Status s = Exec("COMMIT;"); !s.ok()) return rollback(s);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::JobEvent>> SqliteJobStore::ReadEvents(const std::string& job_id, int64_t after_seq,
                                                                     int limit) {
  std::lock_guard<std::mutex> lock(read_mu_);
  Statement st(read_db_, "SELECT data FROM events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3");
  if (!st.ok()) return Error(read_db_, "reading events");
  st.Text(1, job_id);
  st.Int(2, after_seq);
  st.Int(3, limit);
  std::vector<v1::JobEvent> events;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    v1::JobEvent e;
    if (!e.ParseFromString(st.ColumnBlob(0))) return absl::DataLossError(absl::StrCat("job store ", path_, ": an event of job ", job_id, " does not parse"));
    events.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return Error(read_db_, "reading events of job " + job_id);
  return events;
}

}  // namespace d2lora::server
