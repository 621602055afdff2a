package collector

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/dockscope/dockscope/collector/logparse"
	"github.com/dockscope/dockscope/pipeline"
)

// Responses of Debian's Engine 28.5 (API 1.51, containerd 2.1) on cgroup v1,
// recorded by scripts/record-engine-fixtures.sh from scripts/engine28.sh's
// daemon: the same shapes as the 20.10 ones, so that what the agent decodes
// is known to hold on a current Engine too.
const e28Dir = "testdata/engine-28.5-cgroupv1"

func TestStatsEngine28OneShot(t *testing.T) {
	r := readJSON[engineStats](t, filepath.Join(e28Dir, "stats-oneshot.json"))
	got, err := statsFromResponse(r)
	if err != nil {
		t.Fatal(err)
	}
	want := pipeline.Stats{
		Read:             time.Date(2026, 12, 7, 12, 34, 27, 893177128, time.UTC),
		CPUTotal:         47104262,
		CPUUser:          20 * time.Millisecond,
		CPUSystem:        20 * time.Millisecond,
		CPUPeriods:       6, // --cpus 0.5 sets a CFS quota: periods are counted
		OnlineCPUs:       2,
		MemoryUsage:      1421312,
		MemoryWorkingSet: 1421312, // total_inactive_file is 0
		MemoryRSS:        651264,
		MemoryCache:      0,
		Pids:             6,
		Present:          pipeline.MemMaxUsage | pipeline.MemFileDetail | pipeline.MemFaults | pipeline.MemFailcnt,
		Memory:           pipeline.MemoryDetail{MaxUsage: 3817472, Pgfault: 2159, TotalPgfault: 2159},
		Networks: []pipeline.NetworkStats{{
			Interface: "eth0", RxBytes: 266, RxPackets: 3, TxBytes: 84, TxPackets: 2,
		}},
		Disks: []pipeline.DiskStats{}, // vfs: no block I/O accounted
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("28.5 one-shot stats:\n got %+v\nwant %+v", got, want)
	}
}

// Engine 28.5 leaves the container's id and name out of a one-shot stats
// response (20.10 sends them): nothing may depend on them.
func TestStatsEngine28OneShotHasNoIDOrName(t *testing.T) {
	raw := readJSON[map[string]json.RawMessage](t, filepath.Join(e28Dir, "stats-oneshot.json"))
	if _, ok := raw["id"]; ok {
		t.Skip("the fixture has an id: re-recorded from another Engine?")
	}
	r := readJSON[engineStats](t, filepath.Join(e28Dir, "stats-oneshot.json"))
	if _, err := statsFromResponse(r); err != nil {
		t.Fatalf("a one-shot sample without id and name: %v", err)
	}
}

// Two samples a second apart: CPU usage comes from the store's previous
// sample, and the response's own precpu_stats agree with it.
func TestStatsEngine28TwoSamples(t *testing.T) {
	one := readJSON[engineStats](t, filepath.Join(e28Dir, "stats-oneshot.json"))
	two := readJSON[engineStats](t, filepath.Join(e28Dir, "stats-twosample.json"))
	first, err := statsFromResponse(one)
	if err != nil {
		t.Fatal(err)
	}
	second, err := statsFromResponse(two)
	if err != nil {
		t.Fatal(err)
	}
	// The agent does not read precpu_stats; the Engine's own previous
	// sample is the one-shot one, which dates the pair.
	full := readJSON[container.StatsResponse](t, filepath.Join(e28Dir, "stats-twosample.json"))
	if time.Duration(full.PreCPUStats.CPUUsage.TotalUsage) != first.CPUTotal {
		t.Errorf("precpu total %d, want the one-shot sample's %d", full.PreCPUStats.CPUUsage.TotalUsage, first.CPUTotal)
	}
	s := pipeline.NewStore()
	s.Upsert(pipeline.ContainerMeta{ID: "c"}, pipeline.ContainerState{Status: "running"}, pipeline.ContainerSpec{})
	s.SetStats("c", first)
	s.SetStats("c", second)
	snap, _ := s.Get("c")
	wantCores := float64(second.CPUTotal-first.CPUTotal) / float64(second.Read.Sub(first.Read))
	if !snap.Stats.HasCPUUsage || snap.Stats.CPUUsageCores != wantCores || wantCores <= 0 || wantCores > 1 {
		t.Errorf("CPU usage = %v cores (has %v), want %v", snap.Stats.CPUUsageCores, snap.Stats.HasCPUUsage, wantCores)
	}
}

func TestInspectEngine28(t *testing.T) {
	in := readJSON[container.InspectResponse](t, filepath.Join(e28Dir, "inspect-healthy.json"))
	allow := func(k string) bool { return k == "com.docker.compose.service" }
	meta, state, spec := containerFromInspect(in, "host-1", allow)
	wantMeta := pipeline.ContainerMeta{
		ID:             "2b9beb29ec87bfe2b92fcdc6f042e5047dc4d16acad0b3075ae74ba27a801880",
		Name:           "fx-hc",
		Image:          "fx-health:record",
		ImageName:      "fx-health",
		ImageTag:       "record",
		ImageID:        "sha256:ecfe211363da40a54ff8a348ba84e8392d449905ba5f0417436627fa77f6828b",
		Hostname:       "host-1",
		ComposeProject: "demo",
		ComposeService: "web",
		Labels:         map[string]string{"com.docker.compose.service": "web"},
	}
	if !reflect.DeepEqual(meta, wantMeta) {
		t.Errorf("meta:\n got %+v\nwant %+v", meta, wantMeta)
	}
	if state.Status != "running" || state.Health != "healthy" || state.ExitCode != 0 || state.LogDriver != "json-file" || !state.Running() {
		t.Errorf("state = %+v", state)
	}
	// The container was restarted: FinishedAt is the first run's end,
	// before StartedAt, so it is not the end of this run.
	if !state.FinishedAt.IsZero() && state.FinishedAt.After(state.StartedAt) {
		t.Errorf("FinishedAt %v after StartedAt %v for a running container", state.FinishedAt, state.StartedAt)
	}
	// Engine 28 reports CpuShares 0 (unset), as 20.10 does: the default weight.
	wantSpec := pipeline.ContainerSpec{MemoryLimit: 64 << 20, CPUQuota: 50000, CPUPeriod: 100000, CPUShares: 1024}
	if spec != wantSpec {
		t.Errorf("spec = %+v, want %+v", spec, wantSpec)
	}

	ex := readJSON[container.InspectResponse](t, filepath.Join(e28Dir, "inspect-exited-3.json"))
	meta, state, _ = containerFromInspect(ex, "h", nil)
	if meta.Name != "fx-exit" || state.Status != "exited" || state.ExitCode != 3 || state.Running() || state.FinishedAt.IsZero() {
		t.Errorf("exited container: meta %+v state %+v", meta, state)
	}
}

// The events of a create/start/exec health checks/restart/die sequence:
// every one advances the resume cursor once, health details are split off,
// and Engine 28's die carries exitCode (and execDuration, which is not kept).
func TestEventsEngine28(t *testing.T) {
	f, err := os.Open(filepath.Join(e28Dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cursor eventCursor
	actions := map[string]int{}
	var health, dieCodes []string
	var sequence []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m events.Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if !cursor.advance(m) {
			t.Fatalf("event %s %s seen as a replay", m.Actor.ID[:12], m.Action)
		}
		if cursor.advance(m) {
			t.Fatalf("replayed event %s %s seen as new", m.Actor.ID[:12], m.Action)
		}
		action, detail := splitAction(m.Action)
		actions[action]++
		switch action {
		case "health_status":
			health = append(health, detail)
		case "die":
			dieCodes = append(dieCodes, m.Actor.Attributes["exitCode"])
			ev := eventRecord(action, detail, m.Actor.Attributes)
			for _, a := range ev.Attrs {
				if strings.Contains(a.Key, "duration") {
					t.Errorf("die record keeps %s", a.Key)
				}
			}
		}
		if m.Actor.Attributes["name"] == "fx-hc" && countedActions[action] {
			sequence = append(sequence, action)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if actions["health_status"] != 2 || actions["restart"] != 1 || actions["exec_start"] == 0 {
		t.Errorf("actions = %v", actions)
	}
	if !reflect.DeepEqual(health, []string{"healthy", "healthy"}) {
		t.Errorf("health details = %v", health)
	}
	if !slices.Contains(dieCodes, "3") {
		t.Errorf("die exit codes = %v, want one 3", dieCodes)
	}
	// docker restart on 28.5: kill, stop, then die (20.10: kill, die, stop).
	// Both lead to one inspect after the batch; the order must not matter.
	if want := []string{"create", "start", "health_status", "kill", "stop", "die", "start", "restart", "health_status"}; !reflect.DeepEqual(sequence, want) {
		t.Errorf("fx-hc lifecycle = %v, want %v", sequence, want)
	}
}

// The log stream's framing on API 1.51: multiplexed (8-byte headers) with
// Content-Type application/vnd.docker.multiplexed-stream, raw for a TTY with
// application/vnd.docker.raw-stream; 20.10 at API 1.41 sends neither type.
// The reader goes by the container's Config.Tty, not the header.
func TestLogFramingEngine28(t *testing.T) {
	for _, tc := range []struct {
		file, contentType string
		tty               bool
		want              []string
	}{
		{"logs-log", "application/vnd.docker.multiplexed-stream", false,
			// stdout and stderr are copied by two goroutines: the stored
			// order interleaves them by arrival, not by line number.
			// json-file keeps text: the invalid bytes FF FE come back as U+FFFD.
			// Line 6 was written without a newline: it ends unterminated.
			[]string{"1:line 1", "1:line 3", "1:line 5\ufffd\ufffd\x00\x1b", "2:line 2", "2:line 4", "2:line 6"}},
		{"logs-tty", "application/vnd.docker.raw-stream", true,
			[]string{"1:line 1", "1:line 2", "1:line 3"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			hdr, err := os.ReadFile(filepath.Join(e28Dir, tc.file+".headers"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(hdr, []byte("Content-Type: "+tc.contentType+"\n")) {
				t.Errorf("headers:\n%s\nwant Content-Type %s", hdr, tc.contentType)
			}
			body, err := os.ReadFile(filepath.Join(e28Dir, tc.file+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			r := logparse.NewReader(bytes.NewReader(body), tc.tty, 0)
			var got []string
			for {
				l, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if l.Time.IsZero() || l.Time.Year() != 2026 {
					t.Errorf("line %q has time %v", l.Body, l.Time)
				}
				got = append(got, string(rune('0'+int(l.Stream)))+":"+string(l.Body))
				if want := string(l.Body) == "line 6"; l.Unterminated != want {
					t.Errorf("line %q: unterminated %v, want %v", l.Body, l.Unterminated, want)
				}
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("lines:\n got %q\nwant %q", got, want)
			}
		})
	}
}
