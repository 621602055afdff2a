package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A container's cgroup is read from the kernel rather than derived from its
// ID: the cgroupfs and systemd drivers, a --cgroup-parent (absolute, or
// relative and so joined to the runtime's own cgroup, which can differ per
// v1 controller), rootless Docker under the user's systemd manager and
// Podman (machine.slice/libpod-<id>.scope, /libpod_parent/libpod-<id>) all
// put it somewhere else. /proc/<pid>/cgroup of the container's main process
// names it per hierarchy, and the agent's mount table says where each
// hierarchy's part that names is mounted under stats.cgroup_root.

// cgroupDirs are a container's cgroup directories as the agent opens them:
// unified on cgroup v2, one per controller the reader uses on v1.
type cgroupDirs struct {
	unified                           string
	cpu, cpuacct, memory, pids, blkio string
}

// v1Controllers are the controllers the v1 reader opens; cpuacct and memory
// are required, the others read when present.
var v1Controllers = [...]string{"cpu", "cpuacct", "memory", "pids", "blkio"}

func (d *cgroupDirs) set(controller, dir string) {
	switch controller {
	case "cpu":
		d.cpu = dir
	case "cpuacct":
		d.cpuacct = dir
	case "memory":
		d.memory = dir
	case "pids":
		d.pids = dir
	case "blkio":
		d.blkio = dir
	}
}

// patternDirs are the directories of a cgroup path in the usual layout:
// <root>/<path> on v2, <root>/<controller>/<path> on v1.
func patternDirs(root string, v2 bool, path string) cgroupDirs {
	if v2 {
		return cgroupDirs{unified: filepath.Join(root, path)}
	}
	var d cgroupDirs
	for _, c := range v1Controllers {
		d.set(c, filepath.Join(root, c, path))
	}
	return d
}

// procCgroup is one line of /proc/<pid>/cgroup,
// "hierarchy-ID:controller-list:path": "4:cpu,cpuacct:/docker/<id>",
// "1:name=systemd:/docker/<id>", or cgroup v2's "0::/system.slice/x.scope".
type procCgroup struct {
	controllers []string // empty for the v2 hierarchy
	path        string
}

// parseProcCgroup reads /proc/<pid>/cgroup; malformed lines are skipped.
func parseProcCgroup(b []byte) []procCgroup {
	var out []procCgroup
	for line := range strings.SplitSeq(string(b), "\n") {
		// The path is last and may itself hold ':'.
		hid, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		list, path, ok := strings.Cut(rest, ":")
		if !ok || !strings.HasPrefix(path, "/") {
			continue
		}
		if _, err := strconv.ParseUint(hid, 10, 32); err != nil {
			continue
		}
		var ctrls []string
		if list != "" {
			ctrls = strings.Split(list, ",")
		}
		if hid == "0" && len(ctrls) > 0 {
			continue // hierarchy 0 is v2's, which has no controller list
		}
		out = append(out, procCgroup{controllers: ctrls, path: path})
	}
	return out
}

// cgroupMount is a cgroup filesystem in the agent's mount table.
type cgroupMount struct {
	point string // where it is mounted, in the agent's mount namespace
	// root is the cgroup it shows, relative to the agent's cgroup namespace
	// like the paths of /proc/<pid>/cgroup ("/", "/docker/<id>", "/../..").
	root    string
	v2      bool
	options []string // v1: the super options, among them its controllers and name=
}

// parseMountinfo reads the cgroup and cgroup2 entries of a mountinfo file
// (proc(5)): "36 35 98:0 <root> <mount point> <options> [optional...] -
// <fstype> <source> <super options>", paths octal-escaped.
// A mount hidden by a later one on the same point (the host's hierarchy
// bind-mounted over the one a runtime mounted for the agent) is left out:
// its directories are not reachable.
func parseMountinfo(b []byte) []cgroupMount {
	var out []cgroupMount
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if sep < 6 || len(f) < sep+4 {
			continue
		}
		m := cgroupMount{root: unescapeMountinfo(f[3]), point: filepath.Clean(unescapeMountinfo(f[4]))}
		out = slices.DeleteFunc(out, func(o cgroupMount) bool { return o.point == m.point })
		switch f[sep+1] {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			m.options = strings.Split(f[sep+3], ",")
		default:
			continue
		}
		out = append(out, m)
	}
	return out
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// splitCgroupPath splits a path as /proc shows it into its leading ".."
// components (how far above the reader's cgroup namespace root it starts)
// and the rest. It is not cleaned: "/../x" is not "/x".
func splitCgroupPath(p string) (up int, rest []string, ok bool) {
	for c := range strings.SplitSeq(p, "/") {
		switch {
		case c == "":
		case c == "..":
			if len(rest) > 0 {
				return 0, nil, false // the kernel puts ".." only first
			}
			up++
		case c == ".":
			return 0, nil, false
		default:
			rest = append(rest, c)
		}
	}
	return up, rest, true
}

// maxGap bounds the levels searched for the names the cgroup namespace
// hides (see cgroupResolver.relative).
const maxGap = 2

// errNotResolved: the files do not say where the container's cgroup is.
var errNotResolved = errors.New("cgroup not resolved")

// cgroupResolver finds containers' cgroups from /proc and the mount table,
// once per container start, and keeps them.
type cgroupResolver struct {
	root     string // stats.cgroup_root
	procRoot string // stats.proc_root
	log      *slog.Logger
	// quiet: stats come from the API, so a fallback only costs the id
	// label; it is logged at debug level.
	quiet bool
	now   func() time.Time

	layout sync.Once
	v2     bool
	usable bool // root holds a cgroup filesystem

	mu    sync.Mutex
	cache map[string]cgroupEntry
	// hidden caches the names a cgroup namespace hides between a mount's
	// root and the paths of /proc, found once per mount (see relative).
	hidden   map[hiddenKey]string
	lastWarn time.Time
	warned   int // fallbacks since lastWarn, reported with the next warning
}

type hiddenKey struct {
	point string
	up    int
	gap   int
}

// cgroupEntry is what is known of one container's cgroup.
type cgroupEntry struct {
	pid  int    // the main process it was resolved for
	path string // cAdvisor's id: the cgroup's path in its hierarchy
	dirs cgroupDirs
	// failedAt is when resolving failed for this pid (path is then the
	// derived one, dirs unset); it is tried again after warnEvery.
	failedAt time.Time
}

// warnEvery spaces out the warnings of a failing resolution: a host where
// it fails fails for every container.
const warnEvery = time.Minute

func newCgroupResolver(root, procRoot string, log *slog.Logger, quiet bool) *cgroupResolver {
	return &cgroupResolver{root: filepath.Clean(root), procRoot: procRoot, log: log, quiet: quiet, now: time.Now,
		cache: map[string]cgroupEntry{}, hidden: map[hiddenKey]string{}}
}

// detect reads the layout of the cgroup root once.
func (r *cgroupResolver) detect() {
	r.layout.Do(func() {
		// The mount table names real paths.
		if p, err := filepath.EvalSymlinks(r.root); err == nil {
			r.root = p
		}
		v2, err := cgroupLayout(r.root)
		r.v2, r.usable = v2, err == nil
	})
}

// lookup returns the cgroup resolved for the container's run with main
// process pid.
func (r *cgroupResolver) lookup(id string, pid int) (cgroupEntry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.cache[id]
	return e, ok && pid != 0 && e.pid == pid && e.failedAt.IsZero()
}

// idLabel returns the container's cgroup path (the `id` label) for the run
// whose main process is pid, resolving it if that run is new; guess is the
// path derived from the container's ID and cgroup driver, used when the
// files do not say. A stopped container (pid 0) keeps the path of its last
// run: a restart puts it back there.
func (r *cgroupResolver) idLabel(id string, pid int, guess string) string {
	r.mu.Lock()
	e, ok := r.cache[id]
	r.mu.Unlock()
	switch {
	case ok && e.failedAt.IsZero() && (pid == 0 || e.pid == pid):
		return e.path
	case ok && !e.failedAt.IsZero() && (pid == 0 || e.pid == pid && r.now().Sub(e.failedAt) < warnEvery):
		return guess
	case pid == 0:
		return guess
	}
	r.detect()
	if !r.usable {
		return guess
	}
	e, err := r.resolve(id, pid)
	if err != nil {
		r.fellBack(id, pid, guess, err)
		// Not read again for every event of this run; and a previous
		// run's directories are not this one's.
		e = cgroupEntry{pid: pid, path: guess, failedAt: r.now()}
	}
	r.mu.Lock()
	r.cache[id] = e
	r.mu.Unlock()
	return e.path
}

// forget drops a container that no longer exists.
func (r *cgroupResolver) forget(id string) {
	r.mu.Lock()
	delete(r.cache, id)
	r.mu.Unlock()
}

// fellBack logs a failed resolution, once per warnEvery.
func (r *cgroupResolver) fellBack(id string, pid int, guess string, err error) {
	r.mu.Lock()
	now := r.now()
	r.warned++
	if !r.lastWarn.IsZero() && now.Sub(r.lastWarn) < warnEvery {
		r.mu.Unlock()
		r.log.Debug("container cgroup not found from /proc; using the path derived from its ID", "container", shortID(id), "pid", pid, "path", guess, "err", err)
		return
	}
	n := r.warned
	r.lastWarn, r.warned = now, 0
	r.mu.Unlock()
	level := slog.LevelWarn
	if r.quiet {
		level = slog.LevelDebug
	}
	r.log.Log(context.Background(), level, "container cgroup not found from /proc; using the path derived from its ID (stats then come from the Engine API if its files are not there)",
		"container", shortID(id), "pid", pid, "path", guess, "err", err, "fallbacks_since_last_warning", n)
}

// resolve reads /proc/<pid>/cgroup and the agent's mount table.
func (r *cgroupResolver) resolve(id string, pid int) (cgroupEntry, error) {
	pc, err := os.ReadFile(filepath.Join(r.procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return cgroupEntry{}, fmt.Errorf("reading the container's cgroup: %w", err)
	}
	// The agent's own mount table: cgroup_root is a path in its mount
	// namespace. "self" in any procfs, the host's included, is the reader.
	mi, err := os.ReadFile(filepath.Join(r.procRoot, "self", "mountinfo"))
	if err != nil {
		return cgroupEntry{}, fmt.Errorf("reading the agent's mount table: %w", err)
	}
	e, err := r.resolveFrom(id, parseProcCgroup(pc), parseMountinfo(mi))
	if err != nil {
		return cgroupEntry{}, err
	}
	e.pid = pid
	return e, nil
}

// resolveFrom maps the container's cgroups onto the mounts under the
// cgroup root: on v2 the "0::" line, on v1 the line of each controller.
func (r *cgroupResolver) resolveFrom(id string, lines []procCgroup, mounts []cgroupMount) (cgroupEntry, error) {
	if r.v2 {
		for _, l := range lines {
			if len(l.controllers) == 0 {
				path, dir, err := r.locate(id, l.path, mounts, func(m *cgroupMount) bool { return m.v2 })
				if err != nil {
					return cgroupEntry{}, err
				}
				return cgroupEntry{path: path, dirs: cgroupDirs{unified: dir}}, nil
			}
		}
		return cgroupEntry{}, fmt.Errorf("%w: no cgroup v2 line (0::) in /proc/<pid>/cgroup", errNotResolved)
	}
	var e cgroupEntry
	for _, c := range v1Controllers {
		i := slices.IndexFunc(lines, func(l procCgroup) bool { return slices.Contains(l.controllers, c) })
		if i < 0 {
			if c == "cpuacct" || c == "memory" {
				return cgroupEntry{}, fmt.Errorf("%w: no %s line in /proc/<pid>/cgroup", errNotResolved, c)
			}
			continue
		}
		path, dir, err := r.locate(id, lines[i].path, mounts, func(m *cgroupMount) bool { return !m.v2 && slices.Contains(m.options, c) })
		if err != nil {
			if c == "cpuacct" || c == "memory" {
				return cgroupEntry{}, fmt.Errorf("%s controller: %w", c, err)
			}
			continue
		}
		e.dirs.set(c, dir)
		// cAdvisor names a v1 container by its cpu hierarchy's path.
		if e.path == "" || c == "cpu" {
			e.path = path
		}
	}
	return e, nil
}

// locate finds the directory of a /proc cgroup path through the mounts of
// its hierarchy under the cgroup root, and the path to report as the id.
func (r *cgroupResolver) locate(id, path string, mounts []cgroupMount, ofHierarchy func(*cgroupMount) bool) (string, string, error) {
	up, rest, ok := splitCgroupPath(path)
	if !ok {
		return "", "", fmt.Errorf("%w: malformed cgroup path %q", errNotResolved, path)
	}
	// The container's own cgroup is the deepest one named for it: a
	// process in a child of it (systemd in the container moving itself to
	// init.scope, crun's libpod-<id>.scope/container) is still in it.
	// A path naming no container is not trusted: with a /proc of another
	// PID namespace the pid may be some other process. Nor is "/": the
	// root of the agent's cgroup namespace, which hides where that is (the
	// container shares the agent's namespace, or has no cgroup of its own,
	// as rootless Docker on cgroup v1).
	k := len(rest) - 1
	for k >= 0 && !strings.Contains(rest[k], id) {
		k--
	}
	if k < 0 || id == "" {
		return "", "", fmt.Errorf("%w: %q does not name the container", errNotResolved, path)
	}
	rest = rest[:k+1]
	seen := false
	for i := len(mounts) - 1; i >= 0; i-- {
		m := &mounts[i]
		if !ofHierarchy(m) || !within(m.point, r.root) {
			continue
		}
		seen = true
		rel, err := r.relative(m, up, rest)
		if err != nil {
			continue
		}
		dir := filepath.Join(append([]string{m.point}, rel...)...)
		if !isDir(dir) {
			continue
		}
		// cAdvisor runs in the host's cgroup namespace: its id is the
		// path /proc shows there. Here, when /proc shows the path from
		// the host's namespace (no ".."), that is the path itself; from
		// inside a namespace it is the path below a mount that shows an
		// ancestor of the namespace — the host's hierarchy root when the
		// host's /sys/fs/cgroup is mounted, as deployed.
		label := "/" + strings.Join(rest, "/")
		if up > 0 {
			label = "/" + strings.Join(rel, "/")
		}
		return label, dir, nil
	}
	if !seen {
		return "", "", fmt.Errorf("%w: no mount of the hierarchy of %q under %s", errNotResolved, path, r.root)
	}
	return "", "", fmt.Errorf("%w: %q is not below a mount under %s (is the agent in a cgroup namespace of its own without the host's cgroup filesystem mounted?)", errNotResolved, path, r.root)
}

// relative returns the components of the cgroup (up leading "..", then
// rest) below the mount's root. Both are relative to the agent's cgroup
// namespace root N, which the kernel hides. When the agent shares the host's
// namespace nothing is hidden: the mount's root is a prefix of the path.
// In a namespace of its own, the container's cgroup is outside N and shows
// as N/../x, and the host's hierarchy mounted into the agent shows as N/../..:
// the names between (here the one of N's parent) are not in either path. They
// are the same for every container, so they are found once by looking for the
// one directory at that depth below the mount that holds the container's
// cgroup, and kept.
func (r *cgroupResolver) relative(m *cgroupMount, up int, rest []string) ([]string, error) {
	mup, mrest, ok := splitCgroupPath(m.root)
	if !ok {
		return nil, errNotResolved
	}
	if len(mrest) > 0 {
		if mup != up || len(mrest) > len(rest) || !slices.Equal(mrest, rest[:len(mrest)]) {
			return nil, errNotResolved
		}
		return rest[len(mrest):], nil
	}
	gap := mup - up
	switch {
	case gap < 0 || gap > maxGap:
		return nil, errNotResolved
	case gap == 0:
		return rest, nil
	}
	key := hiddenKey{m.point, up, gap}
	r.mu.Lock()
	prefix, ok := r.hidden[key]
	r.mu.Unlock()
	if ok && isDir(filepath.Join(m.point, prefix, filepath.Join(rest...))) {
		return append(strings.Split(prefix, "/"), rest...), nil
	}
	prefix, err := findHidden(m.point, gap, filepath.Join(rest...))
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.hidden[key] = prefix
	r.mu.Unlock()
	return append(strings.Split(prefix, "/"), rest...), nil
}

// maxHiddenScan bounds the directories findHidden lists.
const maxHiddenScan = 4096

// findHidden returns the one path of depth levels below point under which
// rel is a directory.
func findHidden(point string, depth int, rel string) (string, error) {
	cands := []string{""}
	for range depth {
		var next []string
		for _, c := range cands {
			ents, err := os.ReadDir(filepath.Join(point, c))
			if err != nil {
				continue
			}
			for _, e := range ents {
				if e.IsDir() {
					next = append(next, filepath.Join(c, e.Name()))
				}
			}
			if len(next) > maxHiddenScan {
				return "", fmt.Errorf("%w: too many cgroups to search below %s", errNotResolved, point)
			}
		}
		cands = next
	}
	var found []string
	for _, c := range cands {
		if isDir(filepath.Join(point, c, rel)) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("%w: %d cgroups named %s below %s", errNotResolved, len(found), rel, point)
	}
	return found[0], nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	p = filepath.Clean(p)
	return p == dir || strings.HasPrefix(p, dir+"/") || dir == "/"
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// cgroupLayout tells cgroup v2 (cgroup.controllers at the top) from v1
// (one directory per controller) under root.
func cgroupLayout(root string) (v2 bool, err error) {
	switch {
	case fileExists(filepath.Join(root, "cgroup.controllers")):
		return true, nil
	case fileExists(filepath.Join(root, "cpuacct")) && fileExists(filepath.Join(root, "memory")):
		return false, nil
	}
	return false, fmt.Errorf("no cgroup filesystem at %s (neither cgroup v2's cgroup.controllers nor v1's cpuacct and memory)", root)
}
