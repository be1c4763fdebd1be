#!/usr/bin/env bash
# Builds berth/busybox:test, the image the docker provider's tests run: FROM scratch with
# Debian's static busybox as /bin/busybox and every applet (sh, sleep, echo, cat, …) linked
# to it, so no registry is needed. Its command runs until SIGTERM and then exits at once.
# Needs busybox-static and a running engine (infra/docker-up.sh). Idempotent.
set -euo pipefail

image=berth/busybox:test
if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir "$context/bin"
cp /bin/busybox "$context/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$context/bin/$applet"
done
cat >"$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY bin /bin
LABEL org.opencontainers.image.description="berth docker provider test image (busybox)"
# `sleep & wait` so SIGTERM interrupts the wait and the trap exits immediately.
CMD ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 1 & wait $!; done"]
DOCKERFILE

# The legacy builder: it needs neither buildx nor a network.
if ! output=$(DOCKER_BUILDKIT=0 docker build --quiet --tag "$image" "$context" 2>&1); then
  echo "$output" >&2
  exit 1
fi
docker run --rm --network none "$image" echo "built $image"
