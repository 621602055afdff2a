#!/usr/bin/env bash
# Builds the agent image from the static binary, without a registry:
#   scripts/build-image.sh [tag]        (default dockscope:$VERSION)
# Environment: VERSION (default: git describe), REVISION (the commit;
# default: git rev-parse HEAD, empty outside git), DOCKER_GID (the group that
# may read the Docker socket; default: the socket's own group here, else
# 999), UID_OVERRIDE (the agent's uid, default 65532; bash owns $UID),
# GO (default go).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
REVISION=${REVISION-$(git rev-parse HEAD 2>/dev/null || true)}
TAG=${1:-dockscope:${VERSION}}
AGENT_UID=${UID_OVERRIDE:-65532}
if [[ -z "${DOCKER_GID:-}" ]]; then
	DOCKER_GID=$(stat -c %g /var/run/docker.sock 2>/dev/null || echo 999)
fi
CA=/etc/ssl/certs/ca-certificates.crt
if [[ ! -s $CA ]]; then
	echo "build-image: $CA is missing: install Debian's ca-certificates" >&2
	exit 1
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o "$ctx/dockscope" ./cmd/agent
cp deploy/image/Dockerfile "$ctx/"
cp "$CA" "$ctx/ca-certificates.crt"
mkdir "$ctx/state"
printf 'root:x:0:0:root:/:/sbin/nologin\ndockscope:x:%s:%s:dockscope:/var/lib/dockscope:/sbin/nologin\n' "$AGENT_UID" "$DOCKER_GID" >"$ctx/passwd"
printf 'root:x:0:\ndocker:x:%s:dockscope\n' "$DOCKER_GID" >"$ctx/group"

# The classic builder: it needs nothing from a registry for FROM scratch.
DOCKER_BUILDKIT=0 docker build --quiet \
	--build-arg "VERSION=${VERSION}" --build-arg "REVISION=${REVISION}" --build-arg "UID=${AGENT_UID}" --build-arg "DOCKER_GID=${DOCKER_GID}" \
	-t "$TAG" "$ctx" >/dev/null
echo "$TAG"
