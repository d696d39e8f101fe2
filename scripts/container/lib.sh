# shellcheck shell=bash
# What the container scripts share: the podman flags that work on a VM without overlayfs or systemd,
# the tools they need (installed when missing), and the names read from the repository.

# vfs storage (no overlayfs here), runc, cgroupfs (no systemd): the same flags for every call, so
# build, run and inspect all see one image store. `timeout 60 "${PODMAN[@]}" …` where time-bound.
# shellcheck disable=SC2034 # used by the scripts that source this file
PODMAN=(podman --storage-driver vfs --runtime runc --cgroup-manager cgroupfs)
podman_() {
  "${PODMAN[@]}" "$@"
}

# Installs the Debian packages that provide the given commands, when one of them is missing.
need_tools() {
  local missing=()
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "installing ${missing[*]} (apt-get)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: ${missing[*]} missing and this script is not root: apt-get install -y podman runc debootstrap" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -q
  timeout 600 apt-get install -y -q --no-install-recommends podman runc debootstrap
}

# The Node version the project pins (devDependency `node`), which the Dockerfile's base must equal.
pinned_node_version() {
  sed -n 's/^ *"node": *"\([0-9][0-9.]*\)".*/\1/p' package.json | head -n 1
}

# The base image the Dockerfile names in its first FROM, e.g. node:24.21.0-bookworm-slim.
dockerfile_base() {
  sed -n 's/^FROM \([^ ]*\).*/\1/p' Dockerfile | head -n 1
}
