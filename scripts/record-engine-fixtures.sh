#!/usr/bin/env bash
# Records an Engine's API responses as unit-test fixtures (collector/testdata/engine-*):
# stats (one-shot and two-sample), inspect (healthy, exited 3), the container list, the
# events stream, and the log stream's framing (multiplexed and TTY), with the response
# headers of the logs. Uses only the workload image the integration tests build
# (dockscope-workload:test): nothing is pulled.
#
#   scripts/record-engine-fixtures.sh unix:///run/dockscope-engine28/docker.sock collector/testdata/engine-28.5-cgroupv1
#
# Needs curl and python3 (to pretty-print JSON as the older fixtures are). The containers it
# makes are named fx-* with the label dockscope.fixture=1 and are removed at the end.
set -euo pipefail
HOST=${1:?usage: $0 DOCKER_HOST OUTDIR}
OUT=${2:?usage: $0 DOCKER_HOST OUTDIR}
SOCK=${HOST#unix://}
IMAGE=${IMAGE:?set IMAGE to an image with the test workload (the harness builds dockscope-workload:test-<run>; run with DOCKSCOPE_TEST_KEEP=1 to keep it)}
mkdir -p "$OUT"

d() { docker -H "$HOST" "$@"; }
api() { curl -sS --fail --unix-socket "$SOCK" "http://docker/v$VERSION$1"; }
pretty() { python3 -c 'import json,sys; json.dump(json.load(sys.stdin), sys.stdout, indent=4); print()'; }

VERSION=$(d version --format '{{.Server.APIVersion}}')
d image inspect "$IMAGE" >/dev/null || { echo "no $IMAGE in $HOST: run an integration test against it first" >&2; exit 1; }
cleanup() {
	d rm -f fx-hc fx-exit fx-log fx-tty >/dev/null 2>&1 || true
	d image rm fx-health:record >/dev/null 2>&1 || true
	[ -z "${ctx:-}" ] || rm -rf "$ctx"
}
trap cleanup EXIT
cleanup

# A scratch image has no shell for --health-cmd: the check is in exec form.
ctx=$(mktemp -d)
printf 'FROM %s\nHEALTHCHECK --interval=1s --timeout=2s CMD ["/workload","probe","-file","/workload"]\n' "$IMAGE" >"$ctx/Dockerfile"
d build -q -t fx-health:record "$ctx" >/dev/null 2>&1

since=$(date +%s)
# The same shapes as the 20.10 fixtures: limits, a health check, Compose labels.
d run -d --name fx-hc --label dockscope.fixture=1 \
	--label com.docker.compose.project=demo --label com.docker.compose.service=web \
	--memory 64m --cpus 0.5 \
	fx-health:record log -lines 3 -then sleep >/dev/null
d run -d --name fx-exit --label dockscope.fixture=1 "$IMAGE" exit -code 3 >/dev/null
# stdout and stderr interleaved, one line with no final newline, one invalid UTF-8.
d run -d --name fx-log --label dockscope.fixture=1 "$IMAGE" \
	log -lines 6 -stderr-every 2 -binary-every 5 -no-final-newline -then exit >/dev/null
d run -d -t --name fx-tty --label dockscope.fixture=1 "$IMAGE" log -lines 3 -then exit >/dev/null

for i in $(seq 1 30); do
	[ "$(d inspect -f '{{.State.Health.Status}}' fx-hc)" = healthy ] && break
	sleep 1
done
sleep 2 # a few health checks (exec_* events), the short-lived ones exited
d restart -t 1 fx-hc >/dev/null
for i in $(seq 1 30); do
	[ "$(d inspect -f '{{.State.Health.Status}}' fx-hc)" = healthy ] && break
	sleep 1
done

api "/containers/fx-hc/stats?stream=false&one-shot=true" | pretty >"$OUT/stats-oneshot.json"
api "/containers/fx-hc/stats?stream=false" | pretty >"$OUT/stats-twosample.json"
api "/containers/fx-hc/json" | pretty >"$OUT/inspect-healthy.json"
api "/containers/fx-exit/json" | pretty >"$OUT/inspect-exited-3.json"
api '/containers/json?all=1&filters=%7B%22label%22%3A%5B%22dockscope.fixture%3D1%22%5D%7D' | pretty >"$OUT/list.json"
until=$(date +%s)
api "/events?since=$since&until=$until&filters=%7B%22type%22%3A%5B%22container%22%5D%2C%22label%22%3A%5B%22dockscope.fixture%3D1%22%5D%7D" >"$OUT/events.jsonl"
for c in fx-log fx-tty; do
	curl -sS --fail --unix-socket "$SOCK" -D "$OUT/logs-${c#fx-}.headers" -o "$OUT/logs-${c#fx-}.bin" \
		"http://docker/v$VERSION/containers/$c/logs?stdout=1&stderr=1&timestamps=1"
	# Date and the like change on every run; keep what says how to read the body.
	grep -iE '^(HTTP|Content-Type|Api-Version|Docker-Experimental|Ostype)' "$OUT/logs-${c#fx-}.headers" |
		tr -d '\r' >"$OUT/logs-${c#fx-}.headers.tmp"
	mv "$OUT/logs-${c#fx-}.headers.tmp" "$OUT/logs-${c#fx-}.headers"
done
d version --format '{{json .Server}}' | pretty >"$OUT/engine-version.json"
echo "recorded $(ls "$OUT" | wc -l) files from $HOST (API $VERSION) into $OUT" >&2
