#!/bin/bash
# Docker HEALTHCHECK for the d2lora images, with nothing but bash:
#   healthcheck.sh coordinator   the gRPC port accepts connections and /metrics answers
#   healthcheck.sh worker        /metrics answers with d2lora_worker_up 1 (registered)
# Why not a real gRPC health check: grpc_health_probe is not packaged in
# Debian, and the coordinator image has no d2lora CLI (it would bring in
# LibTorch). Kubernetes does check grpc.health.v1 (native grpc probes, see
# deploy/kubernetes). Ports: D2LORA_GRPC_PORT (50051), D2LORA_METRICS_PORT
# (coordinator 9090, worker 9100).
set -u
metrics() {  # the body of GET /metrics on 127.0.0.1:$1
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
  local response
  response=$(cat <&3)
  exec 3<&-
  [[ "$response" == "HTTP/1."?" 200"* ]] || return 1
  printf '%s\n' "$response"
}
case "${1:-}" in
  coordinator)
    (exec 3<>"/dev/tcp/127.0.0.1/${D2LORA_GRPC_PORT:-50051}") 2>/dev/null || { echo "gRPC port closed"; exit 1; }
    metrics "${D2LORA_METRICS_PORT:-9090}" 2>/dev/null | grep -q '^d2lora_queue_depth' || { echo "no /metrics"; exit 1; }
    ;;
  worker)
    metrics "${D2LORA_METRICS_PORT:-9100}" 2>/dev/null | grep -q '^d2lora_worker_up 1' || { echo "not registered"; exit 1; }
    ;;
  *)
    echo "usage: healthcheck.sh coordinator|worker" >&2
    exit 2
    ;;
esac
echo healthy
