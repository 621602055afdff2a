#!/bin/sh
# Prepare a fresh Debian machine that has Go and Docker (or not even Docker) for
# dockscope's integration tests. Idempotent: every step is skipped when its
# result is already there.
#
#   - a running Docker Engine (apt-get install docker.io; when `docker info` fails,
#     dockerd started by the machine's service manager -- systemctl, else Debian's init
#     script -- or, with neither, in the background by hand, logging to /var/log/dockerd.log)
#   - prometheus and promtool (Debian's prometheus package, without starting its service)
#   - the test OpenTelemetry Collector, built into the per-user cache
#     (test/otelcol/build.sh --cache)
#
# Needs root (or sudo) for apt-get and dockerd.
set -eu

cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

SUDO=
if [ "$(id -u)" != 0 ]; then
	SUDO=sudo
fi

log() { echo "setup: $*" >&2; }

apt_updated=
apt_install() {
	if [ -z "$apt_updated" ]; then
		$SUDO apt-get update -q
		apt_updated=1
	fi
	$SUDO apt-get install -y -q --no-install-recommends "$@"
}

# Run apt-get install without letting maintainer scripts start services:
# invoke-rc.d consults policy-rc.d, and exit code 101 means "action forbidden".
apt_install_no_start() {
	if [ -e /usr/sbin/policy-rc.d ]; then
		apt_install "$@"
		return
	fi
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod 755 /usr/sbin/policy-rc.d
	status=0
	apt_install "$@" || status=$?
	$SUDO rm -f /usr/sbin/policy-rc.d
	return $status
}

# 1. Docker Engine.
if docker info >/dev/null 2>&1; then
	log "docker: running ($(docker version --format '{{.Server.Version}}'))"
else
	if ! command -v dockerd >/dev/null 2>&1; then
		log "docker: installing docker.io"
		apt_install_no_start docker.io
	fi
	if ! docker info >/dev/null 2>&1; then
		if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
			log "docker: systemctl start docker"
			$SUDO systemctl start docker
		elif [ -x /etc/init.d/docker ] && command -v service >/dev/null 2>&1; then
			log "docker: service docker start (log: /var/log/docker.log)"
			$SUDO service docker start
		else
			# Nothing to supervise it: started by hand (the daemon-restart test starts it
			# again the same way). Its log is not a /tmp file: it outlives the run.
			log "docker: starting dockerd (log: /var/log/dockerd.log)"
			$SUDO sh -c 'nohup dockerd >>/var/log/dockerd.log 2>&1 </dev/null &'
		fi
		i=0
		until docker info >/dev/null 2>&1; do
			i=$((i + 1))
			if [ $i -gt 60 ]; then
				log "docker: dockerd did not come up in 60 s; tail of its log:"
				tail -n 30 /var/log/dockerd.log /var/log/docker.log >&2 2>/dev/null || true
				exit 1
			fi
			sleep 1
		done
		log "docker: running ($(docker version --format '{{.Server.Version}}'))"
	fi
fi

# 2. Prometheus. The tests run their own prometheus processes on free ports;
# the package's service is never started (no systemd here, and policy-rc.d
# forbids the init script), and prometheus-node-exporter (a Recommends) is not
# installed.
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
	log "prometheus: installed ($(prometheus --version 2>&1 | head -n 1))"
else
	log "prometheus: installing"
	apt_install_no_start prometheus
	log "prometheus: installed ($(prometheus --version 2>&1 | head -n 1))"
fi

# 3. The test OpenTelemetry Collector.
log "otelcol: $(test/otelcol/build.sh --cache | tail -n 1)"
