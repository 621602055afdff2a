#!/bin/sh
# Build the OpenTelemetry Collector used by the integration tests
# (otlp receiver, batch processor, file and debug exporters; see main.go).
#
#   test/otelcol/build.sh OUT       build the binary into OUT
#   test/otelcol/build.sh --cache   build it into the per-user cache unless an
#                                   up-to-date binary is already there, and print
#                                   its path as the last line of stdout
#
# The cache lives in ${DOCKSCOPE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dockscope}/otelcol/KEY/,
# where KEY hashes this directory's sources and the Go version, so a change to
# go.mod or main.go (or a new Go) rebuilds it. A cold build takes a few minutes.
set -eu

dir=$(cd "$(dirname "$0")" && pwd)

build() {
	# GOWORK=off: this is its own module, never part of a workspace with the agent.
	# -mod=readonly: go.mod and go.sum are complete; a build never rewrites them.
	(cd "$dir" && GOWORK=off CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly" \
		go build -trimpath -o "$1" .)
}

if [ $# -ne 1 ]; then
	echo "usage: $0 OUT | --cache" >&2
	exit 2
fi

if [ "$1" != "--cache" ]; then
	case "$1" in
	/*) out=$1 ;;
	*) out=$(pwd)/$1 ;;
	esac
	mkdir -p "$(dirname "$out")"
	build "$out"
	exit 0
fi

key=$(cd "$dir" && {
	cat build.sh go.mod go.sum $(LC_ALL=C ls ./*.go)
	go env GOVERSION GOOS GOARCH
} | sha256sum | cut -c1-16)
root=${DOCKSCOPE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dockscope}/otelcol
bin=$root/$key/otelcol-dockscope
mkdir -p "$root"

locked() {
	if [ ! -x "$bin" ]; then
		echo "building the OpenTelemetry Collector into $bin (takes a few minutes)..." >&2
		mkdir -p "$root/$key"
		start=$(date +%s)
		build "$bin.tmp.$$"
		mv -f "$bin.tmp.$$" "$bin"
		echo "built in $(($(date +%s) - start)) s" >&2
		# Drop binaries built from older sources.
		for d in "$root"/*/; do
			[ "$d" = "$root/$key/" ] || rm -rf "$d"
		done
	fi
}

if [ -x "$bin" ]; then
	:
elif command -v flock >/dev/null 2>&1; then
	# Serialise concurrent builds (several test processes may ask at once).
	exec 9>"$root/.lock"
	flock 9
	locked
	exec 9>&-
else
	locked
fi
echo "$bin"
