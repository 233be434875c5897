// JobService over gRPC: checks the token and its role (TokenAuth), the
// request's sizes and the spec's paths against the allowed roots, calls the
// coordinator and the artifact store, maps the Status (rpc::ToGrpcStatus).
#pragma once

#include "d2lora/v1/job_service.grpc.pb.h"
#include "common/path_roots.h"
#include "server/artifact_store.h"
#include "server/auth.h"
#include "server/coordinator.h"

namespace d2lora::server {

class JobServiceImpl final : public v1::JobService::Service {
 public:
  // `roots`: where spec paths may point (PathRoots::Check); must outlive this.
  JobServiceImpl(Coordinator* coordinator, ArtifactStore* artifacts, const TokenAuth* auth, const PathRoots* roots)
      : coordinator_(coordinator), artifacts_(artifacts), auth_(auth), roots_(roots) {}

  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request, v1::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request, v1::Job* response) override;
  grpc::Status PauseJob(grpc::ServerContext* context, const v1::PauseJobRequest* request, v1::Job* response) override;
  grpc::Status ResumeJob(grpc::ServerContext* context, const v1::ResumeJobRequest* request, v1::Job* response) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override;
  grpc::Status ListArtifacts(grpc::ServerContext* context, const v1::ListArtifactsRequest* request,
                             v1::ListArtifactsResponse* response) override;
  grpc::Status ListCheckpoints(grpc::ServerContext* context, const v1::ListCheckpointsRequest* request,
                               v1::ListCheckpointsResponse* response) override;
  grpc::Status DownloadArtifact(grpc::ServerContext* context, const v1::DownloadArtifactRequest* request,
                                grpc::ServerWriter<v1::FileChunk>* writer) override;
  grpc::Status UploadFile(grpc::ServerContext* context, grpc::ServerReader<v1::UploadFileRequest>* reader,
                          v1::UploadFileResponse* response) override;

 private:
  Coordinator* coordinator_;
  ArtifactStore* artifacts_;
  const TokenAuth* auth_;
  const PathRoots* roots_;
};

}  // namespace d2lora::server
