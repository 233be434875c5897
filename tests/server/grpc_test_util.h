// Helpers for tests that talk to an in-process coordinator over real gRPC on
// loopback: a health check and a call to any method by name (so a test can
// walk the service descriptors) without generated stubs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

namespace d2lora::server::testing {

// Calls `method` ("/pkg.Service/Method") with the serialized `request`; unary
// on the wire, which suits every method up to the point where a server-side
// handler checks the caller. `answer` (optional) gets the response bytes.
inline grpc::Status GenericCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                                const std::string& request_bytes, const std::string& token = "",
                                std::string* answer = nullptr) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
    std::lock_guard<std::mutex> lock(mu);
    status = std::move(s);
    done = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  std::vector<grpc::Slice> slices;
  if (answer && status.ok() && response.Dump(&slices).ok()) {
    for (const auto& s : slices) answer->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

// grpc.health.v1.Health/Check answers SERVING (status field 1 = 1: bytes 08 01).
inline bool Serving(const std::shared_ptr<grpc::Channel>& channel) {
  std::string answer;
  return GenericCall(channel, "/grpc.health.v1.Health/Check", "", "", &answer).ok() &&
         answer == std::string("\x08\x01", 2);
}

}  // namespace d2lora::server::testing
