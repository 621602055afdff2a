#!/usr/bin/env bash
# A current Docker Engine (Debian sid's docker.io 28.5, API 1.51, with containerd 2.1) as a
# second daemon beside the machine's, for the integration tests (make integration-engine28).
#
#   scripts/engine28.sh start    fetch (once) and start it; prints its DOCKER_HOST
#   scripts/engine28.sh stop     stop it and remove its bridge (its data root and log are kept:
#                                images survive a restart, and a failed run can be looked into)
#   scripts/engine28.sh clean    stop it and remove its bridge, data root (log included) and run
#                                dir: all start made but the cached binaries (what
#                                `make integration-engine28` does after a successful run)
#   scripts/engine28.sh status   exit 0 and print its version if it answers
#   scripts/engine28.sh host     print its DOCKER_HOST (unix:///run/dockscope-engine28/docker.sock)
#   scripts/engine28.sh env      print the integration harness's settings for it, for eval:
#                                DOCKSCOPE_TEST_DOCKER_HOST, _PIDFILE and _CLI (its own docker CLI)
#   scripts/engine28.sh load IMAGE...   copy images from the machine's engine into it
#   scripts/engine28.sh purge    stop it and remove its data root, bridge and cached .debs
#
# Idempotent: start does nothing when it already answers, fetching nothing when the binaries
# are cached. Needs root, Go-free; reaches only Debian's mirror.
#
# Nothing of the machine's setup is touched:
#   - the .debs come through apt-get download with a sources list, lists, cache and dpkg status
#     of its own (under the cache dir); the machine's /etc/apt is only read for its keyring
#     and apt.conf.d (proxy settings), and nothing is installed: dpkg-deb -x unpacks them;
#   - the daemon has its own socket, pid file, data root, exec root (so its own containerd,
#     which dockerd starts under it) and an empty --config-file (the machine's
#     /etc/docker/daemon.json would clash with it, e.g. a second "hosts" or "bridge");
#   - its own bridge, created here (ds28br0, 172.31.250.1/24), with --iptables=false: the
#     machine's docker0 and iptables rules are not its business. Never --bridge none: that
#     makes dockerd delete the default bridge, which is the first daemon's docker0.
#   - storage driver vfs: overlay on overlay is not given everywhere, and the test images are
#     a few MB.
# Facts: sid's dockerd and containerd need glibc 2.34 (bookworm has 2.36) but sid's runc needs
# 2.38, so containers run with bookworm's runc (fetched the same way, ~3 MB); docker-init
# (tini) is not fetched: nothing here runs --init.
set -euo pipefail

ENGINE28_SUITE=${ENGINE28_SUITE:-sid}
# The engine version wanted, a prefix. Empty (the default) takes whatever current Engine
# (27, 28 or 29: the versions users run) the suite has, so that CI keeps running when sid
# moves past 28.5; the version is logged. Anything else fails loudly.
ENGINE28_VERSION=${ENGINE28_VERSION:-}
ENGINE28_MIRROR=${ENGINE28_MIRROR:-http://deb.debian.org/debian}
CACHE=${ENGINE28_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dockscope/engine28}
RUN=${ENGINE28_RUN:-/run/dockscope-engine28}
DATA=${ENGINE28_DATA:-/var/lib/dockscope-engine28}
BRIDGE=${ENGINE28_BRIDGE:-ds28br0}
BRIDGE_CIDR=${ENGINE28_BRIDGE_CIDR:-172.31.250.1/24}
START_TIMEOUT=${ENGINE28_START_TIMEOUT:-120}

SOCK=$RUN/docker.sock
HOST=unix://$SOCK
PIDFILE=$RUN/dockerd.pid
LOG=$DATA/dockerd.log
ROOT=$CACHE/root   # the unpacked .debs
BIN=$CACHE/bin     # what goes first in the daemon's PATH

log() { echo "engine28: $*" >&2; }
die() { log "$*"; exit 1; }

# need_root runs the script again through sudo when not root (as setup.sh does), keeping the
# cache dir this user would use, so that `env` names the same CLI.
need_root() {
	[ "$(id -u)" = 0 ] && return 0
	command -v sudo >/dev/null || die "needs root (it starts dockerd and creates a bridge)"
	exec sudo ENGINE28_CACHE="$CACHE" bash "$0" "${ARGS[@]}"
}

need_tools() {
	local c
	for c in ip setsid nohup timeout; do
		command -v "$c" >/dev/null || die "$c not found (iproute2, util-linux, coreutils)"
	done
}

apt_() {
	local prog=$1
	shift
	# Everything apt keeps goes under $CACHE/apt; APT::Sandbox::User=root because the
	# cache dir may be in root's home, which _apt cannot write.
	"$prog" -q \
		-o Dir::Etc::sourcelist="$CACHE/apt/sources.list" \
		-o Dir::Etc::sourceparts="$CACHE/apt/sources.list.d" \
		-o Dir::Etc::preferences="$CACHE/apt/preferences" \
		-o Dir::Etc::preferencesparts="$CACHE/apt/preferences.d" \
		-o Dir::State::Lists="$CACHE/apt/lists" \
		-o Dir::State::status="$CACHE/apt/status" \
		-o Dir::Cache="$CACHE/apt/cache" \
		-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
		-o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false \
		-o Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false \
		-o Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false \
		-o APT::Sandbox::User=root \
		"$@"
}

# candidate PKG SUITE: the version of PKG in SUITE per the private lists.
candidate() {
	apt_ apt-cache policy "$1" 2>/dev/null | awk -v s="$2" '
		$0 ~ /:\/\// { if (v != "" && $0 ~ (" " s "\\/")) { print v; exit } ; next }
		/^     / { v = ($1 == "***") ? $2 : $1 }'
}

fetch() {
	local stamp=$CACHE/fetched
	if [ -x "$ROOT/usr/sbin/dockerd" ] && [ -x "$BIN/runc" ] && [ -f "$stamp" ]; then
		return 0
	fi
	command -v apt-get >/dev/null || die "apt-get not found: this script fetches Debian's packages"
	command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
	local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	[ -r "$keyring" ] || die "$keyring missing (apt-get install debian-archive-keyring)"
	mkdir -p "$CACHE/apt/sources.list.d" "$CACHE/apt/preferences.d" "$CACHE/apt/lists/partial" \
		"$CACHE/apt/cache/archives/partial"
	: >"$CACHE/apt/status"
	: >"$CACHE/apt/preferences"
	cat >"$CACHE/apt/sources.list" <<EOF
deb [signed-by=$keyring] $ENGINE28_MIRROR $ENGINE28_SUITE main
deb [signed-by=$keyring] $ENGINE28_MIRROR bookworm main
EOF
	log "fetching the package lists of $ENGINE28_SUITE and bookworm (private apt dir $CACHE/apt)"
	apt_ apt-get update >&2 || die "apt-get update of the private lists failed (is $ENGINE28_MIRROR reachable?)"
	local v_docker v_containerd v_cli v_runc
	v_docker=$(candidate docker.io "$ENGINE28_SUITE")
	v_cli=$(candidate docker-cli "$ENGINE28_SUITE")
	v_containerd=$(candidate containerd "$ENGINE28_SUITE")
	v_runc=$(candidate runc bookworm)
	if [ -n "$ENGINE28_VERSION" ]; then
		case $v_docker in
		"$ENGINE28_VERSION"*) ;;
		*) die "$ENGINE28_SUITE has docker.io '$v_docker', not $ENGINE28_VERSION*: set ENGINE28_SUITE/ENGINE28_VERSION" ;;
		esac
	else
		case $v_docker in
		27.* | 28.* | 29.*) ;;
		*) die "$ENGINE28_SUITE has docker.io '$v_docker', not a current Engine (27-29): set ENGINE28_SUITE/ENGINE28_VERSION" ;;
		esac
	fi
	log "$ENGINE28_SUITE has docker.io $v_docker, containerd $v_containerd; runc $v_runc from bookworm"
	[ -n "$v_cli" ] && [ -n "$v_containerd" ] && [ -n "$v_runc" ] ||
		die "missing a package: docker-cli '$v_cli' containerd '$v_containerd' runc(bookworm) '$v_runc'"
	local debs=$CACHE/debs
	rm -rf "$debs" "$ROOT" "$BIN"
	mkdir -p "$debs" "$ROOT" "$BIN"
	log "downloading docker.io $v_docker, docker-cli $v_cli, containerd $v_containerd, runc $v_runc (bookworm)"
	(cd "$debs" && apt_ apt-get download "docker.io=$v_docker" "docker-cli=$v_cli" "containerd=$v_containerd" \
		"runc=$v_runc" >&2) || die "apt-get download failed"
	for f in "$debs"/*.deb; do
		dpkg-deb -x "$f" "$ROOT"
	done
	# Only what the daemon needs goes into its PATH: not the unpacked /usr/bin as a whole.
	local b
	for b in usr/sbin/dockerd usr/sbin/docker-proxy usr/bin/docker usr/bin/containerd \
		usr/bin/containerd-shim-runc-v2 usr/bin/ctr usr/sbin/runc; do
		[ -x "$ROOT/$b" ] || die "$b not in the unpacked packages"
		ln -sf "$ROOT/$b" "$BIN/$(basename "$b")"
	done
	"$BIN/runc" --version >/dev/null || die "bookworm's runc does not run here"
	"$BIN/dockerd" --version >/dev/null || die "sid's dockerd does not run here (glibc too old?)"
	printf 'docker.io=%s docker-cli=%s containerd=%s runc=%s\n' "$v_docker" "$v_cli" "$v_containerd" "$v_runc" >"$stamp"
	# Unpacked, the .debs and the lists (~100 MB) are of no more use: a new fetch updates anyway.
	rm -rf "$debs" "$CACHE/apt/lists" "$CACHE/apt/cache"
	log "cached in $CACHE: $(cat "$stamp")"
}

answers() {
	timeout 10 "$BIN/docker" -H "$HOST" version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null
}

running_pid() {
	local pid
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	# The pid file may be stale and its number reused: check it is our dockerd.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--pidfile $PIDFILE" || return 1
	echo "$pid"
}

bridge() {
	if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
		ip link add "$BRIDGE" type bridge
	fi
	if ! ip -4 addr show dev "$BRIDGE" | grep -q "inet $BRIDGE_CIDR "; then
		ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
	fi
	ip link set "$BRIDGE" up
}

start() {
	need_root
	need_tools
	fetch
	if v=$(answers); then
		log "already running: $v"
		echo "$HOST"
		return 0
	fi
	if pid=$(running_pid); then
		log "dockerd pid $pid runs but does not answer: stopping it first"
		stop
	fi
	bridge
	mkdir -p "$RUN" "$DATA"
	chmod 711 "$RUN"
	if [ "$(stat -c %s "$LOG" 2>/dev/null || echo 0)" -gt $((10 << 20)) ]; then
		mv -f "$LOG" "$LOG.1" # one old log kept: each start appends
	fi
	echo '{}' >"$RUN/daemon.json"
	rm -f "$SOCK"
	log "starting dockerd $("$BIN/dockerd" --version | sed 's/^Docker version //') on $HOST (log: $LOG)"
	# setsid + nohup: the daemon outlives this script and make; PATH puts its own containerd,
	# shim, runc and docker-proxy first.
	PATH="$BIN:$PATH" setsid nohup "$BIN/dockerd" \
		--host "$HOST" \
		--pidfile "$PIDFILE" \
		--data-root "$DATA/data" \
		--exec-root "$RUN/exec" \
		--config-file "$RUN/daemon.json" \
		--bridge "$BRIDGE" \
		--iptables=false --ip6tables=false --ip-masq=false \
		--storage-driver vfs \
		--log-level info \
		>>"$LOG" 2>&1 </dev/null &
	local i=0 t0=$SECONDS
	while ! v=$(answers); do
		i=$((i + 1))
		if [ $((SECONDS - t0)) -ge "$START_TIMEOUT" ]; then
			tail -n 40 "$LOG" >&2 || true
			die "dockerd did not answer on $HOST within ${START_TIMEOUT}s (log above, all of it in $LOG)"
		fi
		if [ "$i" -gt 3 ] && ! kill -0 $! 2>/dev/null; then
			tail -n 40 "$LOG" >&2 || true
			die "dockerd exited (log above, all of it in $LOG)"
		fi
		sleep 1
	done
	log "ready after $((SECONDS - t0))s: $v"
	echo "$HOST"
}

stop() {
	need_root
	local pid
	if ! pid=$(running_pid); then
		ip link del "$BRIDGE" 2>/dev/null || true # left by a daemon that died
		log "not running"
		return 0
	fi
	kill -TERM "$pid"
	local i=0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -ge 60 ]; then
			log "dockerd pid $pid did not stop within 60s: SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 1
	done
	# The bridge goes with the daemon: stopped, the machine is as it was but for the data root
	# (a few MB of test images, kept for the next start) and the cache.
	ip link del "$BRIDGE" 2>/dev/null || true
	log "stopped (pid $pid)"
}

status() {
	if v=$(answers); then
		echo "engine28: running on $HOST: $v (pid $(cat "$PIDFILE" 2>/dev/null))"
		return 0
	fi
	echo "engine28: not running"
	return 1
}

load() {
	answers >/dev/null || die "not running: scripts/engine28.sh start"
	local img
	for img in "$@"; do
		docker save "$img" | "$BIN/docker" -H "$HOST" load -q >&2 || die "copying $img into it"
	done
}

clean() {
	need_root
	stop
	# Mounts a killed daemon left (container shm, netns files) would make rm fail.
	awk -v d="$DATA/" -v r="$RUN/" 'index($5, d) == 1 || index($5, r) == 1 {print $5}' /proc/self/mountinfo |
		sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$DATA" "$RUN"
	log "removed its data root $DATA and run dir $RUN (cached binaries kept in $CACHE)"
}

purge() {
	need_root
	stop
	rm -rf "$DATA" "$RUN" "$CACHE"
	ip link del "$BRIDGE" 2>/dev/null || true
	log "purged"
}

ARGS=("$@")
case ${1:-} in
start) start ;;
stop) stop ;;
clean) clean ;;
status) status ;;
host) echo "$HOST" ;;
env)
	printf 'export DOCKSCOPE_TEST_DOCKER_HOST=%q DOCKSCOPE_TEST_DOCKER_PIDFILE=%q DOCKSCOPE_TEST_DOCKER_CLI=%q\n' \
		"$HOST" "$PIDFILE" "$BIN/docker"
	;;
load) shift; load "$@" ;;
purge) purge ;;
fetch) fetch ;;
*) echo "usage: $0 start|stop|clean|status|host|env|load IMAGE...|purge|fetch" >&2; exit 2 ;;
esac
