#!/usr/bin/env bash
# Check the Helm chart in deploy/helm/dockscope, without a cluster:
#
#   1. helm (v3, built from its Go module into the per-user cache the first
#      time: a few minutes; later runs reuse the binary)
#   2. helm lint --strict, with the default values and with
#      test/helm/testdata/all-features.yaml (every optional feature on)
#   3. helm template with both
#   4. the Go test in test/helm (a separate module): it renders the chart,
#      decodes every object strictly into its Kubernetes API type and checks
#      the security settings, probes, volumes, config and Service; the
#      rendered configuration files are validated by the agent built here
#      (--config.check)
#
# Run from anywhere (it moves to the repository root). Needs Go and the Go
# module proxy (for the first build of helm and the test's modules); no
# cluster, no Docker.
#
#   HELM=/path/to/helm             use that helm instead of the cached build
#   DOCKSCOPE_AGENT=/path/to/bin   use that agent binary instead of building one
set -euo pipefail

log() { echo "helm-check: $*" >&2; }

# abs turns a command name or a path relative to the caller's directory into
# an absolute path (the script moves to the repository root, and the test
# runs in test/helm).
abs() {
	case "$1" in
	/*) echo "$1" ;;
	*/*)
		local d
		d="$(cd "$(dirname "$1")" && pwd)" || { log "$1: no such directory"; return 1; }
		echo "$d/$(basename "$1")"
		;;
	*) command -v "$1" || { log "$1: not found"; return 1; } ;;
	esac
}
if [ -n "${HELM:-}" ]; then HELM="$(abs "$HELM")"; fi
if [ -n "${DOCKSCOPE_AGENT:-}" ]; then DOCKSCOPE_AGENT="$(abs "$DOCKSCOPE_AGENT")"; fi

cd "$(dirname "$0")/.."

HELM_MODULE=helm.sh/helm/v3
HELM_VERSION=v3.21.4
CACHE_BIN="${HOME}/.cache/dockscope/bin"
CHART=deploy/helm/dockscope
ALL_FEATURES=test/helm/testdata/all-features.yaml

# cached_helm_ok reports whether $1 runs and was built from the wanted helm
# module version (`helm version` prints only major.minor for a go install
# build, so the module version is read from the binary's build info).
cached_helm_ok() {
	[ -x "$1" ] || return 1
	"$1" version >/dev/null 2>&1 || return 1
	go version -m "$1" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+${HELM_MODULE}[[:space:]]+${HELM_VERSION}([[:space:]]|$)"
}

if [ -z "${HELM:-}" ]; then
	HELM="${CACHE_BIN}/helm"
	if cached_helm_ok "$HELM"; then
		log "helm: cached ${HELM} (${HELM_MODULE}@${HELM_VERSION})"
	else
		log "helm: building ${HELM_MODULE}/cmd/helm@${HELM_VERSION} into ${CACHE_BIN} (takes a few minutes the first time)"
		mkdir -p "$CACHE_BIN"
		GOBIN="$CACHE_BIN" go install "${HELM_MODULE}/cmd/helm@${HELM_VERSION}"
		cached_helm_ok "$HELM" || { log "helm: ${HELM} does not run after the build"; exit 1; }
	fi
fi
"$HELM" version

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Keep helm away from the user's helm configuration, repositories and plugins.
export HELM_CONFIG_HOME="$tmp/helm/config" HELM_CACHE_HOME="$tmp/helm/cache" HELM_DATA_HOME="$tmp/helm/data"

log "helm lint --strict (default values)"
"$HELM" lint --strict "$CHART"
log "helm lint --strict (${ALL_FEATURES})"
"$HELM" lint --strict "$CHART" -f "$ALL_FEATURES"

log "helm template (default values)"
"$HELM" template dockscope "$CHART" --namespace monitoring >"$tmp/default.yaml"
log "helm template (${ALL_FEATURES})"
"$HELM" template dockscope "$CHART" --namespace monitoring -f "$ALL_FEATURES" >"$tmp/all-features.yaml"
for f in default all-features; do
	log "  ${f}: $(grep -c '^kind:' "$tmp/$f.yaml") objects: $(grep '^kind:' "$tmp/$f.yaml" | awk '{print $2}' | sort | tr '\n' ' ')"
done

if [ -z "${DOCKSCOPE_AGENT:-}" ]; then
	log "building the agent to validate the rendered configuration"
	CGO_ENABLED=0 go build -o "$tmp/dockscope" ./cmd/agent
	DOCKSCOPE_AGENT="$tmp/dockscope"
fi

log "test/helm: gofmt, go vet, go test"
(
	cd test/helm
	out="$(gofmt -l .)"
	if [ -n "$out" ]; then
		echo "gofmt needed in test/helm:" >&2
		echo "$out" >&2
		exit 1
	fi
	go vet ./...
	HELM="$HELM" DOCKSCOPE_AGENT="$DOCKSCOPE_AGENT" go test -count=1 -v ./...
)
log "OK"
