#!/usr/bin/env bash
# Builds the service's image from the unchanged Dockerfile with podman, after making (or reusing)
# the base image it pins. Usage: scripts/container/build-image.sh [image name, default localhost/backend:ci]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/container/lib.sh
. scripts/container/lib.sh
image=${1:-localhost/backend:ci}

scripts/container/base-image.sh

# Where this machine reaches the npm registry through a TLS-inspecting proxy, its CA bundle
# (NODE_EXTRA_CA_CERTS, as for the host's npm) is lent to the build's RUN steps, with an npmrc
# naming it: mounted for the build only, never part of an image layer.
mounts=()
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ca=${NODE_EXTRA_CA_CERTS:-}
if [ -n "$ca" ] && [ -r "$ca" ]; then
  printf 'cafile=/run/build-ca.pem\n' >"$work/npmrc"
  mounts+=(--volume "$ca:/run/build-ca.pem:ro" --volume "$work/npmrc:/usr/local/etc/npmrc:ro")
  echo "build: npm trusts $ca as well"
fi

previous=$(podman_ image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
started=$SECONDS
# --pull=never: the base is the local one (there is no registry to ask); chroot isolation and the
# host network because this machine has neither nested user namespaces nor a CNI bridge for builds.
timeout 900 "${PODMAN[@]}" build --pull=never --network host --isolation chroot \
  --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 "${mounts[@]}" \
  --tag "$image" --file Dockerfile . >/tmp/backend-image-build.log 2>&1 || {
  tail -n 40 /tmp/backend-image-build.log >&2
  echo "error: podman build failed (full log: /tmp/backend-image-build.log)" >&2
  exit 1
}
# vfs keeps a full copy per layer: the image this build replaced goes (its cached layers that the
# new one shares stay).
current=$(podman_ image inspect --format '{{.Id}}' "$image")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  podman_ rmi "$previous" >/dev/null 2>&1 || true
fi
size=$(podman_ image inspect --format '{{.Size}}' "$image")
echo "image $image built in $((SECONDS - started)) s ($((size / 1000000)) MB)"
