//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// The tests named TestCgroupV2VM* run inside the Debian trixie VM of
// scripts/cgroupv2-vm.sh (make integration-cgroupv2): kernel 6.12 with only
// cgroup v2, Docker 26.1 with the systemd cgroup driver, no network, no Go.
// The script sets these; the binaries come from DOCKSCOPE_TEST_BIN_DIR.
const (
	cgroupV2VMEnv   = "DOCKSCOPE_TEST_CGROUPV2_VM"
	recordDirEnv    = "DOCKSCOPE_TEST_RECORD_DIR" // copy the containers' cgroup files there
	vmImage         = "dockscope-vm-busybox:test"
	vmCgroupRoot    = "/sys/fs/cgroup"
	vmSystemdPrefix = "/system.slice/docker-"
)

// skipUnlessCgroupV2VM skips outside the VM and fails if the VM is not the
// host it is meant to be: cgroup v2 only, Docker's systemd driver.
func skipUnlessCgroupV2VM(t *testing.T) {
	t.Helper()
	if os.Getenv(cgroupV2VMEnv) != "1" {
		t.Skipf("runs in the cgroup v2 + systemd VM only (make integration-cgroupv2; %s=1)", cgroupV2VMEnv)
	}
	if _, err := os.Stat(filepath.Join(vmCgroupRoot, "cgroup.controllers")); err != nil {
		t.Fatalf("no cgroup v2 hierarchy at %s: %v", vmCgroupRoot, err)
	}
	if got := harness.Docker(t, "info", "--format", "{{.CgroupVersion}} {{.CgroupDriver}}"); got != "2 systemd" {
		t.Fatalf("docker info: cgroup version and driver %q, want \"2 systemd\"", got)
	}
}

// vmBusyboxImage imports (once per process) an image of the guest's static
// busybox, its applet links, and the workload binary as /workload: the
// guest has no registry, and busybox gives dd, httpd and wget.
func vmBusyboxImage(t *testing.T) string {
	t.Helper()
	vmImageMu.Lock()
	defer vmImageMu.Unlock()
	if vmImageErr, done := vmImageDone[vmImage]; done {
		if vmImageErr != nil {
			t.Fatal(vmImageErr)
		}
		return vmImage
	}
	err := importBusybox(harness.BuildStatic(t, "./test/workload"))
	vmImageDone[vmImage] = err
	if err != nil {
		t.Fatal(err)
	}
	return vmImage
}

var (
	vmImageMu   sync.Mutex
	vmImageDone = map[string]error{}
)

func importBusybox(workload string) error {
	dir, err := os.MkdirTemp("", "dockscope-busybox-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, d := range []string{"bin", "tmp", "www", "data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	copyFile := func(from, to string) error {
		b, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o755)
	}
	if err := copyFile("/bin/busybox", filepath.Join(dir, "bin", "busybox")); err != nil {
		return fmt.Errorf("the guest's static busybox: %w", err)
	}
	if err := copyFile(workload, filepath.Join(dir, "workload")); err != nil {
		return err
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
				return err
			}
		}
	}
	tarPath := dir + ".tar"
	defer os.Remove(tarPath)
	if out, err := exec.Command("tar", "-C", dir, "-cf", tarPath, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("tar: %v: %s", err, out)
	}
	_, err = harness.TryDocker("import", "--change", `ENV PATH=/bin`, tarPath, vmImage)
	return err
}

// vmContainer is one container of the comparison and its expectations.
type vmContainer struct {
	name, id string
}

// TestCgroupV2VMSourcesAgree runs containers that use CPU under a quota, memory
// under a limit, block I/O on a volume, the network and several processes, lets
// them go idle, and checks that an agent reading the cgroup v2 files and one
// asking the Engine API export the same counters, that the cgroup one read
// files (no fallback), and that both name each container by its systemd scope.
func TestCgroupV2VMSourcesAgree(t *testing.T) {
	skipUnlessCgroupV2VM(t)
	t.Parallel()
	img := vmBusyboxImage(t)
	scope := "cgv2"
	// Each container prints "ready" when its work is done and then idles, so
	// that its counters stand still while the two agents are compared. A
	// docker run takes 5-20 s under emulation: they start side by side.
	vol := uniq(t, "vol")
	// Registered first, so it runs after the container's removal.
	t.Cleanup(func() { harness.TryDocker("volume", "rm", vol) })
	started := runContainers(t, scope, map[string][]string{
		"burn": {"--cpus", "0.5", "--pids-limit", "64", img,
			"sh", "-c", `timeout 15 sh -c 'while :; do :; done'; echo ready; exec sleep 1000000`},
		"mem": {"--memory", "96m", "-v", vol + ":/data", img,
			"sh", "-c", `dd if=/dev/zero of=/data/blob bs=1M count=24 conv=fsync 2>/dev/null && sync && echo ready && exec /workload alloc -mb 24`},
		"srv": {img, "sh", "-c", `dd if=/dev/urandom of=/www/blob bs=1k count=1536 2>/dev/null && echo ready && exec httpd -f -p 8080 -h /www`},
	})
	burn, mem, srv := started["burn"], started["mem"], started["srv"]
	srvIP := harness.Docker(t, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", srv.id)
	cli := runContainers(t, scope, map[string][]string{"cli": {img, "sh", "-c",
		fmt.Sprintf(`until wget -q -O /dev/null http://%s:8080/blob; do sleep 1; done; echo ready; exec sleep 1000000`, srvIP)}})["cli"]
	all := []vmContainer{burn, mem, srv, cli}
	t.Logf("containers started: %v", all)

	api := startAgent(t, agentOpts{scope: scope, stats: "  source: api\n"})
	cg := startAgent(t, agentOpts{scope: scope, stats: "  source: cgroup\n"})
	for _, c := range all {
		waitLogLine(t, c.name, "ready", 90*time.Second)
	}
	t.Log("every container's work is done")
	recordCgroupFiles(t, map[string]vmContainer{"limited": burn, "memory": mem})
	// Both agents sample every second: two rounds after the last work.
	time.Sleep(3 * time.Second)
	for _, a := range []*agent{api, cg} {
		for _, c := range all {
			a.waitValue(t, 30*time.Second, "container_memory_usage_bytes", c.name, nil, func(v float64) bool { return v > 0 })
		}
	}
	ma, mc := api.scrape(t), cg.scrape(t)

	if v, ok := mc.Find("dockscope_stats_samples_total", map[string]string{"source": "cgroup"}); !ok || v.Value == 0 {
		t.Errorf("the cgroup agent took no sample from cgroup files: %v", v)
	}
	if v, _ := mc.Find("dockscope_stats_samples_total", map[string]string{"source": "api"}); v.Value != 0 {
		t.Errorf("the cgroup agent fell back to the Engine API %v times:\n%s", v.Value, cg.proc.Output())
	}
	if out := cg.proc.Output(); strings.Contains(out, "cgroup not found from /proc") || strings.Contains(out, "that sample came from the Engine API") ||
		strings.Contains(out, "cgroup files cannot be read") {
		t.Errorf("the cgroup agent fell back:\n%s", out)
	}
	if out := cg.proc.Output(); !strings.Contains(out, "cgroup_v2=true") && !strings.Contains(out, `"cgroup_v2":true`) {
		t.Errorf("the cgroup agent did not say it reads cgroup v2:\n%s", cg.proc.Output())
	}

	type check struct {
		metric string
		labels map[string]string
		tol    float64 // absolute
	}
	common := []check{
		{"container_cpu_usage_seconds_total", map[string]string{"cpu": "total"}, 0.05},
		{"container_cpu_user_seconds_total", nil, 0.05},
		{"container_cpu_system_seconds_total", nil, 0.05},
		{"container_memory_usage_bytes", nil, 512 << 10},
		{"container_memory_working_set_bytes", nil, 512 << 10},
		{"container_memory_rss", nil, 512 << 10},
		{"container_memory_cache", nil, 512 << 10},
		{"container_pids", nil, 0},
		{"container_network_receive_bytes_total", map[string]string{"interface": "eth0"}, 1024},
		{"container_network_transmit_bytes_total", map[string]string{"interface": "eth0"}, 1024},
		{"container_network_receive_packets_total", map[string]string{"interface": "eth0"}, 4},
		{"container_network_transmit_packets_total", map[string]string{"interface": "eth0"}, 4},
	}
	per := map[string][]check{
		burn.name: {
			{"container_cpu_cfs_periods_total", nil, 2},
			{"container_cpu_cfs_throttled_periods_total", nil, 2},
			{"container_cpu_cfs_throttled_seconds_total", nil, 0.05},
			{"container_spec_cpu_quota", nil, 0},
			{"container_spec_cpu_period", nil, 0},
		},
		mem.name: {{"container_spec_memory_limit_bytes", nil, 0}},
	}
	values := map[string]map[string]float64{} // container → metric → cgroup's value
	for _, c := range all {
		values[c.name] = map[string]float64{}
		wantID := vmSystemdPrefix + c.id + ".scope"
		for _, ch := range append(slices.Clone(common), per[c.name]...) {
			want := map[string]string{"name": c.name}
			maps.Copy(want, ch.labels)
			a, okA := ma.Find(ch.metric, want)
			b, okB := mc.Find(ch.metric, want)
			if !okA || !okB {
				t.Errorf("%s %s: api %v (%v), cgroup %v (%v)", c.name, ch.metric, a.Value, okA, b.Value, okB)
				continue
			}
			values[c.name][ch.metric] = b.Value
			if diff := a.Value - b.Value; diff > ch.tol || -diff > ch.tol {
				t.Errorf("%s %s: api %v, cgroup %v (differ by more than %v)", c.name, ch.metric, a.Value, b.Value, ch.tol)
			}
			for src, s := range map[string]harness.Sample{"api": a, "cgroup": b} {
				if s.Labels["id"] != wantID {
					t.Errorf("%s %s from the %s agent: id %q, want %q", c.name, ch.metric, src, s.Labels["id"], wantID)
				}
			}
		}
		// Block I/O: the same devices with the same byte counts (cgroup v2's
		// Engine API has no operation counts; io.stat has them).
		for _, m := range []string{"container_fs_reads_bytes_total", "container_fs_writes_bytes_total"} {
			da, dc := devices(ma.FindAll(m, map[string]string{"name": c.name})), devices(mc.FindAll(m, map[string]string{"name": c.name}))
			if !maps.Equal(da, dc) {
				t.Errorf("%s %s per device: api %v, cgroup %v", c.name, m, da, dc)
			}
			for dev, v := range dc {
				values[c.name][m+" "+dev] = v
			}
		}
		t.Logf("%s (%.12s): %v", c.name, c.id, values[c.name])
	}

	// Both export the same series of each container, but for what cgroup
	// v2's Engine API (26.1) does not pass on and the README lists as read
	// from files only: io.stat's operation counts (it passes only rbytes
	// and wbytes), memory.peak, memory.stat's kernel and refault keys,
	// memory.events, cpu.stat's burst counters and the pressure files.
	onlyFromFiles := map[string]bool{"container_fs_reads_total": true, "container_fs_writes_total": true,
		"container_memory_max_usage_bytes": true, "container_memory_kernel_usage": true,
		"container_memory_workingset_refault_file_total": true, "container_memory_workingset_refault_anon_total": true,
		"container_memory_events_high_total": true, "container_memory_events_max_total": true,
		"container_cpu_cfs_burst_periods_total": true, "container_cpu_cfs_burst_seconds_total": true}
	for _, r := range []string{"cpu", "memory", "io"} {
		for _, k := range []string{"stalled", "waiting"} {
			onlyFromFiles["container_pressure_"+r+"_"+k+"_seconds_total"] = true
		}
	}
	for _, c := range all {
		sa, sc := seriesOf(ma, c.name, nil), seriesOf(mc, c.name, onlyFromFiles)
		if !slices.Equal(sa, sc) {
			t.Errorf("%s: series only from the api agent %v, only from the cgroup agent %v", c.name, minus(sa, sc), minus(sc, sa))
		}
	}

	// What the workloads did shows in the counters the two agree on.
	if v := values[burn.name]["container_cpu_cfs_throttled_periods_total"]; v < 10 {
		t.Errorf("the burner under --cpus 0.5 was throttled in %v periods", v)
	}
	if q, p := values[burn.name]["container_spec_cpu_quota"], values[burn.name]["container_spec_cpu_period"]; q != 50000 || p != 100000 {
		t.Errorf("cpu quota/period %v/%v, want 50000/100000 (cpu.max %q)", q, p, readScope(t, burn.id, "cpu.max"))
	}
	if u := values[burn.name]["container_cpu_usage_seconds_total"]; u < 2 {
		t.Errorf("the burner used %v s of CPU", u)
	}
	if v := values[mem.name]["container_spec_memory_limit_bytes"]; v != 96<<20 {
		t.Errorf("memory limit %v, want %v", v, 96<<20)
	}
	if rss := values[mem.name]["container_memory_rss"]; rss < 24<<20 {
		t.Errorf("rss %v after allocating 24 MiB", rss)
	}
	var written float64
	for k, v := range values[mem.name] {
		if strings.HasPrefix(k, "container_fs_writes_bytes_total ") {
			written += v
		}
	}
	if written < 24<<20 {
		t.Errorf("%v bytes written after dd of 24 MiB with fsync", written)
	}
	if rx := values[cli.name]["container_network_receive_bytes_total"]; rx < 1536<<10 {
		t.Errorf("the client received %v bytes of a 1.5 MiB download", rx)
	}
	if tx := values[srv.name]["container_network_transmit_bytes_total"]; tx < 1536<<10 {
		t.Errorf("the server sent %v bytes of a 1.5 MiB download", tx)
	}
	// Usage and working set: the kernel's memory.current, and that less
	// inactive_file (cAdvisor's working set; what `docker stats` shows).
	current := parseUint(t, readScope(t, mem.id, "memory.current"))
	if u := values[mem.name]["container_memory_usage_bytes"]; u-current > 1<<20 || current-u > 1<<20 {
		t.Errorf("container_memory_usage_bytes %v, memory.current %v", u, current)
	}
	inactive := memoryStatKey(t, readScope(t, mem.id, "memory.stat"), "inactive_file")
	if ws := values[mem.name]["container_memory_working_set_bytes"]; ws-(current-inactive) > 1<<20 || (current-inactive)-ws > 1<<20 {
		t.Errorf("container_memory_working_set_bytes %v, memory.current - inactive_file %v", ws, current-inactive)
	}
}

// TestCgroupV2VMLogsAndEvents: on the systemd-driver host, a container's log
// lines arrive exactly once on their streams, and its lifecycle events
// (start, die with the exit code) arrive as records.
func TestCgroupV2VMLogsAndEvents(t *testing.T) {
	skipUnlessCgroupV2VM(t)
	t.Parallel()
	img := vmBusyboxImage(t)
	col := harness.Otelcol(t)
	scope := "cgv2logs"
	a := startLogAgent(t, col, scope, "", 64)

	const lines, stderrEvery = 500, 7
	logger := uniq(t, "log")
	harness.RunContainer(t, append(scopeArgs(scope, logger), img, "/workload", "log", "-lines", fmt.Sprint(lines),
		"-stderr-every", fmt.Sprint(stderrEvery), "-then", "sleep")...)
	waitShipped(t, col, logger, lines, 90*time.Second)
	time.Sleep(2 * time.Second) // any duplicate would have arrived
	checkNumbered(t, logger, shipped(t, col, logger), lines, stderrEvery, 0)

	exiter := uniq(t, "exit")
	harness.RunContainer(t, append(scopeArgs(scope, exiter), img, "/workload", "exit", "-code", "3", "-after", "500ms")...)
	a.waitValue(t, 60*time.Second, "container_last_exit_code", exiter, nil, func(v float64) bool { return v == 3 })
	var evs map[string]harness.LogRecord
	harness.WaitFor(t, 60*time.Second, 500*time.Millisecond, func() (bool, string) {
		evs = shippedEvents(t, col, exiter)
		_, start := evs["container.start"]
		_, die := evs["container.die"]
		return start && die, fmt.Sprintf("events of %s so far: %v", exiter, slices.Sorted(maps.Keys(evs)))
	})
	if die := evs["container.die"]; fmt.Sprint(die.Attrs["process.exit.code"]) != "3" {
		t.Errorf("die record: attrs %v", die.Attrs)
	}
}

// runContainers starts containers side by side (docker run -d with the
// test label and scope; each map value is docker run's options, image and
// command) and removes them when the test ends. Keyed like specs.
func runContainers(t *testing.T, scope string, specs map[string][]string) map[string]vmContainer {
	t.Helper()
	type result struct {
		key string
		c   vmContainer
		err error
	}
	results := make(chan result, len(specs))
	for key, args := range specs {
		go func() {
			name := uniq(t, key)
			out, err := harness.TryDocker(append(append([]string{"run", "-d", "--label", harness.TestLabel}, scopeArgs(scope, name)...), args...)...)
			if i := strings.LastIndexByte(out, '\n'); i >= 0 {
				out = out[i+1:]
			}
			results <- result{key, vmContainer{name: name, id: out}, err}
		}()
	}
	out := map[string]vmContainer{}
	var errs []error
	for range specs {
		r := <-results
		if r.c.id != "" {
			t.Cleanup(func() { harness.TryDocker("rm", "-f", "-v", r.c.id) })
		}
		if r.err != nil {
			errs = append(errs, r.err)
		}
		out[r.key] = r.c
	}
	if len(errs) > 0 {
		t.Fatalf("starting containers: %v", errs)
	}
	return out
}

// waitLogLine waits until the container's output has the line.
func waitLogLine(t *testing.T, name, line string, timeout time.Duration) {
	t.Helper()
	harness.WaitFor(t, timeout, time.Second, func() (bool, string) {
		out, err := harness.TryDocker("logs", name)
		if err != nil {
			return false, err.Error()
		}
		return slices.Contains(strings.Split(out, "\n"), line), fmt.Sprintf("%s has not printed %q: %q", name, line, out)
	})
}

// seriesOf lists a container's series (name and labels) in one
// exposition, without the names in skip.
func seriesOf(m harness.Metrics, container string, skip map[string]bool) []string {
	var out []string
	for name, samples := range m {
		if skip[name] {
			continue
		}
		for _, s := range samples {
			if s.Labels["name"] == container {
				str := s.String() // name{labels} value
				out = append(out, str[:strings.LastIndexByte(str, ' ')])
			}
		}
	}
	slices.Sort(out)
	return out
}

// minus is what of a is not in b.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// devices maps a device label to the sample's value.
func devices(samples []harness.Sample) map[string]float64 {
	out := map[string]float64{}
	for _, s := range samples {
		out[s.Labels["device"]] = s.Value
	}
	return out
}

func readScope(t *testing.T, id, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vmCgroupRoot, vmSystemdPrefix+id+".scope", file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func parseUint(t *testing.T, s string) float64 {
	t.Helper()
	var v uint64
	if _, err := fmt.Sscan(s, &v); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return float64(v)
}

func memoryStatKey(t *testing.T, stat, key string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(stat, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return parseUint(t, v)
		}
	}
	t.Fatalf("memory.stat has no %s", key)
	return 0
}

// recordCgroupFiles copies, when DOCKSCOPE_TEST_RECORD_DIR is set, each
// container's cgroup directory files, its main process's /proc/<pid>/cgroup
// and mountinfo, the agent's view of the mount table, and the Engine's stats
// response of the same moment: the fixtures of the collector's unit tests.
func recordCgroupFiles(t *testing.T, containers map[string]vmContainer) {
	t.Helper()
	base := os.Getenv(recordDirEnv)
	if base == "" {
		return
	}
	for label, c := range containers {
		dir := filepath.Join(base, label)
		if err := os.MkdirAll(filepath.Join(dir, "cgroup"), 0o755); err != nil {
			t.Fatal(err)
		}
		write := func(name string, b []byte) {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		stats := engineGet(t, "/containers/"+c.id+"/stats?stream=false")
		scopeDir := filepath.Join(vmCgroupRoot, vmSystemdPrefix+c.id+".scope")
		entries, err := os.ReadDir(scopeDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if b, err := os.ReadFile(filepath.Join(scopeDir, e.Name())); err == nil && e.Type().IsRegular() {
				if err := os.WriteFile(filepath.Join(dir, "cgroup", e.Name()), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		write("stats.json", stats)
		write("id.txt", []byte(c.id+"\n"))
		write("inspect.json", engineGet(t, "/containers/"+c.id+"/json"))
		pid := harness.Docker(t, "inspect", "-f", "{{.State.Pid}}", c.id)
		for _, f := range []string{"cgroup", "mountinfo", "net/dev"} {
			b, err := os.ReadFile(filepath.Join("/proc", pid, f))
			if err != nil {
				t.Fatal(err)
			}
			write("proc-pid-"+strings.ReplaceAll(f, "/", "-")+".txt", b)
		}
	}
	for src, dst := range map[string]string{"/proc/self/mountinfo": "host-mountinfo.txt", filepath.Join(vmCgroupRoot, "cgroup.controllers"): "host-cgroup.controllers"} {
		if b, err := os.ReadFile(src); err == nil {
			os.WriteFile(filepath.Join(base, dst), b, 0o644)
		}
	}
	for _, p := range []string{"/version", "/info"} {
		os.WriteFile(filepath.Join(base, "engine"+strings.ReplaceAll(p, "/", "-")+".json"), engineGet(t, p), 0o644)
	}
	t.Logf("recorded the cgroup files of %d containers in %s", len(containers), base)
}

// engineGet is a GET of the Engine API on its unix socket.
func engineGet(t *testing.T, path string) []byte {
	t.Helper()
	sock := harness.DockerSocket(t)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://engine" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v: %s", path, resp.StatusCode, err, b)
	}
	return b
}
