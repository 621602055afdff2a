#!/usr/bin/env bash
# Podman's Docker-compatible API (`podman system service`) beside the machine's Docker Engine,
# for the integration tests (make integration-podman).
#
#   scripts/podman.sh start    install podman (once) and start the service; prints its DOCKER_HOST
#   scripts/podman.sh stop     stop it and remove its bridge (its storage is kept: images
#                              survive a restart)
#   scripts/podman.sh status   exit 0 and print its version if it answers
#   scripts/podman.sh host     print its DOCKER_HOST (unix:///run/dockscope-podman/podman.sock)
#   scripts/podman.sh env      print the integration harness's settings for it, for eval:
#                              DOCKSCOPE_TEST_DOCKER_HOST, _PIDFILE, _CLI (docker) and _PODMAN_CLI
#   scripts/podman.sh purge    stop it and remove its storage, run dir and bridge (what
#                              make integration-podman does after a run that passed)
#
# Idempotent: start does nothing when the service already answers. Needs root.
#
# What it touches of the machine:
#   - podman itself (and curl, iproute2), when missing: Debian's own packages (bookworm's
#     podman: 4.3) from the machine's configured sources with --no-install-recommends; apt's
#     configuration is not changed. They stay installed, as setup.sh's Docker does.
#   - nothing else: the service runs with a containers.conf, storage.conf and CNI network
#     directory of its own (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF), its own storage root,
#     run root, tmp dir, event log and socket, and its default network is a bridge of its own
#     (dspod0, 172.31.251.0/24, no masquerade, no firewall rules): docker0 and engine28's
#     ds28br0 are not its business.
# Facts seen on this machine (Debian 12, cgroup v1, no systemd as init):
#   - podman's default ulimits (RLIMIT_NOFILE/NPROC 1048576) exceed the sandbox's hard limits,
#     so every container failed with "error setting rlimit type 7/6": default_ulimits = [].
#   - no systemd: cgroup_manager cgroupfs (containers go to /libpod_parent/libpod-<id>),
#     events_logger file, log_driver k8s-file (journald is not there to read back).
#   - bookworm's podman recommends crun but runs with runc (already here for Docker).
set -euo pipefail

RUN=${PODMAN_RUN:-/run/dockscope-podman}
DATA=${PODMAN_DATA:-/var/lib/dockscope-podman}
BRIDGE=${PODMAN_BRIDGE:-dspod0}
SUBNET=${PODMAN_SUBNET:-172.31.251.0/24}
GATEWAY=${PODMAN_GATEWAY:-172.31.251.1}
STORAGE_DRIVER=${PODMAN_STORAGE_DRIVER:-overlay}
START_TIMEOUT=${PODMAN_START_TIMEOUT:-60}

SOCK=$RUN/podman.sock
HOST=unix://$SOCK
PIDFILE=$RUN/podman.pid
CONF=$RUN/containers.conf
STORAGE_CONF=$RUN/storage.conf
NETDIR=$RUN/cni
LOG=$DATA/podman.log
CLI=$RUN/podman # a wrapper: the podman CLI with this service's configuration

log() { echo "podman.sh: $*" >&2; }
die() { log "$*"; exit 1; }

need_root() {
	[ "$(id -u)" = 0 ] && return 0
	command -v sudo >/dev/null || die "needs root (it starts a container engine)"
	exec sudo bash "$0" "${ARGS[@]}"
}

install() {
	local pkgs=()
	command -v podman >/dev/null || pkgs+=(podman)
	command -v curl >/dev/null || pkgs+=(curl)     # answers(): the service's /version
	command -v ip >/dev/null || pkgs+=(iproute2)   # stop(): its bridge
	if [ ${#pkgs[@]} = 0 ]; then
		return 0
	fi
	command -v apt-get >/dev/null || die "${pkgs[*]} not found and no apt-get to install them"
	log "installing Debian's ${pkgs[*]} (--no-install-recommends) from the machine's apt sources"
	# A fresh machine may have no package lists yet: update them once and retry.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2 ||
		{ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >&2; } ||
		die "apt-get install ${pkgs[*]} failed"
	# The package enables units for systemd; there is no systemd here, and where there is,
	# they listen on /run/podman/podman.sock, not on ours: nothing to undo.
}

runtime() {
	local r
	for r in crun runc; do
		if command -v "$r" >/dev/null; then
			echo "$r"
			return 0
		fi
	done
	die "neither crun nor runc found"
}

configure() {
	mkdir -p "$RUN" "$DATA/storage" "$RUN/storage" "$RUN/tmp" "$NETDIR" "$DATA/volumes"
	chmod 711 "$RUN"
	cat >"$CONF" <<EOF
# Written by scripts/podman.sh: the configuration of dockscope's test Podman service.
[containers]
# Podman's defaults (nofile/nproc 1048576) exceed this sandbox's hard limits.
default_ulimits = []
log_driver = "k8s-file"

[network]
network_backend = "cni"
network_config_dir = "$NETDIR"
default_network = "dspodman"
default_subnet = "$SUBNET"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$DATA/events.log"
runtime = "$(runtime)"
tmp_dir = "$RUN/tmp"
volume_path = "$DATA/volumes"
static_dir = "$DATA/libpod"
EOF
	cat >"$STORAGE_CONF" <<EOF
[storage]
driver = "$STORAGE_DRIVER"
graphroot = "$DATA/storage"
runroot = "$RUN/storage"
EOF
	# The default network as a file of our own, so that its bridge is named: the built-in
	# default would be cni-podman0 with masquerading and firewall rules.
	cat >"$NETDIR/dspodman.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "dspodman",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "routes": [{ "dst": "0.0.0.0/0" }],
        "ranges": [[{ "subnet": "$SUBNET", "gateway": "$GATEWAY" }]]
      }
    }
  ]
}
EOF
	cat >"$CLI" <<EOF
#!/bin/sh
# The podman CLI with the configuration of scripts/podman.sh's service.
export CONTAINERS_CONF="$CONF" CONTAINERS_STORAGE_CONF="$STORAGE_CONF"
exec podman --root "$DATA/storage" --runroot "$RUN/storage" "\$@"
EOF
	chmod 755 "$CLI"
}

answers() {
	timeout 10 curl -fsS --unix-socket "$SOCK" http://d/version 2>/dev/null |
		sed -n 's/.*"Version":"\([^"]*\)".*"ApiVersion":"\([^"]*\)".*/\1 (API \2)/p' | head -n 1 | grep .
}

running_pid() {
	local pid
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$HOST" || return 1
	echo "$pid"
}

start() {
	need_root
	install
	configure
	if v=$(answers); then
		log "already running: podman $v"
		echo "$HOST"
		return 0
	fi
	if pid=$(running_pid); then
		log "podman pid $pid runs but does not answer: stopping it first"
		stop
	fi
	mkdir -p "$DATA"
	if [ "$(stat -c %s "$LOG" 2>/dev/null || echo 0)" -gt $((10 << 20)) ]; then
		mv -f "$LOG" "$LOG.1"
	fi
	rm -f "$SOCK"
	log "starting $(podman --version) service on $HOST (storage $STORAGE_DRIVER in $DATA, log: $LOG)"
	# --time=0: the service never exits for idleness. setsid + nohup: it outlives make.
	# From /: conmon inherits the service's working directory and fails every container
	# start ("Failed to get working directory", "write child: broken pipe") once it is gone,
	# e.g. a worktree the script was started from.
	cd /
	CONTAINERS_CONF=$CONF CONTAINERS_STORAGE_CONF=$STORAGE_CONF setsid nohup \
		podman --root "$DATA/storage" --runroot "$RUN/storage" --log-level info \
		system service --time=0 "$HOST" >>"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	local t0=$SECONDS
	while ! v=$(answers); do
		if [ $((SECONDS - t0)) -ge "$START_TIMEOUT" ]; then
			tail -n 40 "$LOG" >&2 || true
			die "podman did not answer on $HOST within ${START_TIMEOUT}s (log above, all of it in $LOG)"
		fi
		if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
			tail -n 40 "$LOG" >&2 || true
			die "podman system service exited (log above, all of it in $LOG)"
		fi
		sleep 0.5
	done
	log "ready after $((SECONDS - t0))s: podman $v"
	echo "$HOST"
}

stop() {
	need_root
	local pid
	if pid=$(running_pid); then
		kill -TERM "$pid"
		local i=0
		while kill -0 "$pid" 2>/dev/null; do
			i=$((i + 1))
			if [ "$i" -ge 60 ]; then
				log "podman pid $pid did not stop within 30s: SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.5
		done
		log "stopped (pid $pid)"
	else
		log "not running"
	fi
	# Containers outlive the service (conmon holds them); the tests remove theirs, and
	# whatever is left of ours (the test label) goes here, before its bridge.
	if [ -x "$CLI" ]; then
		local ids
		ids=$("$CLI" ps -aq --filter label=dockscope.test=1 2>/dev/null || true)
		if [ -n "$ids" ]; then
			log "removing $(echo "$ids" | wc -w) test container(s) left behind"
			# shellcheck disable=SC2086
			"$CLI" rm -f -v $ids >/dev/null 2>&1 || true
		fi
	fi
	rm -f "$SOCK" "$PIDFILE"
	ip link del "$BRIDGE" 2>/dev/null || true
}

status() {
	if v=$(answers); then
		echo "podman.sh: running on $HOST: podman $v (pid $(cat "$PIDFILE" 2>/dev/null))"
		return 0
	fi
	echo "podman.sh: not running"
	return 1
}

purge() {
	need_root
	stop
	if [ -x "$CLI" ]; then
		"$CLI" system reset -f >/dev/null 2>&1 || true
	fi
	rm -rf "$DATA" "$RUN"
	log "purged"
}

ARGS=("$@")
case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
host) echo "$HOST" ;;
env)
	# The docker CLI speaks to Podman's socket for what the tests do; the podman CLI
	# runs the health checks that Podman leaves to systemd timers (none here).
	printf 'export DOCKSCOPE_TEST_DOCKER_HOST=%q DOCKSCOPE_TEST_DOCKER_PIDFILE=%q DOCKSCOPE_TEST_DOCKER_CLI=%q DOCKSCOPE_TEST_PODMAN_CLI=%q\n' \
		"$HOST" "$PIDFILE" "${PODMAN_DOCKER_CLI:-docker}" "$CLI"
	;;
purge) purge ;;
*) echo "usage: $0 start|stop|status|host|env|purge" >&2; exit 2 ;;
esac
