package collector

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const cgroupTestdata = "testdata/cgroup"

// hostFiles lays out a recorded case under a temporary directory standing
// for the agent's root: its mount table with every mount point moved below
// it, its /proc (the container's main process is pid 42) and the cgroup
// directories listed, relative to it.
type hostFiles struct {
	top, root, proc string
}

func layoutCase(t *testing.T, dir, cgroupRoot, cgroupFile string, v2 bool, dirs []string) hostFiles {
	t.Helper()
	top := t.TempDir()
	mi, err := os.ReadFile(filepath.Join(cgroupTestdata, dir, "mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	var moved []string
	for line := range strings.SplitSeq(strings.TrimRight(string(mi), "\n"), "\n") {
		f := strings.Split(line, " ")
		f[4] = top + f[4]
		moved = append(moved, strings.Join(f, " "))
	}
	if cgroupFile == "" {
		b, err := os.ReadFile(filepath.Join(cgroupTestdata, dir, "cgroup"))
		if err != nil {
			t.Fatal(err)
		}
		cgroupFile = string(b)
	}
	h := hostFiles{top: top, root: filepath.Join(top, cgroupRoot), proc: filepath.Join(top, "proc")}
	files := map[string]string{
		"proc/self/mountinfo": strings.Join(moved, "\n") + "\n",
		"proc/42/cgroup":      cgroupFile,
	}
	if v2 {
		files[filepath.Join(cgroupRoot, "cgroup.controllers")] = "cpuset cpu io memory pids\n"
	}
	for p, content := range files {
		full := filepath.Join(top, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(top, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func caseID(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cgroupTestdata, dir, "id.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// v1Dirs are the five controller directories of one path in the usual
// one-directory-per-controller layout.
func v1Dirs(base, path string) cgroupDirs {
	return patternDirs(base, false, path)
}

func (d cgroupDirs) list() []string {
	var out []string
	for _, p := range []string{d.unified, d.cpu, d.cpuacct, d.memory, d.pids, d.blkio} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (d cgroupDirs) under(top string) cgroupDirs {
	j := func(p string) string {
		if p == "" {
			return ""
		}
		return filepath.Join(top, p)
	}
	return cgroupDirs{unified: j(d.unified), cpu: j(d.cpu), cpuacct: j(d.cpuacct), memory: j(d.memory), pids: j(d.pids), blkio: j(d.blkio)}
}

// TestCgroupResolvedFromProc: each runtime's and layout's recorded
// /proc/<pid>/cgroup and mount table resolve to the container's
// directories and to the id cAdvisor gives it.
func TestCgroupResolvedFromProc(t *testing.T) {
	type tc struct {
		dir        string
		cgroupRoot string
		v2         bool
		wantPath   string     // "<id>" stands for the container's ID
		wantDirs   cgroupDirs // relative to the agent's root; empty: must not resolve
		extraDirs  []string   // more cgroups that exist (decoys)
		symlinks   map[string]string
	}
	const root = "sys/fs/cgroup"
	for _, c := range []tc{
		{dir: "v1-cgroupfs", cgroupRoot: root, wantPath: "/docker/<id>", wantDirs: v1Dirs(root, "docker/<id>")},
		{dir: "v1-cgroup-parent", cgroupRoot: root, wantPath: "/dockscope-test-parent/<id>", wantDirs: v1Dirs(root, "dockscope-test-parent/<id>")},
		{dir: "v1-relative-parent", cgroupRoot: root, wantPath: "/dockscope-rel-parent/<id>", wantDirs: func() cgroupDirs {
			d := v1Dirs(root, "dockscope-rel-parent/<id>")
			d.memory = root + "/memory/process_api/074881d9df869e04bc1c4412fe847b76/dockscope-rel-parent/<id>"
			return d
		}()},
		{dir: "v1-agent-cgroupns", cgroupRoot: "host/" + root, wantPath: "/docker/<id>", wantDirs: v1Dirs("host/"+root, "docker/<id>"),
			// Other top-level cgroups: only docker/ holds the container.
			extraDirs: []string{"host/" + root + "/cpu/system.slice", "host/" + root + "/memory/user.slice", "host/" + root + "/cpuacct/dockscope-test-parent"}},
		// The same agent configured with its own /sys/fs/cgroup, which
		// shows only its namespace: the container is not below it.
		{dir: "v1-agent-cgroupns", cgroupRoot: root, extraDirs: []string{root + "/cpuacct", root + "/memory"}},
		{dir: "v1-systemd", cgroupRoot: root, wantPath: "/system.slice/docker-<id>.scope", wantDirs: cgroupDirs{
			cpu:     root + "/cpu,cpuacct/system.slice/docker-<id>.scope",
			cpuacct: root + "/cpu,cpuacct/system.slice/docker-<id>.scope",
			memory:  root + "/memory/system.slice/docker-<id>.scope",
			pids:    root + "/pids/system.slice/docker-<id>.scope",
			blkio:   root + "/blkio/system.slice/docker-<id>.scope",
		}, symlinks: map[string]string{root + "/cpu": "cpu,cpuacct", root + "/cpuacct": "cpu,cpuacct"}},
		{dir: "v2-systemd", cgroupRoot: root, v2: true, wantPath: "/system.slice/docker-<id>.scope", wantDirs: cgroupDirs{unified: root + "/system.slice/docker-<id>.scope"}},
		// The host's hierarchy mounted over the agent's own: the later
		// mount is the one that is reached.
		{dir: "v2-agent-cgroupns", cgroupRoot: root, v2: true, wantPath: "/system.slice/docker-<id>.scope", wantDirs: cgroupDirs{unified: root + "/system.slice/docker-<id>.scope"},
			extraDirs: []string{root + "/user.slice", root + "/init.scope"}},
		{dir: "v2-own-namespace-mount", cgroupRoot: root, v2: true, extraDirs: []string{root + "/system.slice/docker-<id>.scope"}},
		{dir: "rootless-v2", cgroupRoot: root, v2: true, wantPath: "/user.slice/user-1000.slice/user@1000.service/user.slice/docker-<id>.scope",
			wantDirs: cgroupDirs{unified: root + "/user.slice/user-1000.slice/user@1000.service/user.slice/docker-<id>.scope"}},
		{dir: "podman-systemd-v2", cgroupRoot: root, v2: true, wantPath: "/machine.slice/libpod-<id>.scope",
			wantDirs:  cgroupDirs{unified: root + "/machine.slice/libpod-<id>.scope"},
			extraDirs: []string{root + "/machine.slice/libpod-<id>.scope/container"}},
		{dir: "podman-cgroupfs-v1", cgroupRoot: root, wantPath: "/libpod_parent/libpod-<id>", wantDirs: v1Dirs(root, "libpod_parent/libpod-<id>")},
	} {
		t.Run(c.dir+"@"+c.cgroupRoot, func(t *testing.T) {
			id := caseID(t, c.dir)
			sub := func(s string) string { return strings.ReplaceAll(s, "<id>", id) }
			want := c.wantDirs
			for _, p := range []*string{&want.unified, &want.cpu, &want.cpuacct, &want.memory, &want.pids, &want.blkio} {
				*p = sub(*p)
			}
			var dirs []string
			for _, d := range append(want.list(), c.extraDirs...) {
				dirs = append(dirs, sub(d))
			}
			h := layoutCase(t, c.dir, c.cgroupRoot, "", c.v2, dirs)
			for link, target := range c.symlinks {
				if err := os.Symlink(target, filepath.Join(h.top, link)); err != nil {
					t.Fatal(err)
				}
			}
			r := newCgroupResolver(h.root, h.proc, slog.New(slog.DiscardHandler), false)
			const guess = "/guessed"
			got := r.idLabel(id, 42, guess)
			e, ok := r.lookup(id, 42)
			if want == (cgroupDirs{}) {
				if got != guess || ok {
					t.Fatalf("resolved to %q (%+v); want the guess: the files do not lead to it", got, e.dirs)
				}
				return
			}
			if !ok || got != sub(c.wantPath) {
				t.Fatalf("id = %q (cached: %v), want %q", got, ok, sub(c.wantPath))
			}
			if want = want.under(h.top); !reflect.DeepEqual(e.dirs, want) {
				t.Errorf("dirs:\n got %+v\nwant %+v", e.dirs, want)
			}
		})
	}
}

// TestCgroupResolvedOwnScope: a mount that shows exactly the container's
// cgroup (the container's own view of itself, recorded in the v2 VM)
// resolves to the mount itself, named by the container's full path.
func TestCgroupResolvedOwnScope(t *testing.T) {
	const id = "12e5694ced094b5a2af6267e6b5dec6628e0c8cf63fdaca4f56f9a594f942b4f"
	h := layoutCase(t, "v2-own-namespace-mount", "sys/fs/cgroup", "0::/system.slice/docker-"+id+".scope\n", true, nil)
	r := newCgroupResolver(h.root, h.proc, slog.New(slog.DiscardHandler), false)
	if got := r.idLabel(id, 42, "/guessed"); got != "/system.slice/docker-"+id+".scope" {
		t.Fatalf("id = %q", got)
	}
	if e, _ := r.lookup(id, 42); e.dirs.unified != h.root {
		t.Errorf("dir = %q, want the mount point %q", e.dirs.unified, h.root)
	}
}

// TestCgroupResolutionCachedPerRun: the files are read once per run of a
// container, again for a new main process, and a stopped container keeps
// its last path.
func TestCgroupResolutionCachedPerRun(t *testing.T) {
	id := caseID(t, "v1-cgroupfs")
	h := layoutCase(t, "v1-cgroupfs", "sys/fs/cgroup", "", false, v1Dirs("sys/fs/cgroup", "docker/"+id).list())
	r := newCgroupResolver(h.root, h.proc, slog.New(slog.DiscardHandler), false)
	if got := r.idLabel(id, 42, "/g"); got != "/docker/"+id {
		t.Fatalf("first run: %q", got)
	}
	// The same run again (a health_status event, a resync): not re-read.
	os.Remove(filepath.Join(h.proc, "42", "cgroup"))
	if got := r.idLabel(id, 42, "/g"); got != "/docker/"+id {
		t.Fatalf("same run re-read its files: %q", got)
	}
	// Stopped: the path of its last run, and no directories to sample.
	if got := r.idLabel(id, 0, "/g"); got != "/docker/"+id {
		t.Fatalf("stopped: %q", got)
	}
	if _, ok := r.lookup(id, 0); ok {
		t.Fatal("a stopped container has directories to sample")
	}
	// Restarted under another parent: a new pid, read again.
	moved := "/dockscope-test-parent/" + id
	for _, d := range v1Dirs(filepath.Join(h.top, "sys/fs/cgroup"), moved).list() {
		os.MkdirAll(d, 0o755)
	}
	writeFile(t, filepath.Join(h.proc, "43", "cgroup"), "2:cpuacct:"+moved+"\n1:cpu:"+moved+"\n4:memory:"+moved+"\n")
	if got := r.idLabel(id, 43, "/g"); got != moved {
		t.Fatalf("restarted: %q, want %q", got, moved)
	}
	if _, ok := r.lookup(id, 42); ok {
		t.Error("the old run's pid still finds directories")
	}
	// Gone: a new run whose process is already gone falls back.
	now := time.Now()
	r.now = func() time.Time { return now }
	if got := r.idLabel(id, 44, "/g"); got != "/g" {
		t.Fatalf("vanished process: %q", got)
	}
	if _, ok := r.lookup(id, 43); ok {
		t.Error("a failed resolution left the previous run's directories")
	}
	// A failure is not retried on every event of the run, but after a while.
	writeFile(t, filepath.Join(h.proc, "44", "cgroup"), "2:cpuacct:"+moved+"\n1:cpu:"+moved+"\n4:memory:"+moved+"\n")
	if got := r.idLabel(id, 44, "/g"); got != "/g" {
		t.Fatalf("a failed run was resolved again at once: %q", got)
	}
	now = now.Add(warnEvery)
	if got := r.idLabel(id, 44, "/g"); got != moved {
		t.Fatalf("a failed run was not resolved again after %v: %q", warnEvery, got)
	}
	r.forget(id)
	if got := r.idLabel(id, 0, "/g"); got != "/g" {
		t.Errorf("forgotten container: %q", got)
	}
}

// TestCgroupNotTrustedWithoutTheContainersID: a pid that is some other
// process (a /proc of another PID namespace) is not taken for the
// container, and a process below the container's cgroup is.
func TestCgroupNotTrustedWithoutTheContainersID(t *testing.T) {
	id := caseID(t, "v2-systemd")
	for cgroup, want := range map[string]string{
		"0::/user.slice/user-1000.slice/session-3.scope\n": "/g",
		"0::/\n": "/g",
		"0::/system.slice/docker-" + id + ".scope/init.scope\n": "/system.slice/docker-" + id + ".scope",
		"0::/system.slice/docker-" + id + ".scope/../../etc\n":  "/g",
		"garbage\n": "/g",
	} {
		h := layoutCase(t, "v2-systemd", "sys/fs/cgroup", cgroup, true, []string{"sys/fs/cgroup/system.slice/docker-" + id + ".scope/init.scope"})
		r := newCgroupResolver(h.root, h.proc, slog.New(slog.DiscardHandler), false)
		if got := r.idLabel(id, 42, "/g"); got != want {
			t.Errorf("%q: id %q, want %q", cgroup, got, want)
		}
	}
}

// TestCgroupFallbackWarnsOncePerInterval: a host where resolution fails
// fails for every container; one warning a minute says so.
func TestCgroupFallbackWarnsOncePerInterval(t *testing.T) {
	id := caseID(t, "v2-systemd")
	h := layoutCase(t, "v2-systemd", "sys/fs/cgroup", "0::/elsewhere\n", true, nil)
	var buf bytes.Buffer
	r := newCgroupResolver(h.root, h.proc, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), false)
	now := time.Date(2026, 12, 7, 13, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	for pid := range 5 {
		r.idLabel(id, 42+pid, "/g") // pids without files fail too
		now = now.Add(time.Second)
	}
	if n := strings.Count(buf.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings for 5 fallbacks in 5 s:\n%s", n, buf.String())
	}
	now = now.Add(warnEvery)
	r.idLabel(id, 42, "/g")
	if n := strings.Count(buf.String(), "level=WARN"); n != 2 || !strings.Contains(buf.String(), "fallbacks_since_last_warning=5") {
		t.Fatalf("after the interval:\n%s", buf.String())
	}
	// With stats from the API only the id label is at stake: debug.
	buf.Reset()
	q := newCgroupResolver(h.root, h.proc, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), true)
	q.idLabel(id, 42, "/g")
	if buf.Len() != 0 {
		t.Errorf("stats.source api logged: %s", buf.String())
	}
}

// TestCgroupReaderUsesResolvedDirs: with a relative --cgroup-parent the
// memory hierarchy puts the container elsewhere (recorded here); the
// reader follows the resolved directories where the guessed path has no
// files.
func TestCgroupReaderUsesResolvedDirs(t *testing.T) {
	id := caseID(t, "v1-relative-parent")
	const root = "sys/fs/cgroup"
	mem := root + "/memory/process_api/074881d9df869e04bc1c4412fe847b76/dockscope-rel-parent/" + id
	acct := root + "/cpuacct/dockscope-rel-parent/" + id
	h := layoutCase(t, "v1-relative-parent", root, "", false, []string{root + "/cpu/dockscope-rel-parent/" + id})
	for p, content := range map[string]string{
		acct + "/cpuacct.usage":        "1000000\n",
		acct + "/cpuacct.stat":         "user 1\nsystem 2\n",
		mem + "/memory.usage_in_bytes": "4096\n",
		mem + "/memory.stat":           "total_rss 4096\ntotal_cache 0\ntotal_inactive_file 0\n",
	} {
		writeFile(t, filepath.Join(h.top, p), content)
	}
	res := newCgroupResolver(h.root, h.proc, slog.New(slog.DiscardHandler), false)
	guess := "/dockscope-rel-parent/" + id
	if got := res.idLabel(id, 42, guess); got != guess {
		t.Fatalf("id = %q", got)
	}
	r, err := newCgroupReader(h.root, h.proc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.read(statsTarget{cgroupPath: guess}); err == nil {
		t.Fatal("the guessed directories have files: the test shows nothing")
	}
	e, _ := res.lookup(id, 42)
	st, err := r.read(statsTarget{cgroupPath: guess, dirs: e.dirs})
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryUsage != 4096 || st.CPUTotal != time.Millisecond {
		t.Errorf("read %+v", st)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`: "/a b", `/tab\011`: "/tab\t", `/back\134slash`: `/back\slash`, `/x\04`: `/x\04`, `/x\999`: `/x\999`, "/plain": "/plain",
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestParseMountinfo: the cgroup mounts of a recorded table, with
// comma-joined controllers and names, and without one hidden by a later
// mount on the same point.
func TestParseMountinfo(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(cgroupTestdata, "v2-agent-cgroupns", "mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	if got := parseMountinfo(b); !reflect.DeepEqual(got, []cgroupMount{{point: "/sys/fs/cgroup", root: "/../..", v2: true}}) {
		t.Errorf("v2 agent in a namespace: %+v", got)
	}
	b, err = os.ReadFile(filepath.Join(cgroupTestdata, "v1-systemd", "mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	var cpu []cgroupMount
	for _, m := range parseMountinfo(b) {
		if slices.Contains(m.options, "cpuacct") || slices.Contains(m.options, "name=systemd") {
			cpu = append(cpu, m)
		}
	}
	if len(cpu) != 2 || cpu[0].point != "/sys/fs/cgroup/systemd" || cpu[1].point != "/sys/fs/cgroup/cpu,cpuacct" || !slices.Contains(cpu[1].options, "cpu") {
		t.Errorf("v1 systemd host: %+v", cpu)
	}
	lines := parseProcCgroup([]byte("4:cpu,cpuacct:/system.slice/a:b.scope\n1:name=systemd:/x\n0::/y\n0:cpu:/bad\nx::/bad\n2:memory:relative\n"))
	want := []procCgroup{{controllers: []string{"cpu", "cpuacct"}, path: "/system.slice/a:b.scope"}, {controllers: []string{"name=systemd"}, path: "/x"}, {path: "/y"}}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("parseProcCgroup:\n got %+v\nwant %+v", lines, want)
	}
}
