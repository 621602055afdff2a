#!/usr/bin/env bash
# Rootless Docker (dockerd-rootless.sh under rootlesskit, slirp4netns networking) run by an
# unprivileged user, for the integration tests (make integration-rootless).
#
#   scripts/rootless.sh start    install what is missing, create the user, start its daemon;
#                                prints its DOCKER_HOST
#   scripts/rootless.sh stop     stop the daemon (the user, its data root and the packages stay)
#   scripts/rootless.sh clean    stop the daemon and remove its data root, runtime dir and
#                                /var/lib/dockscope-rootless, and the user (with its home and
#                                subuid/subgid ranges) if start created it; the packages stay
#                                (what `make integration-rootless` does after a successful run)
#   scripts/rootless.sh status   exit 0 and print its version if it answers
#   scripts/rootless.sh host     print its DOCKER_HOST (unix:///run/user/<uid>/docker.sock)
#   scripts/rootless.sh env      print the integration harness's settings for it, for eval:
#                                DOCKSCOPE_TEST_DOCKER_HOST, _CLI and DOCKSCOPE_TEST_ROOTLESS_UID
#   scripts/rootless.sh load IMAGE...   copy images from the machine's engine into it
#
# Idempotent: start does nothing when the daemon already answers.
#
# Which Engine: ROOTLESS_ENGINE=28 (the default) runs Debian sid's dockerd 28.5 and its own
# dockerd-rootless.sh from scripts/engine28.sh's cache (fetched there if missing): rootless
# Docker is what people set up on current Engines (docker-ce-rootless-extras), and 20.10 is
# end of life. ROOTLESS_ENGINE=system runs the machine's docker.io 20.10 with the
# dockerd-rootless.sh it ships (/usr/share/docker.io/contrib). Both use bookworm's rootlesskit
# 1.1, slirp4netns 1.2 and uidmap (newuidmap/newgidmap), installed here from the machine's own
# apt sources (--no-install-recommends) when missing; the apt configuration is not changed.
#
# What it changes on the machine, and why:
#   - the user dockscope-rootless (ROOTLESS_USER), with a /etc/subuid and /etc/subgid range
#     (useradd gives one; usermod --add-subuids otherwise);
#   - /run/user/<uid> (its XDG_RUNTIME_DIR, what logind would make), mode 0700;
#   - /dev/net/tun made 0666 if it is not (the kernel's tun driver and udev make it 0666 on a
#     stock Debian host; some sandboxes create it 0600, and slirp4netns, run by the user, must
#     open it). The mode found is restored by stop.
#   - /var/lib/dockscope-rootless: the 28.5 binaries linked out of root's cache (which the user
#     cannot enter) and the daemon's log.
# The daemon's data root is the user's (~/.local/share/docker-<engine>); storage driver vfs
# (no fuse-overlayfs, no overlay in a user namespace needed; the test images are a few MB).
# On a cgroup v1 host rootless Docker has no cgroups at all (docker info: Cgroup Driver none):
# containers stay in the cgroup of the daemon's login, no limits apply, and the Engine's stats
# are that cgroup's, not the container's.
set -euo pipefail

ROOTLESS_USER=${ROOTLESS_USER:-dockscope-rootless}
ROOTLESS_ENGINE=${ROOTLESS_ENGINE:-28}
LIB=${ROOTLESS_LIB:-/var/lib/dockscope-rootless}
START_TIMEOUT=${ROOTLESS_START_TIMEOUT:-120}
HERE=$(cd "$(dirname "$0")" && pwd)
ENGINE28_CACHE=${ENGINE28_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dockscope/engine28}

log() { echo "rootless: $*" >&2; }
die() { log "$*"; exit 1; }

need_root() {
	[ "$(id -u)" = 0 ] && return 0
	command -v sudo >/dev/null || die "needs root (it installs packages, creates a user and starts its daemon)"
	exec sudo ROOTLESS_USER="$ROOTLESS_USER" ROOTLESS_ENGINE="$ROOTLESS_ENGINE" ENGINE28_CACHE="$ENGINE28_CACHE" bash "$0" "${ARGS[@]}"
}

uid_() { id -u "$ROOTLESS_USER" 2>/dev/null; }

# Known without root: the `env` and `host` answers.
user_uid() {
	local u
	u=$(uid_) || die "no user $ROOTLESS_USER: scripts/rootless.sh start"
	echo "$u"
}
runtime_dir() { echo "/run/user/$(user_uid)"; }
host_() { echo "unix://$(runtime_dir)/docker.sock"; }

# The engine's binaries: BINDIR goes first in the daemon's PATH and holds dockerd-rootless.sh.
bindir() {
	case $ROOTLESS_ENGINE in
	28) echo "$LIB/engine28" ;;
	system) echo /usr/share/docker.io/contrib ;;
	*) die "ROOTLESS_ENGINE=$ROOTLESS_ENGINE: 28 or system" ;;
	esac
}
dockerd_bin() {
	case $ROOTLESS_ENGINE in
	28) echo "$LIB/engine28/dockerd" ;;
	*) echo /usr/sbin/dockerd ;;
	esac
}
cli() {
	case $ROOTLESS_ENGINE in
	28) echo "$LIB/engine28/docker" ;;
	*) command -v docker ;;
	esac
}

answers() {
	timeout 10 "$(cli)" -H "$(host_)" version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null
}

install_packages() {
	local missing=() p
	for p in rootlesskit slirp4netns uidmap; do
		dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} = 0 ] && return 0
	log "installing ${missing[*]} from the machine's apt sources"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
		{ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; } ||
		die "apt-get install ${missing[*]} failed"
}

make_user() {
	if ! uid_ >/dev/null; then
		log "creating user $ROOTLESS_USER"
		useradd --create-home --shell /usr/sbin/nologin --comment "dockscope rootless Docker tests" "$ROOTLESS_USER"
		mkdir -p "$LIB"
		touch "$LIB/created-user" # clean removes it again
	fi
	local f
	for f in /etc/subuid /etc/subgid; do
		if ! grep -q "^$ROOTLESS_USER:" "$f" 2>/dev/null; then
			# A range no other entry uses: above the highest one there.
			local start
			start=$(awk -F: '{e=$2+$3; if (e>m) m=e} END {print (m>100000 ? m : 100000)}' "$f" 2>/dev/null || echo 100000)
			log "adding $ROOTLESS_USER:$start:65536 to $f"
			if [ "$f" = /etc/subuid ]; then
				usermod --add-subuids "$start-$((start + 65535))" "$ROOTLESS_USER"
			else
				usermod --add-subgids "$start-$((start + 65535))" "$ROOTLESS_USER"
			fi
		fi
	done
	local run
	run=$(runtime_dir)
	mkdir -p "$run"
	chown "$ROOTLESS_USER:" "$run"
	chmod 700 "$run"
}

tun() {
	[ -c /dev/net/tun ] || die "/dev/net/tun missing: slirp4netns needs it (modprobe tun)"
	local mode
	mode=$(stat -c %a /dev/net/tun)
	if [ "$mode" != 666 ]; then
		mkdir -p "$LIB"
		[ -f "$LIB/tun-mode" ] || echo "$mode" >"$LIB/tun-mode"
		log "/dev/net/tun is $mode: making it 666 as on a stock host (restored by stop)"
		chmod 666 /dev/net/tun
	fi
}

engine_bins() {
	[ "$ROOTLESS_ENGINE" = 28 ] || {
		[ -x /usr/share/docker.io/contrib/dockerd-rootless.sh ] || die "docker.io's dockerd-rootless.sh missing"
		return 0
	}
	ENGINE28_CACHE="$ENGINE28_CACHE" bash "$HERE/engine28.sh" fetch
	local root=$ENGINE28_CACHE/root dst=$LIB/engine28 b
	if cmp -s "$ENGINE28_CACHE/fetched" "$dst/fetched" 2>/dev/null; then
		return 0
	fi
	rm -rf "$dst"
	mkdir -p "$dst"
	chmod 755 "$LIB" "$dst"
	# Root's cache is private (/root is 0700): the user's daemon gets links (or copies) here.
	for b in usr/sbin/dockerd usr/sbin/docker-proxy usr/bin/docker usr/bin/containerd \
		usr/bin/containerd-shim-runc-v2 usr/bin/ctr usr/share/docker.io/contrib/dockerd-rootless.sh; do
		ln -f "$root/$b" "$dst/" 2>/dev/null || cp -p "$root/$b" "$dst/"
	done
	# engine28.sh's runc is bookworm's (sid's needs glibc 2.38).
	ln -f "$(readlink -f "$ENGINE28_CACHE/bin/runc")" "$dst/runc" 2>/dev/null || cp -p "$(readlink -f "$ENGINE28_CACHE/bin/runc")" "$dst/runc"
	cp "$ENGINE28_CACHE/fetched" "$dst/fetched"
	log "engine 28 binaries in $dst: $(cat "$dst/fetched")"
}

# session_pid: the pid of the runuser session this script started (rootlesskit's parent; it
# ends with it), if it still runs.
session_pid() {
	local pid
	pid=$(cat "$LIB/session.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q dockerd-rootless.sh || return 1
	echo "$pid"
}

# dockerd_pid: the user's dockerd, from its pid file (rootlesskit makes no pid namespace, so
# the number is the host's), checked to be a dockerd of that user.
dockerd_pid() {
	local pid
	pid=$(cat "$(runtime_dir)/docker.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	[ "$(stat -c %u "/proc/$pid")" = "$(user_uid)" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q '^dockerd ' || return 1
	echo "$pid"
}

start() {
	need_root
	command -v runuser >/dev/null || die "runuser not found (util-linux)"
	install_packages
	make_user
	tun
	engine_bins
	if v=$(answers); then
		log "already running: $v on $(host_)"
		host_
		return 0
	fi
	if session_pid >/dev/null || dockerd_pid >/dev/null; then
		log "rootlesskit runs but its daemon does not answer: stopping it first"
		stop_daemon
	fi
	local uid home run bin data logf
	uid=$(user_uid)
	home=$(getent passwd "$ROOTLESS_USER" | cut -d: -f6)
	run=$(runtime_dir)
	bin=$(bindir)
	data=$home/.local/share/docker-$ROOTLESS_ENGINE
	logf=$LIB/dockerd.log
	mkdir -p "$LIB"
	if [ "$(stat -c %s "$logf" 2>/dev/null || echo 0)" -gt $((10 << 20)) ]; then
		mv -f "$logf" "$logf.1"
	fi
	rm -f "$run/docker.sock"
	log "starting rootless dockerd ($("$(dockerd_bin)" --version | sed 's/^Docker version //')) as $ROOTLESS_USER (uid $uid) on unix://$run/docker.sock (log: $logf)"
	# env -i: the daemon sees the user's environment, not root's (no DOCKER_HOST, no sudo
	# variables); PATH puts the engine's own containerd, runc and rootless script first.
	# setsid: it outlives this script and make. $! is runuser's, which waits for rootlesskit
	# (dockerd-rootless.sh execs it), which waits for dockerd.
	cd /
	runuser -u "$ROOTLESS_USER" -- env -i HOME="$home" USER="$ROOTLESS_USER" LOGNAME="$ROOTLESS_USER" \
		XDG_RUNTIME_DIR="$run" PATH="$bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
		setsid nohup "$bin/dockerd-rootless.sh" \
		--data-root "$data" \
		--storage-driver vfs \
		--log-level info \
		>>"$logf" 2>&1 </dev/null &
	echo $! >"$LIB/session.pid"
	local t0=$SECONDS i=0
	while ! v=$(answers); do
		i=$((i + 1))
		if [ $((SECONDS - t0)) -ge "$START_TIMEOUT" ]; then
			grep -v '^+ ' "$logf" | tail -n 40 >&2 || true
			die "rootless dockerd did not answer within ${START_TIMEOUT}s (log above, all of it in $logf)"
		fi
		if [ "$i" -gt 3 ] && ! kill -0 "$(cat "$LIB/session.pid")" 2>/dev/null; then
			grep -v '^+ ' "$logf" | tail -n 40 >&2 || true
			die "rootless dockerd exited (log above, all of it in $logf)"
		fi
		sleep 1
	done
	log "ready after $((SECONDS - t0))s: $v"
	host_
}

stop_daemon() {
	local spid dpid
	spid=$(session_pid) || spid=
	dpid=$(dockerd_pid) || dpid=
	if [ -z "$spid" ] && [ -z "$dpid" ]; then
		log "not running"
		return 0
	fi
	# TERM to dockerd lets it stop its containers; rootlesskit, then runuser, exit with it.
	kill -TERM "${dpid:-$spid}"
	local i=0 p
	for p in $dpid $spid; do
		while kill -0 "$p" 2>/dev/null; do
			i=$((i + 1))
			if [ "$i" -ge 60 ]; then
				log "pid $p did not stop within 60s: SIGKILL"
				kill -KILL "$p" 2>/dev/null || true
				break
			fi
			sleep 1
		done
	done
	rm -f "$LIB/session.pid"
	log "stopped (dockerd pid ${dpid:-?}, session pid ${spid:-?})"
}

stop() {
	need_root
	stop_daemon
	if [ -f "$LIB/tun-mode" ]; then
		chmod "$(cat "$LIB/tun-mode")" /dev/net/tun && rm -f "$LIB/tun-mode"
	fi
}

clean() {
	need_root
	stop
	uid_ >/dev/null || { rm -rf "$LIB"; log "no user $ROOTLESS_USER: removed $LIB"; return 0; }
	local home run
	home=$(getent passwd "$ROOTLESS_USER" | cut -d: -f6)
	run=$(runtime_dir)
	# Mounts a killed daemon left in the user's dirs would make rm fail.
	awk -v h="$home/" -v r="$run/" 'index($5, h) == 1 || index($5, r) == 1 {print $5}' /proc/self/mountinfo |
		sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$home"/.local/share/docker-* "$run"
	if [ -f "$LIB/created-user" ]; then
		# userdel also drops its /etc/subuid and /etc/subgid ranges.
		userdel --remove "$ROOTLESS_USER" 2>/dev/null || userdel "$ROOTLESS_USER"
		log "removed the user $ROOTLESS_USER, its home and subordinate ids"
	fi
	rm -rf "$LIB"
	log "removed its data root, $run and $LIB (installed packages stay: rootlesskit slirp4netns uidmap)"
}

status() {
	if v=$(answers); then
		echo "rootless: running on $(host_): $v (dockerd pid $(dockerd_pid || echo ?))"
		return 0
	fi
	echo "rootless: not running"
	return 1
}

load() {
	answers >/dev/null || die "not running: scripts/rootless.sh start"
	local img
	for img in "$@"; do
		docker save "$img" | "$(cli)" -H "$(host_)" load -q >&2 || die "copying $img into it"
	done
}

ARGS=("$@")
case ${1:-} in
start) start ;;
stop) stop ;;
clean) clean ;;
status) status ;;
host) host_ ;;
env)
	printf 'export DOCKSCOPE_TEST_DOCKER_HOST=%q DOCKSCOPE_TEST_DOCKER_CLI=%q DOCKSCOPE_TEST_ROOTLESS_UID=%q\n' \
		"$(host_)" "$(cli)" "$(user_uid)"
	;;
load) shift; load "$@" ;;
*) echo "usage: $0 start|stop|clean|status|host|env|load IMAGE..." >&2; exit 2 ;;
esac
