package pipeline

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"
)

func running(id, name string) (ContainerMeta, ContainerState, ContainerSpec) {
	return ContainerMeta{ID: id, Name: name}, ContainerState{Status: "running"}, ContainerSpec{}
}

func TestStoreCPUUsageFromPreviousSample(t *testing.T) {
	s := NewStore()
	s.Upsert(running("a", "web"))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if !s.SetStats("a", Stats{Read: t0, CPUTotal: time.Second}) {
		t.Fatal("SetStats on a known container returned false")
	}
	snap, _ := s.Get("a")
	if snap.Stats.HasCPUUsage {
		t.Fatal("first sample cannot have a CPU usage")
	}
	// 15 s of CPU over 10 s of wall time: 1.5 cores.
	s.SetStats("a", Stats{Read: t0.Add(10 * time.Second), CPUTotal: 16 * time.Second})
	snap, _ = s.Get("a")
	if !snap.Stats.HasCPUUsage || math.Abs(snap.Stats.CPUUsageCores-1.5) > 1e-9 {
		t.Fatalf("CPUUsageCores = %v (has %v), want 1.5", snap.Stats.CPUUsageCores, snap.Stats.HasCPUUsage)
	}
	// A counter that went backwards (container restarted) yields no rate.
	s.SetStats("a", Stats{Read: t0.Add(20 * time.Second), CPUTotal: time.Second})
	snap, _ = s.Get("a")
	if snap.Stats.HasCPUUsage {
		t.Fatal("usage computed across a counter reset")
	}
}

func TestStoreStoppedContainerLosesStats(t *testing.T) {
	s := NewStore()
	meta, state, spec := running("a", "web")
	s.Upsert(meta, state, spec)
	s.SetStats("a", Stats{Read: time.Now()})
	state.Status = "exited"
	s.Upsert(meta, state, spec)
	if snap, _ := s.Get("a"); snap.Stats != nil {
		t.Fatal("an exited container still exports its last sample")
	}
}

func TestStoreOOMKillsCountEachKillOnce(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	meta := ContainerMeta{ID: "a", Name: "web"}
	created := ContainerState{Status: "created"}
	run := func(started time.Time) ContainerState {
		return ContainerState{Status: "running", StartedAt: started}
	}
	// A run lasts a minute; its process is OOM-killed (or not) at its end.
	died := func(started time.Time, oom bool) ContainerState {
		return ContainerState{Status: "exited", StartedAt: started, FinishedAt: started.Add(time.Minute), OOMKilled: oom, ExitCode: 137}
	}
	oomAt := func(started time.Time) time.Time { return started.Add(time.Minute - 10*time.Millisecond) }
	kills := func(s *Store) uint64 {
		snap, _ := s.Get("a")
		return snap.OOMKills
	}
	s := NewStore()
	want := func(step string, n uint64) {
		t.Helper()
		if got := kills(s); got != n {
			t.Fatalf("%s: %d kills, want %d", step, got, n)
		}
	}

	// Seen first after an OOM death that happened while the agent was
	// down; resyncs of the same dead container do not count it again.
	s.Upsert(meta, died(t0, true), ContainerSpec{})
	want("OOM-killed at first sight", 1)
	s.Upsert(meta, died(t0, true), ContainerSpec{})
	want("re-inspected death", 1)

	// The inspect sees the dead, OOM-killed container before its oom event
	// is recorded: one kill, not two.
	t1 := t0.Add(time.Hour)
	s.Upsert(meta, run(t1), ContainerSpec{})
	s.Upsert(meta, died(t1, true), ContainerSpec{})
	s.RecordEvent("a", "oom", oomAt(t1))
	s.Upsert(meta, died(t1, true), ContainerSpec{}) // the die event's inspect
	want("flag, then the event of the same death", 2)

	// A child process is killed twice (two oom events, the container lives
	// on; an inspect in between sees OOMKilled while it runs), then the
	// main process: three kills.
	t2 := t1.Add(time.Hour)
	s.Upsert(meta, run(t2), ContainerSpec{})
	s.RecordEvent("a", "oom", t2.Add(time.Second))
	s.Upsert(meta, ContainerState{Status: "running", StartedAt: t2, FinishedAt: t1.Add(time.Minute), OOMKilled: true}, ContainerSpec{})
	s.RecordEvent("a", "oom", t2.Add(2*time.Second))
	s.RecordEvent("a", "oom", oomAt(t2))
	s.Upsert(meta, died(t2, true), ContainerSpec{})
	want("three oom events in a run", 5)

	// A run that ends without OOM adds nothing.
	t3 := t2.Add(time.Hour)
	s.Upsert(meta, run(t3), ContainerSpec{})
	s.Upsert(meta, died(t3, false), ContainerSpec{})
	want("a clean exit", 5)

	// The event handler stored the running container, then a resync's
	// older inspect (from before the start) overwrote it before the oom
	// event was recorded: still one kill (CI once counted two).
	t4 := t3.Add(time.Hour)
	s.Upsert(meta, run(t4), ContainerSpec{})
	s.Upsert(meta, created, ContainerSpec{})
	s.RecordEvent("a", "oom", oomAt(t4))
	s.Upsert(meta, died(t4, true), ContainerSpec{})
	s.Upsert(meta, died(t3, false), ContainerSpec{}) // a stale resync again
	s.Upsert(meta, died(t4, true), ContainerSpec{})
	want("a stale state between the event and the death", 6)

	// A death counted by its flag (its event never came: the agent was
	// down), then the next run's oom event, long after: a kill of its own.
	t5 := t4.Add(time.Hour)
	s.Upsert(meta, died(t5, true), ContainerSpec{})
	t6 := t5.Add(time.Hour)
	s.RecordEvent("a", "oom", oomAt(t6))
	s.Upsert(meta, died(t6, true), ContainerSpec{})
	want("a flagged death, then another run's event", 8)

	if snap, _ := s.Get("a"); snap.Events["oom"] != 6 {
		t.Fatalf("oom events = %d, want 6", snap.Events["oom"])
	}
}

func TestStoreUnknownContainer(t *testing.T) {
	s := NewStore()
	if s.SetStats("nope", Stats{}) {
		t.Error("SetStats on an unknown container returned true")
	}
	s.RecordEvent("nope", "start", time.Now())
	s.SetHealth("nope", "healthy")
	if s.Len() != 0 {
		t.Error("events for unknown containers created entries")
	}
}

func TestStoreEventsAndHealth(t *testing.T) {
	s := NewStore()
	s.Upsert(running("a", "web"))
	s.RecordEvent("a", "oom", time.Now())
	s.RecordEvent("a", "oom", time.Now())
	s.RecordEvent("a", "die", time.Now())
	s.SetHealth("a", "unhealthy")
	snap, _ := s.Get("a")
	if snap.OOMKills != 2 || snap.Events["oom"] != 2 || snap.Events["die"] != 1 || snap.State.Health != "unhealthy" {
		t.Fatalf("snapshot = %+v", snap)
	}
	// An inspect-driven update keeps the event counts.
	s.Upsert(running("a", "web"))
	if snap, _ := s.Get("a"); snap.Events["oom"] != 2 {
		t.Fatal("Upsert reset the event counts")
	}
}

func TestStoreSnapshotIsACopyAndSorted(t *testing.T) {
	s := NewStore()
	s.Upsert(running("2", "b"))
	s.Upsert(running("1", "a"))
	s.Upsert(running("0", "b"))
	s.SetStats("1", Stats{Read: time.Now(), Pids: 1})
	snaps := s.Snapshot()
	var order []string
	for _, sn := range snaps {
		order = append(order, sn.Meta.Name+"/"+sn.Meta.ID)
	}
	if got := order; len(got) != 3 || got[0] != "a/1" || got[1] != "b/0" || got[2] != "b/2" {
		t.Fatalf("order = %v", got)
	}
	snaps[0].Stats.Pids = 99
	snaps[0].Events["x"] = 1
	again, _ := s.Get("1")
	if again.Stats.Pids != 1 || again.Events["x"] != 0 {
		t.Fatal("mutating a snapshot changed the store")
	}
	s.Remove("1")
	if _, ok := s.Get("1"); ok || s.Len() != 2 {
		t.Fatal("Remove did not forget the container")
	}
}

func TestStoreConcurrentUse(t *testing.T) {
	s := NewStore()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			id := string(rune('a' + i))
			for j := range 200 {
				s.Upsert(running(id, id))
				s.SetStats(id, Stats{Read: time.Unix(int64(j), 0)})
				s.RecordEvent(id, "start", time.Now())
				_ = s.Snapshot()
				if j%50 == 0 {
					s.Remove(id)
				}
			}
		})
	}
	wg.Wait()
}

func TestTelemetry(t *testing.T) {
	tel := NewTelemetry()
	if _, ok := tel.Daemon(); ok {
		t.Fatal("daemon info before SetDaemon")
	}
	tel.SetDaemon(DaemonInfo{Version: "20.10"})
	if d, ok := tel.Daemon(); !ok || d.Version != "20.10" {
		t.Fatal("daemon info lost")
	}
	tel.Stage(StageStats).In.Add(2)
	if tel.Stage(StageStats).In.Load() != 2 {
		t.Fatal("stage counter lost")
	}
	if ok, at := tel.ConfigReload(); !ok || !at.IsZero() {
		t.Fatal("reload state before any reload")
	}
	tel.SetConfigReload(false, time.Unix(100, 0))
	if ok, at := tel.ConfigReload(); ok || at.Unix() != 100 {
		t.Fatal("failed reload not recorded")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("unknown stage did not panic")
		}
	}()
	tel.Stage("nope")
}

// A round and a scrape-time refresh store samples concurrently: the older
// one, stored last, must not win (the counters would go back), and a
// sample read just before the container stopped must not reappear.
func TestStoreKeepsTheNewestSampleOfARunningContainer(t *testing.T) {
	s := NewStore()
	s.Upsert(running("a", "web"))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.SetStats("a", Stats{Read: t0.Add(time.Second), CPUTotal: 2 * time.Second})
	s.SetStats("a", Stats{Read: t0, CPUTotal: time.Second})
	if snap, _ := s.Get("a"); snap.Stats.CPUTotal != 2*time.Second {
		t.Errorf("an older sample replaced the newer one: %v", snap.Stats.CPUTotal)
	}
	// The Engine's clock stepped back a minute: its samples are taken.
	s.SetStats("a", Stats{Read: t0.Add(-time.Minute), CPUTotal: 3 * time.Second})
	if snap, _ := s.Get("a"); snap.Stats.CPUTotal != 3*time.Second {
		t.Errorf("a clock stepped back froze the stats: %v", snap.Stats.CPUTotal)
	}
	meta, state, spec := running("a", "web")
	state.Status = "exited"
	s.Upsert(meta, state, spec)
	s.SetStats("a", Stats{Read: t0, CPUTotal: 4 * time.Second})
	if snap, _ := s.Get("a"); snap.Stats != nil {
		t.Errorf("a stopped container got a sample: %+v", snap.Stats)
	}
}

func TestStoreRefresher(t *testing.T) {
	s := NewStore()
	s.Refresh(context.Background()) // none installed: nothing happens
	var first, second int
	removeFirst := s.SetRefresher(func(context.Context) { first++ })
	s.Refresh(context.Background())
	// A reloaded collector installs its own before the old one removes
	// its: the old removal must leave the new one in place.
	removeSecond := s.SetRefresher(func(context.Context) { second++ })
	removeFirst()
	s.Refresh(context.Background())
	removeSecond()
	s.Refresh(context.Background())
	if first != 1 || second != 1 {
		t.Errorf("refreshers ran %d and %d times, want 1 and 1", first, second)
	}
}
