#!/usr/bin/env bash
# Docker Engines as the nodes of a multi-node Swarm on one machine, for
# test/integration/swarm_multinode_test.go (make integration-swarm).
#
#   scripts/swarm-nodes.sh start [N]   start N node daemons (default 2); prints their hosts
#   scripts/swarm-nodes.sh stop        stop them and remove everything start made (also after
#                                      a crash: processes, containers, netns, veths, bridge)
#   scripts/swarm-nodes.sh env         the test's settings, for eval: DOCKSCOPE_SWARM_NODES
#                                      (host=address,... one per node) and DOCKSCOPE_SWARM_CLI
#   scripts/swarm-nodes.sh status      exit 0 when every started node answers
#   scripts/swarm-nodes.sh cli         the docker CLI that goes with the nodes' Engine
#
# Each node is Debian's current Engine (scripts/engine28.sh's cached binaries: 28.5) with
#   - its own network namespace (dsw-nI) joined by a veth pair to a bridge (dswbr0, in a
#     namespace of its own, dsw-sw, which the host reaches as 10.77.0.1 on dsw0): its own
#     address 10.77.0.(10+I), which Swarm advertises and
#     carries its data path (2377, 7946, 4789 VXLAN) over;
#   - its own mount and UTS namespaces: a private tmpfs on /run, so that the node's
#     /var/run/docker.sock -- the path deploy/swarm-stack.yml bind-mounts into the agent -- is
#     this node's daemon and not the machine's, and its own hostname (dsw-nI) as a node name;
#   - iptables on: a daemon inside its own network namespace has its own tables, so the
#     machine's rules are untouched, and overlay networks and host-mode ports work as on a
#     real node. Its docker0 and docker_gwbridge live in its namespace, not the machine's;
#   - its own data root, exec root, pid file, an empty --config-file, storage driver vfs;
#   - its socket on the host's file system (/var/lib/dockscope-swarm/nI/docker.sock), which
#     the host's namespace reaches (a unix socket does not care about network namespaces).
# Needs root (re-runs itself through sudo), iproute2, util-linux (nsenter, unshare).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
E28_CACHE=${ENGINE28_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dockscope/engine28}
BIN=$E28_CACHE/bin
BASE=${SWARM_NODES_DIR:-/var/lib/dockscope-swarm}
PREFIX=dsw
BRIDGE=${PREFIX}br0
SWITCH=$PREFIX-sw
NET=10.77.0
START_TIMEOUT=${SWARM_NODES_START_TIMEOUT:-120}
MAX_NODES=5
STARTED=() # node -> pid of the dockerd this run started

log() { echo "swarm-nodes: $*" >&2; }
die() {
	log "$*"
	exit 1
}

need_root() {
	[ "$(id -u)" = 0 ] && return 0
	command -v sudo >/dev/null || die "needs root (network namespaces, bridges, dockerd)"
	exec sudo ENGINE28_CACHE="$E28_CACHE" SWARM_NODES_DIR="$BASE" bash "$0" "${ARGS[@]}"
}

ns() { echo "$PREFIX-n$1"; }
addr() { echo "$NET.$((10 + $1))"; }
dir() { echo "$BASE/n$1"; }
sock() { echo "$(dir "$1")/docker.sock"; }
pidfile() { echo "$(dir "$1")/dockerd.pid"; }

answers() {
	timeout 10 "$BIN/docker" -H "unix://$(sock "$1")" version --format '{{.Server.Version}}' 2>/dev/null
}

running_pid() {
	local pid f
	f=$(pidfile "$1")
	pid=$(cat "$f" 2>/dev/null) || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--pidfile $f" || return 1
	echo "$pid"
}

has_ns() { ip netns list | grep -q "^$1\( \|$\)"; }

# The switch: a bridge in a namespace of its own (dsw-sw), not the host's. On the host, with
# Docker's br_netfilter on (net.bridge.bridge-nf-call-iptables=1) and its FORWARD policy
# DROP, frames bridged between two nodes would pass the machine's iptables and be dropped;
# in its own namespace the bridge has an empty, accepting FORWARD chain and the machine's
# rules stay untouched. The host reaches it through a veth pair: dsw0 (10.77.0.1) here.
switch() {
	has_ns "$SWITCH" || ip netns add "$SWITCH"
	ip -n "$SWITCH" link show "$BRIDGE" >/dev/null 2>&1 || ip -n "$SWITCH" link add "$BRIDGE" type bridge
	ip -n "$SWITCH" link set "$BRIDGE" up
	if ! ip link show "${PREFIX}0" >/dev/null 2>&1; then
		ip link add "${PREFIX}0" type veth peer name "${PREFIX}0-s" netns "$SWITCH"
	fi
	ip -n "$SWITCH" link set "${PREFIX}0-s" master "$BRIDGE" up
	ip -4 addr show dev "${PREFIX}0" | grep -q "inet $NET.1/24 " || ip addr add "$NET.1/24" dev "${PREFIX}0"
	ip link set "${PREFIX}0" up
}

# netns I: the namespace, a veth pair (dswI-s on the switch, eth0 inside) and the address.
netns() {
	local i=$1 n h
	n=$(ns "$i")
	h=$PREFIX$i-s
	has_ns "$n" || ip netns add "$n"
	if ! ip -n "$SWITCH" link show "$h" >/dev/null 2>&1; then
		ip -n "$n" link del eth0 2>/dev/null || true
		ip -n "$SWITCH" link add "$h" type veth peer name eth0 netns "$n"
	fi
	ip -n "$SWITCH" link set "$h" master "$BRIDGE" up
	ip -n "$n" link set lo up
	ip -n "$n" addr show dev eth0 | grep -q "inet $(addr "$i")/24 " || ip -n "$n" addr add "$(addr "$i")/24" dev eth0
	ip -n "$n" link set eth0 up
	ip -n "$n" route replace default via "$NET.1"
}

start_node() {
	local i=$1 d n v
	d=$(dir "$i")
	n=$(ns "$i")
	if v=$(answers "$i"); then
		log "node $i already running: Engine $v"
		return 0
	fi
	if running_pid "$i" >/dev/null || has_ns "$n"; then
		# A dockerd that does not answer, or what a dead one left (its containerd, shims,
		# containers): gone before a new one starts. The data root stays.
		log "node $i does not answer: clearing what is left of it first"
		stop_node "$i"
	fi
	rm -f "$(pidfile "$i")" # not a running dockerd's (checked above): stale
	netns "$i"
	mkdir -p "$d/data"
	echo '{}' >"$d/daemon.json"
	rm -f "$(sock "$i")"
	# Inside: a private /run (so /var/run/docker.sock is this node's), a sysfs of the node's
	# network namespace (/sys/class/net: its own interfaces, which libnetwork reads) with the
	# machine's cgroup mounts moved back under it, its own hostname, then dockerd listening
	# there and on the host-visible socket. setsid+nohup: it outlives us. The exec root stays
	# in the private /run: containerd's and the shims' sockets with it.
	# DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: there is no registry (nor DNS) in the nodes'
	# network, and a task would first wait for a pull to time out before using the image
	# loaded into the node; an air-gapped cluster sets the same.
	PATH="$BIN:$PATH" DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 setsid nohup nsenter --net="/run/netns/$n" -- \
		unshare --mount --uts --propagation slave -- bash -c '
			set -e
			mount -t tmpfs -o mode=755,size=64m dsw-run /run
			mkdir /run/dsw-cgroup
			mount --rbind /sys/fs/cgroup /run/dsw-cgroup
			mount -t sysfs dsw-sys /sys
			mount --move /run/dsw-cgroup /sys/fs/cgroup
			hostname "$1"
			shift
			exec dockerd "$@"' _ "$n" \
		--host "unix:///run/docker.sock" \
		--host "unix://$(sock "$i")" \
		--pidfile "$(pidfile "$i")" \
		--data-root "$d/data" \
		--exec-root /run/docker \
		--config-file "$d/daemon.json" \
		--bip "172.31.$((230 + i)).1/24" \
		--storage-driver vfs \
		--log-level info \
		>>"$d/dockerd.log" 2>&1 </dev/null &
	# nsenter, unshare (no --fork) and bash's exec keep this pid: it becomes dockerd's.
	STARTED[$i]=$!
}

wait_node() {
	local i=$1 t0=$SECONDS v
	while ! v=$(answers "$i"); do
		if [ -n "${STARTED[$i]:-}" ] && ! kill -0 "${STARTED[$i]}" 2>/dev/null; then
			tail -n 30 "$(dir "$i")/dockerd.log" >&2 || true
			die "node $i's dockerd exited (log: $(dir "$i")/dockerd.log)"
		fi
		if [ $((SECONDS - t0)) -ge "$START_TIMEOUT" ]; then
			tail -n 30 "$(dir "$i")/dockerd.log" >&2 || true
			die "node $i did not answer within ${START_TIMEOUT}s (log: $(dir "$i")/dockerd.log)"
		fi
		sleep 1
	done
	log "node $i ($(ns "$i"), $(addr "$i")) ready after $((SECONDS - t0))s: Engine $v"
}

start() {
	need_root
	local n=${1:-2} i
	[ "$n" -ge 1 ] && [ "$n" -le $MAX_NODES ] || die "1 to $MAX_NODES nodes, not $n"
	bash "$HERE/engine28.sh" fetch
	for c in ip nsenter unshare setsid timeout; do
		command -v "$c" >/dev/null || die "$c not found"
	done
	switch
	for ((i = 1; i <= n; i++)); do start_node "$i"; done
	for ((i = 1; i <= n; i++)); do wait_node "$i"; done
	echo "$n" >"$BASE/nodes"
	for ((i = 1; i <= n; i++)); do echo "unix://$(sock "$i") $(addr "$i")"; done
}

# kill_wait PID...: TERM, then KILL after 30 s.
kill_wait() {
	local p t=0
	kill -TERM "$@" 2>/dev/null || true
	for p in "$@"; do
		while kill -0 "$p" 2>/dev/null; do
			t=$((t + 1))
			if [ "$t" -ge 30 ]; then
				kill -KILL "$p" 2>/dev/null || true
				sleep 0.2
				break
			fi
			sleep 1
		done
	done
}

stop_node() {
	local i=$1 d n pid id p ids=()
	d=$(dir "$i")
	n=$(ns "$i")
	if pid=$(running_pid "$i"); then
		kill_wait "$pid"
	fi
	# After a crash the shims (and their containers) outlive dockerd: the containers are killed
	# through their cgroups (cgroupfs: /docker/<id>), the rest through the namespace's pids.
	if [ -d "$d/data/containers" ]; then
		for id in $(ls "$d/data/containers" 2>/dev/null); do
			for p in $(cat /sys/fs/cgroup/pids/docker/"$id"/cgroup.procs /sys/fs/cgroup/docker/"$id"/cgroup.procs 2>/dev/null); do
				ids+=("$p")
			done
		done
	fi
	if has_ns "$n"; then
		for p in $(ip netns pids "$n" 2>/dev/null); do ids+=("$p"); done
	fi
	if [ "${#ids[@]}" -gt 0 ]; then
		kill -KILL "${ids[@]}" 2>/dev/null || true
		sleep 0.5
	fi
	# ...and the cgroups runc would have removed, emptied now.
	for id in $(ls "$d/data/containers" 2>/dev/null); do
		rmdir /sys/fs/cgroup/*/docker/"$id" /sys/fs/cgroup/docker/"$id" 2>/dev/null || true
	done
	# A killed dockerd may linger as a zombie until its reaper (not us: it was setsid'd away)
	# gets to it; its pid file would make the next dockerd refuse to start.
	rm -f "$(pidfile "$i")"
	ip -n "$SWITCH" link del "$PREFIX$i-s" 2>/dev/null || true
	ip netns del "$n" 2>/dev/null || true
	# The mounts dockerd made are in its own mount namespace and went with it; any that
	# leaked to the host's (not expected) are undone here, deepest first.
	{ grep -F " $d/" /proc/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
}

stop() {
	need_root
	local i
	for ((i = 1; i <= MAX_NODES; i++)); do
		[ -d "$(dir "$i")" ] || has_ns "$(ns "$i")" || continue
		stop_node "$i"
		# Each start is a new Swarm: a node's data root keeps its old Swarm identity.
		rm -rf "$(dir "$i")"
		log "node $i stopped and removed"
	done
	ip link del "${PREFIX}0" 2>/dev/null || true
	ip netns del "$SWITCH" 2>/dev/null || true
	ip link del "$BRIDGE" 2>/dev/null || true # left by an older version of this script
	rm -f "$BASE/nodes"
	rmdir "$BASE" 2>/dev/null || true
}

status() {
	local n i ok=0
	n=$(cat "$BASE/nodes" 2>/dev/null) || {
		echo "swarm-nodes: not started"
		return 1
	}
	for ((i = 1; i <= n; i++)); do
		if v=$(answers "$i"); then
			echo "node $i: $(addr "$i") unix://$(sock "$i") Engine $v"
		else
			echo "node $i: not answering"
			ok=1
		fi
	done
	return $ok
}

env_() {
	local n i nodes=""
	n=$(cat "$BASE/nodes" 2>/dev/null) || die "not started: scripts/swarm-nodes.sh start"
	for ((i = 1; i <= n; i++)); do
		nodes+="${nodes:+,}unix://$(sock "$i")=$(addr "$i")"
	done
	printf 'export DOCKSCOPE_SWARM_NODES=%q DOCKSCOPE_SWARM_CLI=%q\n' "$nodes" "$BIN/docker"
}

ARGS=("$@")
case ${1:-} in
start) start "${2:-2}" ;;
stop) stop ;;
status) status ;;
env) env_ ;;
cli) echo "$BIN/docker" ;;
*)
	echo "usage: $0 start [N]|stop|status|env|cli" >&2
	exit 2
	;;
esac
