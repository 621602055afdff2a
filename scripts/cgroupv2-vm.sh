#!/usr/bin/env bash
# A real cgroup v2 host with Docker's systemd cgroup driver, for the integration tests
# (make integration-cgroupv2): a Debian trixie VM (kernel 6.12, systemd, docker.io 26.1,
# cgroup v2 only) booted under qemu's software emulation, since the machine's kernel keeps
# cgroup v1 and there is no KVM.
#
#   scripts/cgroupv2-vm.sh run      build (once) the root file system, boot the VM, run the
#                                   cgroup v2 integration test in it (TestCgroupV2VM*), print
#                                   its output; exit status is the test's
#   scripts/cgroupv2-vm.sh image    only build (once) the cached disk image
#   scripts/cgroupv2-vm.sh purge    remove the cached images
#
# Settings (environment):
#   CGROUPV2_VM_TIMEOUT   seconds for the whole VM run, boot to power-off (default 1200)
#   CGROUPV2_VM_RECORD    a directory: the guest's cgroup files of the test containers are
#                         copied there (the fixtures of collector/testdata/cgroupv2-systemd)
#   CGROUPV2_VM_KEEP=1    keep the run's directory (console log, shared files)
#
# The disk image is cached in ~/.cache/dockscope/cgroupv2-vm/<stamp>/, the stamp a hash of
# the package list and the guest setup below: change either and it is rebuilt (debootstrap
# from the Debian mirror the machine's apt uses: 6-9 minutes here). The VM boots it with
# -snapshot, so it is never written; what a run needs (the agent, the workload and the
# integration test binary, all static) goes in through a 9p share, which also brings the
# results back. The guest has no network. Needs root (debootstrap, apt-get).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD

SUITE=trixie
# debootstrap --include: docker-cli gives the docker command (trixie's docker.io only
# recommends it); dbus, or systemd's cgroup driver complains; busybox-static for the guest's
# runner; linux-image-amd64 a kernel whose initramfs has virtio_blk and ext4.
PACKAGES=systemd,systemd-sysv,udev,dbus,docker.io,docker-cli,ca-certificates,busybox-static,linux-image-amd64,iproute2,iptables,kmod,procps
# Bump when guest_setup changes what it writes.
GUEST_SETUP_VERSION=1
STAMP=$(printf '%s\n' "$SUITE" "$PACKAGES" "$GUEST_SETUP_VERSION" | sha256sum | cut -c1-12)
CACHE_BASE=${CGROUPV2_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dockscope/cgroupv2-vm}
CACHE=$CACHE_BASE/$STAMP
VM_TIMEOUT=${CGROUPV2_VM_TIMEOUT:-1200}
GO=${GO:-go}

log() { echo "cgroupv2-vm: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, apt-get install)"

# host_packages installs qemu and debootstrap from the machine's own suite when missing.
host_packages() {
	local want=()
	command -v qemu-system-x86_64 >/dev/null || want+=(qemu-system-x86)
	command -v qemu-img >/dev/null || want+=(qemu-utils)
	command -v debootstrap >/dev/null || want+=(debootstrap)
	[ ${#want[@]} = 0 ] && return 0
	log "installing ${want[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}" >&2 ||
		{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}" >&2; }
}

# mirror prints the Debian mirror the machine's apt uses (deb822 URIs: or one-line deb
# entries), the main archive's, not the security one.
mirror() {
	local m
	m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		sed -n -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' |
		tr ' ' '\n' | grep -E '^https?://[^ ]*/debian/?$' | head -1)
	echo "${CGROUPV2_VM_MIRROR:-${m:-http://deb.debian.org/debian}}"
}

# guest_setup configures the debootstrapped tree $1: what the guest is and what it runs
# at boot (dockscope-vmtest.service: mount the 9p share, run its run.sh, power off).
guest_setup() {
	local root=$1
	echo cgroupv2-vm >"$root/etc/hostname"
	printf '127.0.0.1 localhost\n127.0.1.1 cgroupv2-vm\n' >"$root/etc/hosts"
	echo '/dev/vda / ext4 rw,noatime 0 1' >"$root/etc/fstab"
	sed -i 's/^root:[^:]*:/root::/' "$root/etc/shadow" # console login for debugging
	mkdir -p "$root/etc/docker" "$root/results" "$root/opt/dockscope"
	echo '{"exec-opts": ["native.cgroupdriver=systemd"], "storage-driver": "overlay2"}' >"$root/etc/docker/daemon.json"
	cat >"$root/usr/local/sbin/dockscope-vmtest" <<'EOF'
#!/bin/sh
# Runs /results/run.sh from the host's 9p share, its output to /results/output.log and the
# console, its exit status to /results/rc; then powers the VM off whatever happened.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /results || { echo "vmtest: no 9p share" >/dev/console; systemctl poweroff; exit 1; }
echo "vmtest: start after $(cut -d' ' -f1 /proc/uptime) s of uptime" >/dev/console
sh /results/run.sh >/results/output.log 2>&1
echo $? >/results/rc.tmp && mv /results/rc.tmp /results/rc
echo "vmtest: done after $(cut -d' ' -f1 /proc/uptime) s, rc $(cat /results/rc)" >/dev/console
# Running containers would make the shutdown wait for docker stop.
docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1
sync
systemctl poweroff
EOF
	chmod 755 "$root/usr/local/sbin/dockscope-vmtest"
	cat >"$root/etc/systemd/system/dockscope-vmtest.service" <<'EOF'
[Unit]
Description=dockscope cgroup v2 test run
After=docker.service
Wants=docker.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/dockscope-vmtest
StandardOutput=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF
	mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
	ln -sf /etc/systemd/system/dockscope-vmtest.service "$root/etc/systemd/system/multi-user.target.wants/dockscope-vmtest.service"
	# Nothing to do in a throwaway VM without network: time spent at boot.
	for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
		systemd-timesyncd.service systemd-networkd-wait-online.service; do
		ln -sf /dev/null "$root/etc/systemd/system/$u"
	done
	rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
}

# build_image debootstraps the root file system and makes the cached disk image from it.
build_image() {
	[ -f "$CACHE/done" ] && return 0
	host_packages
	# One build at a time; a second run waits for it and then uses its image.
	mkdir -p "$CACHE_BASE"
	exec 9>"$CACHE_BASE/.lock"
	flock 9
	if [ -f "$CACHE/done" ]; then
		flock -u 9
		return 0
	fi
	local t0=$SECONDS tmp=$CACHE_BASE/build-$STAMP m
	m=$(mirror)
	rm -rf "$tmp"
	mkdir -p "$tmp"
	log "building the $SUITE root file system from $m (once per package list; stamp $STAMP)"
	if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp/root" "$m" >"$tmp/debootstrap.log" 2>&1; then
		tail -30 "$tmp/debootstrap.log" >&2
		[ -f "$tmp/root/debootstrap/debootstrap.log" ] && tail -30 "$tmp/root/debootstrap/debootstrap.log" >&2
		die "debootstrap failed (log kept in $tmp)"
	fi
	guest_setup "$tmp/root"
	cp "$tmp"/root/boot/vmlinuz-* "$tmp/vmlinuz"
	cp "$tmp"/root/boot/initrd.img-* "$tmp/initrd.img"
	mkfs.ext4 -q -F -L root -d "$tmp/root" "$tmp/root.img" 4G
	rm -rf "$tmp/root" "$tmp/debootstrap.log"
	touch "$tmp/done"
	rm -rf "$CACHE" && mv "$tmp" "$CACHE"
	# Images of older stamps are of no use any more.
	find "$CACHE_BASE" -mindepth 1 -maxdepth 1 -not -name "$STAMP" -not -name .lock -exec rm -rf {} +
	log "image built in $((SECONDS - t0)) s: $CACHE"
	flock -u 9
}

# run boots the VM on the cached image with the test binaries shared, and reports.
run() {
	build_image
	host_packages
	local t0=$SECONDS work share rc=0
	work=$(mktemp -d "${TMPDIR:-/tmp}/dockscope-cgroupv2-vm-XXXXXX")
	share=$work/share
	mkdir -p "$share/in" "$share/out"
	log "building the static binaries the guest runs"
	CGO_ENABLED=0 "$GO" build -trimpath -o "$share/in/agent" ./cmd/agent
	CGO_ENABLED=0 "$GO" build -trimpath -o "$share/in/workload" ./test/workload
	CGO_ENABLED=0 "$GO" test -c -tags integration -o "$share/in/integration.test" ./test/integration
	cp go.mod "$share/in/go.mod"
	# The test OpenTelemetry Collector (static) receives the logs and events.
	local otelcol
	otelcol=$(sh test/otelcol/build.sh --cache | tail -1)
	cp "$otelcol" "$share/in/otelcol"
	local record=0
	[ -n "${CGROUPV2_VM_RECORD:-}" ] && record=1
	cat >"$share/run.sh" <<EOF
set -u
# The test runs in a copy of the module's root (RepoRoot looks for go.mod), with the
# binaries built on the host (no Go in the guest).
mkdir -p /opt/dockscope/bin /opt/dockscope/src/test/integration
cp /results/in/agent /results/in/workload /results/in/otelcol /results/in/integration.test /opt/dockscope/bin/
cp /results/in/go.mod /opt/dockscope/src/
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DOCKSCOPE_TEST_CGROUPV2_VM=1 DOCKSCOPE_TEST_BIN_DIR=/opt/dockscope/bin DOCKSCOPE_OTELCOL_BIN=/opt/dockscope/bin/otelcol TMPDIR=/tmp
[ $record = 1 ] && export DOCKSCOPE_TEST_RECORD_DIR=/results/out/record
for i in \$(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
docker info --format 'guest: {{.OperatingSystem}}, kernel {{.KernelVersion}}, Engine {{.ServerVersion}}, cgroup v{{.CgroupVersion}} driver {{.CgroupDriver}}, {{.Driver}}'
echo "guest: docker ready after \$(cut -d' ' -f1 /proc/uptime) s of uptime"
cd /opt/dockscope/src/test/integration
/opt/dockscope/bin/integration.test -test.run '^TestCgroupV2VM' -test.v -test.count=1 -test.timeout 15m
rc=\$?
# Where the boot's time went (it is most of a run under emulation; the boot is not over
# while this unit runs, so blame is all systemd-analyze can say).
systemd-analyze blame 2>/dev/null | head -8
exit \$rc
EOF
	log "booting the VM (timeout ${VM_TIMEOUT}s)"
	local qemu_rc=0
	timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 4096 -smp 2 \
		-nographic -no-reboot -snapshot \
		-kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.img" \
		-append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 loglevel=4" \
		-drive file="$CACHE/root.img",format=raw,if=virtio \
		-nic none \
		-virtfs local,path="$share",mount_tag=results,security_model=none,id=results \
		</dev/null >"$work/console.log" 2>&1 || qemu_rc=$?
	if [ -f "$share/output.log" ]; then
		echo "---- guest output ----"
		cat "$share/output.log"
		echo "---- end of guest output ----"
	fi
	if [ ! -f "$share/rc" ]; then
		[ "$qemu_rc" = 124 ] && log "the VM did not finish within ${VM_TIMEOUT}s (CGROUPV2_VM_TIMEOUT)"
		log "no result from the guest (qemu exit $qemu_rc); the console's last lines:"
		tail -60 "$work/console.log" >&2
		rc=1
	else
		rc=$(cat "$share/rc")
	fi
	if [ "$record" = 1 ] && [ -d "$share/out/record" ]; then
		mkdir -p "$CGROUPV2_VM_RECORD"
		cp -r "$share/out/record/." "$CGROUPV2_VM_RECORD/"
		log "recorded fixtures in $CGROUPV2_VM_RECORD"
	fi
	log "VM run took $((SECONDS - t0)) s; guest test exit status $rc"
	if [ "$rc" = 0 ] && [ -z "${CGROUPV2_VM_KEEP:-}" ]; then
		rm -rf "$work"
	else
		log "kept $work (console.log, share/)"
	fi
	return "$rc"
}

# One compound command, read whole before it runs: a run takes minutes, and bash would
# otherwise read the rest of this file from where it was, if it was edited meanwhile.
{
	case ${1:-run} in
	run) run ;;
	image) build_image ;;
	purge) rm -rf "$CACHE_BASE" ;;
	*) die "usage: $0 run|image|purge" ;;
	esac
	exit
}
