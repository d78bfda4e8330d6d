#!/usr/bin/env bash
# Builds the mqstream container image from this checkout without pulling
# anything: a static binary built with the local Go toolchain, copied into
# an image FROM scratch (see Dockerfile).
#
#   scripts/image.sh             # tags mqstream:dev, and mqstream:<tag> when
#                                # HEAD is a tag and the tree is clean
#
# Environment: IMAGE (repository name, default mqstream), VERSION (default
# from git describe), SOURCE_DATE_EPOCH (build date, default now), GOARCH
# (default the host's; the image is for linux/$GOARCH).
# Prints the tags and the image size; fails above 40 MB (40,000,000 bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

image=${IMAGE:-mqstream}
revision=$(git rev-parse HEAD)
dirty=""
if ! git diff --quiet HEAD -- 2>/dev/null; then dirty="-dirty"; fi
release=""
if [ -z "$dirty" ]; then release=$(git describe --tags --exact-match 2>/dev/null || true); fi
version=${VERSION:-${release:-$(git describe --tags --dirty 2>/dev/null || echo dev)}}
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
else
  created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# The image's directories: /data and /tmp owned by its user (the Dockerfile
# chowns them), /etc with the user's name.
mkdir -p "$ctx/data" "$ctx/tmp" "$ctx/etc"
# Names for the numeric user (ls, ps); HOME is /tmp, so `docker exec ...
# mqstream sql` keeps its history there rather than in the data volume.
echo "mqstream:x:65532:65532:mqstream:/tmp:/sbin/nologin" >"$ctx/etc/passwd"
echo "mqstream:x:65532:" >"$ctx/etc/group"
cp Dockerfile "$ctx/Dockerfile"

echo "image: building mqstream $version ($revision) for linux/${GOARCH:-$(go env GOARCH)}"
CGO_ENABLED=0 GOOS=linux go build -trimpath -o "$ctx/mqstream" -ldflags "-s -w \
  -X github.com/mqstream/mqstream/node.Version=$version \
  -X main.buildCommit=$revision$dirty \
  -X main.buildDate=$created" ./cmd/mqstream

names=("$image:dev")
if [ -n "$release" ] && [ -z "${VERSION:-}" ]; then names+=("$image:$release"); fi
tags=()
for n in "${names[@]}"; do tags+=(-t "$n"); done
# Without the buildx plugin, docker's BuildKit front end is missing; the
# classic builder handles this Dockerfile (COPY and metadata only).
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi
previous=$(docker image inspect -f '{{.Id}}' "$image:dev" 2>/dev/null || true)
if ! docker build -q "${tags[@]}" \
  --build-arg VERSION="$version" --build-arg REVISION="$revision$dirty" --build-arg CREATED="$created" \
  "$ctx" >"$ctx/build.log" 2>&1; then
  cat "$ctx/build.log" >&2
  exit 1
fi

if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$image:dev")" ]; then
  docker rmi "$previous" >/dev/null 2>&1 || true # the build it replaced, unless something still uses it
fi

size=$(docker image inspect -f '{{.Size}}' "$image:dev")
echo "image: ${names[*]}, $(awk -v b="$size" 'BEGIN {printf "%.1f", b / 1e6}') MB ($size bytes)"
docker run --rm "$image:dev" version
if [ "$size" -gt 40000000 ]; then
  echo "image: larger than 40 MB" >&2
  exit 1
fi
