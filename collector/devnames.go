package collector

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dockscope/dockscope/pipeline"
)

// deviceNamer turns the "major:minor" that blkio and io.stat give into the
// device name cAdvisor puts in the `device` label ("/dev/sda"), so that
// dashboards filtering or grouping on it work unchanged. The name comes
// from sysfs, which holds every block device of the host even inside a
// container (sysfs is not namespaced for block devices):
// /sys/dev/block/<major>:<minor>/uevent has DEVNAME=sda, and the link
// itself points at .../block/sda.
//
// Names are cached per major:minor: a host has a handful of devices, and a
// sample would otherwise cost a file read per device. A device sysfs does
// not know (yet) keeps "major:minor" and is looked up again after
// retryUnknown, so a disk attached later gets its name.
type deviceNamer struct {
	root string // the host's sysfs, e.g. /sys or /host/sys
	now  func() time.Time

	mu    sync.Mutex
	names map[string]devName
}

type devName struct {
	name    string // "" when unknown
	checked time.Time
}

const (
	// retryUnknown is how long a device sysfs did not name keeps its
	// "major:minor" before it is looked up again.
	retryUnknown = time.Minute
	// maxCachedDevices bounds the cache; past it, it starts over (a host
	// that churns through loop devices must not grow it without end).
	maxCachedDevices = 1024
)

func newDeviceNamer(sysRoot string) *deviceNamer {
	return &deviceNamer{root: sysRoot, now: time.Now, names: make(map[string]devName)}
}

// name returns "/dev/<name>" for a "major:minor", or dev itself when sysfs
// does not know it (or dev is not of that form).
func (n *deviceNamer) name(dev string) string {
	if !isMajorMinor(dev) {
		return dev
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	if c, ok := n.names[dev]; ok && (c.name != "" || now.Sub(c.checked) < retryUnknown) {
		if c.name == "" {
			return dev
		}
		return c.name
	}
	name := lookupDevName(n.root, dev)
	if len(n.names) >= maxCachedDevices {
		clear(n.names)
	}
	n.names[dev] = devName{name: name, checked: now}
	if name == "" {
		return dev
	}
	return name
}

// rename replaces the device numbers of a sample's disks by their names.
// The slice is the sample's own (built fresh by every read).
func (n *deviceNamer) rename(disks []pipeline.DiskStats) {
	for i := range disks {
		disks[i].Device = n.name(disks[i].Device)
	}
}

// lookupDevName reads the device's name from sysfs: uevent's DEVNAME (the
// path below /dev the kernel gives the node), else the basename of the
// link's target (.../block/sda). "" when neither is there.
func lookupDevName(sysRoot, dev string) string {
	dir := filepath.Join(sysRoot, "dev", "block", dev)
	if b, err := os.ReadFile(filepath.Join(dir, "uevent")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "DEVNAME="); ok && v != "" {
				return "/dev/" + v
			}
		}
	}
	if target, err := os.Readlink(dir); err == nil {
		if base := filepath.Base(target); base != "." && base != "/" && !isMajorMinor(base) {
			return "/dev/" + base
		}
	}
	return ""
}

// isMajorMinor reports whether s is "<digits>:<digits>".
func isMajorMinor(s string) bool {
	major, minor, ok := strings.Cut(s, ":")
	return ok && allDigits(major) && allDigits(minor)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
