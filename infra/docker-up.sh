#!/usr/bin/env bash
# Starts a Docker engine for the docker provider and its tests unless one already answers
# (`docker info`, which honours DOCKER_HOST). Runs dockerd as root with no iptables, no
# bridge (containers use `--network none`) and the vfs storage driver, which works on any
# filesystem, inside containers too. Logs to /tmp/berth-dockerd.log. Idempotent.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "docker-up: no Docker engine answers and starting dockerd needs root" >&2
  exit 1
fi

log=/tmp/berth-dockerd.log
# setsid: dockerd outlives this script and the shell (or CI step) that ran it.
setsid dockerd --iptables=false --bridge=none --storage-driver=vfs >>"$log" 2>&1 </dev/null &

for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    echo "docker-up: dockerd $(docker version --format '{{.Server.Version}}') is up (log: $log)"
    exit 0
  fi
  if ! kill -0 $! 2>/dev/null; then
    echo "docker-up: dockerd exited; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "docker-up: dockerd did not answer within 60 s; last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
