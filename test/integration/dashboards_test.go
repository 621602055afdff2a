//go:build integration

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/prometheus/common/model"

	"github.com/dockscope/dockscope/internal/procfs"
	"github.com/dockscope/dockscope/test/integration/harness"
)

// dashboardQuery is one entry of testdata/dashboard-queries.yaml (its header
// says what each field means).
type dashboardQuery struct {
	ID     string `yaml:"id"`
	Source struct {
		Project string `yaml:"project"`
		File    string `yaml:"file"`
		Item    string `yaml:"item"`
	} `yaml:"source"`
	Expr     string   `yaml:"expr"`
	Skip     string   `yaml:"skip"`
	Needs    []string `yaml:"needs"`
	Optional string   `yaml:"optional"`
	Differs  string   `yaml:"differs"`
	When     *struct {
		Role     string  `yaml:"role"`
		MinCores float64 `yaml:"min_cores"`
	} `yaml:"when"`
	Expect struct {
		Series []struct {
			Match map[string]string `yaml:"match"`
			Min   *float64          `yaml:"min"`
			Max   *float64          `yaml:"max"`
			Of    string            `yaml:"of"`
			Scale float64           `yaml:"scale"`
			// Window is the rate() window the value comes from, 1m or
			// longer than the test: 1m when empty.
			Window string `yaml:"window"`
		} `yaml:"series"`
		Only   bool     `yaml:"only"`
		Absent []string `yaml:"absent"`
		Empty  bool     `yaml:"empty"`
	} `yaml:"expect"`
}

func (q *dashboardQuery) where() string {
	return fmt.Sprintf("%s (%s, %s: %s)", q.ID, q.Source.Project, q.Source.File, q.Source.Item)
}

// loadDashboardQueries reads the data file strictly and checks that every
// entry is complete: a typo in it must not turn a check into nothing.
func loadDashboardQueries(t *testing.T, roles map[string]bool) []dashboardQuery {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "dashboard-queries.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Queries []dashboardQuery `yaml:"queries"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("testdata/dashboard-queries.yaml: %v", err)
	}
	seen := map[string]bool{}
	for _, q := range f.Queries {
		e := q.Expect
		hasExpect := len(e.Series) > 0 || len(e.Absent) > 0 || e.Empty
		switch {
		case q.ID == "" || seen[q.ID]:
			t.Fatalf("dashboard query %q: missing or duplicate id", q.ID)
		case q.Source.Project == "" || q.Source.File == "" || q.Source.Item == "":
			t.Fatalf("%s: incomplete source", q.ID)
		case strings.TrimSpace(q.Expr) == "":
			t.Fatalf("%s: no expr", q.ID)
		case q.Skip != "" && (hasExpect || len(q.Needs) > 0 || q.Optional != ""):
			t.Fatalf("%s: a skipped entry has nothing else", q.ID)
		case q.Skip == "" && !hasExpect:
			t.Fatalf("%s: neither skip nor expect", q.ID)
		case e.Empty && (len(e.Series) > 0 || e.Only):
			t.Fatalf("%s: empty excludes series and only", q.ID)
		case q.When != nil && (!measuredRoles[q.When.Role] || q.When.MinCores <= 0):
			t.Fatalf("%s: when needs a measured role (%v) and min_cores", q.ID, measuredRoles)
		}
		for _, s := range e.Series {
			if s.Min == nil || s.Max == nil || *s.Min > *s.Max {
				t.Fatalf("%s: series %v needs min <= max", q.ID, s.Match)
			}
			if r, ok := s.Match["name"]; ok && !roles[r] {
				t.Fatalf("%s: unknown role %q", q.ID, r)
			}
			if s.Of != "" && !measuredRoles[s.Of] {
				t.Fatalf("%s: of: %q: only the CPU of %v is measured", q.ID, s.Of, measuredRoles)
			}
		}
		for _, r := range e.Absent {
			if !roles[r] {
				t.Fatalf("%s: unknown role %q", q.ID, r)
			}
		}
		seen[q.ID] = true
	}
	return f.Queries
}

// measuredRoles are the roles whose CPU the test reads from the kernel.
var measuredRoles = map[string]bool{"burner": true, "app": true}

// roleCores is the kernel's account of a role's process: CPU seconds used
// since it started, its age, and the cores it got over the last minute.
type roleCores struct {
	cpu, age, last float64
}

// over is what rate() over a window of that many seconds reads for a
// process whose counter PromQL extrapolates to zero at its start: the CPU
// used within the window over the window's length. Only a 1m window ending
// now and windows longer than the process's age are known.
func (c roleCores) over(window float64) float64 {
	if window >= c.age {
		return c.cpu / window
	}
	return c.last
}

// check compares a query's result with its expectations; names maps roles
// to container names, cores to what the kernel gave them. It returns what is
// wrong, or "".
func (q *dashboardQuery) check(res []harness.PromSample, names map[string]string, cores map[string]roleCores) string {
	e := q.Expect
	if e.Empty {
		if len(res) != 0 {
			return fmt.Sprintf("want no result, got %s", formatSamples(res))
		}
		return ""
	}
	if len(res) == 0 && q.Optional != "" {
		return ""
	}
	var problems []string
	matched := make([]bool, len(res))
	for _, want := range e.Series {
		match := map[string]string{}
		for k, v := range want.Match {
			if k == "name" {
				v = names[v]
			}
			match[k] = v
		}
		found := false
		for i, s := range res {
			if !labelsMatch(s.Labels, match) {
				continue
			}
			found, matched[i] = true, true
			lo, hi := *want.Min, *want.Max
			if want.Of != "" {
				scale := want.Scale
				if scale == 0 {
					scale = 1
				}
				window := 60.0
				if want.Window != "" {
					d, err := model.ParseDuration(want.Window)
					if err != nil {
						return fmt.Sprintf("window %q: %v", want.Window, err)
					}
					window = time.Duration(d).Seconds()
				}
				truth := cores[want.Of].over(window)
				lo, hi = lo*truth*scale, hi*truth*scale
			}
			if s.Value < lo || s.Value > hi || math.IsNaN(s.Value) {
				problems = append(problems, fmt.Sprintf("%v = %g, want %g..%g", want.Match, s.Value, lo, hi))
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("no series %v", want.Match))
		}
	}
	if e.Only {
		for i, s := range res {
			if !matched[i] {
				problems = append(problems, fmt.Sprintf("unexpected series %v = %g", s.Labels, s.Value))
			}
		}
	}
	for _, r := range e.Absent {
		for _, s := range res {
			if s.Labels["name"] == names[r] {
				problems = append(problems, fmt.Sprintf("%s's container is in the result: %v = %g", r, s.Labels, s.Value))
			}
		}
	}
	if len(problems) == 0 {
		return ""
	}
	return strings.Join(problems, "; ") + "; result: " + formatSamples(res)
}

// labelsMatch: every wanted label has the value ("" = absent, as in PromQL).
func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func formatSamples(res []harness.PromSample) string {
	var parts []string
	for _, s := range res {
		l := map[string]string{}
		for k, v := range s.Labels {
			if k != "id" && k != "image" && k != "instance" && k != "job" {
				l[k] = v
			}
		}
		parts = append(parts, fmt.Sprintf("%v=%g", l, s.Value))
	}
	sort.Strings(parts)
	return "[" + strings.Join(parts, " ") + "]"
}

// dashboardRoles are the containers TestDashboardQueries runs (the data
// file's header describes them).
var dashboardRoles = []string{"burner", "limited", "nolimits", "sandbox", "app", "oom", "exited", "restarting", "swarm", "removed"}

// TestDashboardQueries runs the PromQL of popular cAdvisor dashboards and
// alert rules (testdata/dashboard-queries.yaml: dockprom's containers
// dashboard, Grafana dashboard 193, kubernetes-mixin's container panels,
// recording rules and CPUThrottlingHigh, awesome-prometheus-alerts' cAdvisor
// rules) on a real Prometheus scraping the agent every 5 s, with a container
// of each kind running, and checks that each returns the containers it
// should with values of the right magnitude. Then every panel of the
// project's own dashboard (deploy/grafana/dockscope.json) must return data.
//
// Entries that need a metric the agent does not export yet are skipped, and
// logged, until it does.
//
// Not parallel: it may put the engine into Swarm mode (as
// TestSwarmStackDeploysGlobalAgent), and its burning containers want the
// CPU they ask for. It takes about two and a half minutes.
func TestDashboardQueries(t *testing.T) {
	harness.SkipWithoutCgroups(t)
	harness.SkipOnPodman(t, "it needs Swarm mode, which Podman does not have")
	roleSet := map[string]bool{}
	for _, r := range dashboardRoles {
		roleSet[r] = true
	}
	queries := loadDashboardQueries(t, roleSet)
	useSwarmManager(t)

	scope := uniq(t, "dash")
	names := map[string]string{}
	for _, r := range dashboardRoles {
		names[r] = uniq(t, "dash-"+r)
	}
	a := startAgent(t, agentOpts{scope: scope})
	p := harness.PrometheusJob(t, "cadvisor", strings.TrimPrefix(a.url, "http://"), 5*time.Second)
	started := time.Now()

	img := harness.WorkloadImage(t)
	runCmd := func(role string, opts []string, cmd ...string) string {
		return harness.RunContainer(t, append(append(append(scopeArgs(scope, names[role]), opts...), img), cmd...)...)
	}
	pod := []string{"--label", "io.kubernetes.pod.name=web-0", "--label", "io.kubernetes.pod.namespace=shop"}
	runCmd("removed", nil, "sleep")
	pids := map[string]string{}
	pids["burner"] = runCmd("burner", nil, "burn", "-cores", "1")
	runCmd("limited", []string{"--memory", "64m", "--cpus", "0.5"}, "alloc", "-mb", "56")
	// With a health check that fails: the project's dashboard has panels for it.
	harness.RunContainer(t, append(scopeArgs(scope, names["nolimits"]), harness.WorkloadHealthImage(t), "sleep")...)
	sandbox := runCmd("sandbox", append(pod, "--label", "io.kubernetes.container.name=POD", "--label", "io.kubernetes.docker.type=podsandbox"), "sleep")
	pids["app"] = runCmd("app", append(pod, "--label", "io.kubernetes.container.name=app", "--label", "io.kubernetes.docker.type=container",
		"--network", "container:"+sandbox, "--cpus", "0.01"), "burn", "-cores", "1")
	runCmd("oom", []string{"--memory", "32m", "--memory-swap", "32m"}, "alloc", "-mb", "64", "-after", "1s")
	runCmd("exited", nil, "exit", "-code", "3")
	runCmd("restarting", []string{"--restart", "always"}, "exit", "-code", "1", "-after", "2s")

	// The Swarm task: its container's name is the task's, known once it runs.
	svc := uniq(t, "dash-svc")
	harness.Docker(t, "service", "create", "--detach", "--no-resolve-image", "--name", svc, "--replicas", "1",
		"--limit-memory", "64m", "--container-label", harness.TestLabel, "--container-label", "dockscope.scope="+scope,
		img, "sleep")
	t.Cleanup(func() {
		if _, err := harness.TryDocker("service", "rm", svc); err != nil {
			t.Logf("removing service %s: %v", svc, err)
		}
	})
	harness.WaitFor(t, 60*time.Second, 500*time.Millisecond, func() (bool, string) {
		out, _ := harness.TryDocker("ps", "--filter", "label=com.docker.swarm.service.name="+svc, "--format", "{{.Names}}")
		names["swarm"] = strings.TrimSpace(out)
		return names["swarm"] != "" && !strings.Contains(names["swarm"], "\n"), fmt.Sprintf("the task of %s: %q", svc, out)
	})

	// The removed container: in Prometheus first, then gone.
	p.WaitUp(t, 30*time.Second)
	harness.WaitFor(t, 30*time.Second, time.Second, func() (bool, string) {
		q := fmt.Sprintf(`container_last_seen{name=%q}`, names["removed"])
		res, err := p.TryQuery(q)
		return err == nil && len(res) == 1, fmt.Sprintf("%s: %v %v", q, res, err)
	})
	harness.Docker(t, "rm", "-f", names["removed"])
	removedAt := time.Now()

	// rate() windows of a minute filled, offset 1m with data behind it, and
	// ContainerKilled's 60 s passed since the removal. Meanwhile, the
	// kernel's account of the busy loops, since they started and over the
	// last minute.
	type reading struct {
		cpu float64
		at  time.Time
	}
	procs, starts := map[string]int{}, map[string]time.Time{}
	read := func(role string) reading {
		s, err := procfs.CPUSeconds(procs[role])
		if err != nil {
			t.Fatalf("%s's CPU time: %v", role, err)
		}
		return reading{s, time.Now()}
	}
	for role, id := range pids {
		pid, err := strconv.Atoi(harness.Docker(t, "inspect", "-f", "{{.State.Pid}}", id))
		if err != nil {
			t.Fatalf("%s's pid: %v", role, err)
		}
		at, err := time.Parse(time.RFC3339Nano, harness.Docker(t, "inspect", "-f", "{{.State.StartedAt}}", id))
		if err != nil {
			t.Fatalf("%s's start: %v", role, err)
		}
		procs[role], starts[role] = pid, at
	}
	end := started.Add(110 * time.Second)
	if e := removedAt.Add(75 * time.Second); e.After(end) {
		end = e
	}
	time.Sleep(time.Until(end.Add(-time.Minute)))
	first := map[string]reading{}
	for role := range pids {
		first[role] = read(role)
	}
	time.Sleep(time.Until(end))
	cores := map[string]roleCores{}
	for role := range pids {
		r := read(role)
		c := roleCores{cpu: r.cpu, age: r.at.Sub(starts[role]).Seconds(), last: (r.cpu - first[role].cpu) / r.at.Sub(first[role].at).Seconds()}
		cores[role] = c
		t.Logf("the kernel gave %s %.3f cores over its %.0f s, %.3f over the last minute", role, c.cpu/c.age, c.age, c.last)
	}

	// Which of the metrics the entries need does the agent export now?
	exported := map[string]bool{}
	for _, n := range a.scrape(t).Names() {
		exported[n] = true
	}

	// Evaluate; a failure gets a few more tries, since one instant's value
	// of a rate on a machine others share can stray.
	pending := map[string]string{}
	var ran, skipped, waiting int
	for i := range queries {
		q := &queries[i]
		res, err := p.TryQuery(q.Expr)
		if err != nil {
			t.Errorf("%s: %v", q.where(), err) // also for skipped ones: the expression must parse
			continue
		}
		if q.Skip != "" {
			skipped++
			continue
		}
		var missing []string
		for _, n := range q.Needs {
			if !exported[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			waiting++
			t.Logf("not checked yet: %s needs %s, which the agent does not export", q.ID, strings.Join(missing, ", "))
			continue
		}
		if w := q.When; w != nil && cores[w.Role].last < w.MinCores {
			waiting++
			t.Logf("not checkable here: %s wants %s to have had %g cores, the machine gave it %.3f", q.ID, w.Role, w.MinCores, cores[w.Role].last)
			continue
		}
		ran++
		if q.Differs != "" {
			t.Logf("%s: differs from cAdvisor by design: %s", q.ID, q.Differs)
		}
		if problem := q.check(res, names, cores); problem != "" {
			pending[q.ID] = problem
		} else if len(res) == 0 && q.Optional != "" {
			t.Logf("%s: empty, as it may be here: %s", q.ID, q.Optional)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); len(pending) > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Second)
		for i := range queries {
			q := &queries[i]
			if _, ok := pending[q.ID]; !ok {
				continue
			}
			res, err := p.TryQuery(q.Expr)
			if err != nil {
				pending[q.ID] = err.Error()
				continue
			}
			if problem := q.check(res, names, cores); problem != "" {
				pending[q.ID] = problem
			} else {
				delete(pending, q.ID)
			}
		}
	}
	for i := range queries {
		if problem, ok := pending[queries[i].ID]; ok {
			t.Errorf("%s: %s\n    %s", queries[i].where(), problem, queries[i].Expr)
		}
	}
	t.Logf("%d queries checked, %d skipped as not applicable, %d not checkable yet (metrics the agent lacks, or CPU the machine did not give)", ran, skipped, waiting)

	checkOwnDashboard(t, p)
}

// ownDashboardMayBeEmpty lists the panels of deploy/grafana/dockscope.json
// that have no data in TestDashboardQueries' setup, and why.
var ownDashboardMayBeEmpty = map[string]string{
	"Dropped log lines per container":      "shows only containers that dropped lines (> 0)",
	"Read":                                 "block I/O: none charged to the containers on every machine (a FUSE storage driver)",
	"Written":                              "block I/O, as Read",
	"Operations":                           "block I/O, as Read",
	"Log lines":                            "logs are read only when an OTLP endpoint is set; none here",
	"Checkpoint lag":                       "logs, as Log lines",
	"Log queue":                            "logs, as Log lines",
	"Gaps, drops, failures and reconnects": "logs, as Log lines",
	"Replicas: desired and running":        "the Swarm services reporter is another agent (swarm.services), not started here",
	"Services":                             "the Swarm services reporter is another agent (swarm.services), not started here",
}

// checkOwnDashboard runs every expression of the project's dashboard, with
// its variables set to match everything, and wants data for each panel not
// listed in ownDashboardMayBeEmpty.
func checkOwnDashboard(t *testing.T, p *harness.Prom) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "deploy", "grafana", "dockscope.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []ownPanel `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("deploy/grafana/dockscope.json: %v", err)
	}
	vars := regexp.MustCompile(`\$\{?(__rate_interval|__interval|job|instance|name)\}?`)
	var walk func([]ownPanel)
	checked := 0
	walk = func(panels []ownPanel) {
		for _, panel := range panels {
			walk(panel.Panels)
			if len(panel.Targets) == 0 {
				continue
			}
			var empty []string
			for _, tg := range panel.Targets {
				expr := vars.ReplaceAllStringFunc(tg.Expr, func(v string) string {
					if strings.Contains(v, "interval") {
						return "1m"
					}
					return ".*"
				})
				res, err := p.TryQuery(expr)
				if err != nil {
					t.Errorf("deploy/grafana/dockscope.json panel %q target %s: %v", panel.Title, tg.RefID, err)
					continue
				}
				if len(res) == 0 {
					empty = append(empty, tg.RefID+": "+expr)
				}
				checked++
			}
			why, mayBeEmpty := ownDashboardMayBeEmpty[panel.Title]
			switch {
			case len(empty) == len(panel.Targets) && !mayBeEmpty:
				t.Errorf("deploy/grafana/dockscope.json panel %q has no data:\n    %s", panel.Title, strings.Join(empty, "\n    "))
			case len(empty) > 0 && mayBeEmpty:
				t.Logf("deploy/grafana/dockscope.json panel %q: empty, as it may be here (%s)", panel.Title, why)
			case len(empty) > 0:
				t.Logf("deploy/grafana/dockscope.json panel %q: targets without data: %s", panel.Title, strings.Join(empty, "; "))
			}
		}
	}
	walk(d.Panels)
	t.Logf("deploy/grafana/dockscope.json: %d expressions run", checked)
}

type ownPanel struct {
	Title   string     `json:"title"`
	Panels  []ownPanel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}
