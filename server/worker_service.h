// WorkerService over gRPC: the worker daemons' side of the coordinator.
#pragma once

#include "d2lora/v1/worker_service.grpc.pb.h"
#include "server/artifact_store.h"
#include "server/auth.h"
#include "server/coordinator.h"

namespace d2lora::server {

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  WorkerServiceImpl(Coordinator* coordinator, ArtifactStore* artifacts, const TokenAuth* auth)
      : coordinator_(coordinator), artifacts_(artifacts), auth_(auth) {}

  grpc::Status RegisterWorker(grpc::ServerContext* context, const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status LeaseAssignment(grpc::ServerContext* context, const v1::LeaseAssignmentRequest* request,
                               v1::LeaseAssignmentResponse* response) override;
  grpc::Status ReportProgress(grpc::ServerContext* context, const v1::ReportProgressRequest* request,
                              v1::ReportProgressResponse* response) override;
  grpc::Status DownloadInput(grpc::ServerContext* context, const v1::DownloadInputRequest* request,
                             grpc::ServerWriter<v1::FileChunk>* writer) override;
  grpc::Status UploadArtifact(grpc::ServerContext* context, grpc::ServerReader<v1::UploadArtifactRequest>* reader,
                              v1::Artifact* response) override;
  grpc::Status CompleteAssignment(grpc::ServerContext* context, const v1::CompleteAssignmentRequest* request,
                                  v1::CompleteAssignmentResponse* response) override;
  grpc::Status FailAssignment(grpc::ServerContext* context, const v1::FailAssignmentRequest* request,
                              v1::FailAssignmentResponse* response) override;
  grpc::Status LeaveWorker(grpc::ServerContext* context, const v1::LeaveWorkerRequest* request,
                           v1::LeaveWorkerResponse* response) override;

 private:
  Coordinator* coordinator_;
  ArtifactStore* artifacts_;
  const TokenAuth* auth_;
};

}  // namespace d2lora::server
