package collector

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/dockscope/dockscope/config"
	"github.com/dockscope/dockscope/pipeline"
)

func TestEventRecordKeepsDockerAttributesNotLabels(t *testing.T) {
	attrs := map[string]string{
		"exitCode": "137", "image": "web:1", "name": "web",
		"com.acme.secret": "hunter2", // a container label: never shipped
	}
	ev := eventRecord("die", "", attrs)
	if ev.Name != "container.die" || ev.Severity != pipeline.SeverityWarn {
		t.Fatalf("event = %+v", ev)
	}
	got := map[string]pipeline.EventAttr{}
	for _, a := range ev.Attrs {
		got[a.Key] = a
		if a.Str == "hunter2" {
			t.Fatal("a container label became an event attribute")
		}
	}
	if c := got["process.exit.code"]; !c.IsInt || c.Int != 137 {
		t.Errorf("exit code attribute = %+v", c)
	}
	if got["container.image.name"].Str != "web:1" || got["docker.event.action"].Str != "die" {
		t.Errorf("attributes = %+v", ev.Attrs)
	}
	if body := eventBody("web", ev); body != "container web die (exit code 137)" {
		t.Errorf("body = %q", body)
	}

	for _, tc := range []struct {
		action, detail string
		sev            pipeline.Severity
		body           string
	}{
		{"health_status", "unhealthy", pipeline.SeverityWarn, "container web health_status: unhealthy"},
		{"health_status", "healthy", pipeline.SeverityInfo, "container web health_status: healthy"},
		{"oom", "", pipeline.SeverityError, "container web oom"},
		{"start", "", pipeline.SeverityInfo, "container web start"},
	} {
		ev := eventRecord(tc.action, tc.detail, map[string]string{})
		if ev.Severity != tc.sev || eventBody("web", ev) != tc.body {
			t.Errorf("%s %s: severity %v, body %q", tc.action, tc.detail, ev.Severity, eventBody("web", ev))
		}
	}
	if ev := eventRecord("die", "", map[string]string{"exitCode": "0"}); ev.Severity != pipeline.SeverityInfo {
		t.Errorf("a clean exit is %v", ev.Severity)
	}
}

// TestEventCursorStartsAtConnect: before any event, the cursor still gives
// a `since` (the daemon's time at connect), so a stream that breaks before
// its first whole event resumes there instead of at "now"; after an event,
// connecting again does not move it.
func TestEventCursorStartsAtConnect(t *testing.T) {
	var c eventCursor
	if s := c.String(); s != "" {
		t.Fatalf("since before connecting = %q, want empty", s)
	}
	connected := time.Unix(1795372786, 640188477)
	c.start(connected)
	if s := c.String(); s != "1795372786.640188477" {
		t.Fatalf("since after connecting = %q", s)
	}
	ev := events.Message{Action: "start", Actor: events.Actor{ID: "c1"}, TimeNano: connected.UnixNano() + 5}
	if !c.advance(ev) {
		t.Fatal("the first event after connecting seen as a replay")
	}
	c.start(connected.Add(time.Hour)) // a reconnect: the event cursor wins
	if s := c.String(); s != "1795372786.640188482" {
		t.Fatalf("since after a reconnect = %q, want the last event's time", s)
	}
}

// stepEvent is a container event at hours:ns on the daemon's clock.
func stepEvent(hours, ns int64, id, action string) events.Message {
	return events.Message{TimeNano: hours*int64(time.Hour) + ns, Action: events.Action(action), Actor: events.Actor{ID: id}}
}

// dockerdReplay is what dockerd sends first on a stream opened with since:
// it walks its buffer back from the newest event and stops at the first
// one older than since (daemon/events/events.go loadBufferedEvents).
func dockerdReplay(buffer []events.Message, since string) []events.Message {
	var sec, nsec int64
	fmt.Sscanf(since, "%d.%d", &sec, &nsec)
	from := sec*1e9 + nsec
	var out []events.Message
	for i := len(buffer) - 1; i >= 0 && buffer[i].TimeNano >= from; i-- {
		out = append([]events.Message{buffer[i]}, out...)
	}
	return out
}

// A daemon clock stepped back (NTP, a VM restore) makes every later event
// older than the ones before it; each of them is still handled, and the
// next reconnect resumes after the last one handled.
func TestEventCursorKeepsEventsAfterClockStepBack(t *testing.T) {
	var c eventCursor
	if !c.advance(stepEvent(10, 0, "a", "start")) {
		t.Fatal("first event seen as a replay")
	}
	for i, m := range []events.Message{
		stepEvent(9, 1, "b", "start"), // an hour back
		stepEvent(9, 1, "b", "health_status: healthy"),
		stepEvent(9, 2, "a", "die"),
		stepEvent(8, 0, "c", "start"), // and again
	} {
		if !c.advance(m) {
			t.Errorf("event %d (%s %s), after the clock stepped back, dropped", i, m.Actor.ID, m.Action)
		}
	}
	if s := c.String(); s != "28800.000000000" {
		t.Errorf("since after the steps = %q, want the last event's time 28800.000000000", s)
	}
}

// Across a reconnect, whatever the daemon's clock did, every event is
// handled once: dockerd's replay of what was handled is dropped, what was
// missed while disconnected is kept.
func TestEventCursorHandlesEachEventOnceAcrossReconnects(t *testing.T) {
	type timed struct {
		agent time.Duration // on the agent's monotonic clock
		ev    events.Message
	}
	at := func(agent time.Duration, daemonHours int64, daemonNs time.Duration, id, action string) timed {
		return timed{agent, stepEvent(daemonHours, int64(daemonNs), id, action)}
	}
	for _, tc := range []struct {
		name            string
		handled, missed []timed
		reconnect       time.Duration // agent clock
		daemonNow       time.Time     // daemon clock at the reconnect
	}{
		{
			name:      "steady clock, events sharing a nanosecond",
			handled:   []timed{at(0, 10, 0, "a", "start"), at(time.Second, 10, time.Second, "a", "die"), at(time.Second, 10, time.Second, "b", "start")},
			missed:    []timed{at(2*time.Second, 10, time.Second, "c", "start"), at(3*time.Second, 10, 3*time.Second, "a", "destroy")},
			reconnect: 4 * time.Second,
			daemonNow: time.Unix(0, stepEvent(10, int64(4*time.Second), "", "").TimeNano),
		},
		{
			name:      "clock stepped back while connected",
			handled:   []timed{at(0, 10, 0, "a", "start"), at(time.Second, 9, time.Second, "b", "start"), at(2*time.Second, 9, 2*time.Second, "b", "die")},
			missed:    []timed{at(2*time.Second, 9, 2*time.Second, "c", "start"), at(3*time.Second, 9, 3*time.Second, "b", "destroy")},
			reconnect: 4 * time.Second,
			daemonNow: time.Unix(0, stepEvent(9, int64(4*time.Second), "", "").TimeNano),
		},
		{
			// Stepped back an hour 30 s after the last event handled.
			name:      "clock stepped back while disconnected",
			handled:   []timed{at(0, 10, 0, "a", "start"), at(time.Second, 10, time.Second, "b", "start")},
			missed:    []timed{at(40*time.Second, 9, 40*time.Second, "a", "die"), at(50*time.Second, 9, 50*time.Second, "c", "start")},
			reconnect: 2 * time.Minute,
			daemonNow: time.Unix(0, stepEvent(9, int64(2*time.Minute), "", "").TimeNano),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			epoch := time.Now()
			var agentNow time.Duration
			c := eventCursor{now: func() time.Time { return epoch.Add(agentNow) }}
			c.start(time.Unix(0, tc.handled[0].ev.TimeNano-1))
			var buffer, want []events.Message
			for _, h := range tc.handled {
				agentNow = h.agent
				if !c.advance(h.ev) {
					t.Fatalf("live event %s %s dropped", h.ev.Actor.ID, h.ev.Action)
				}
				buffer = append(buffer, h.ev)
			}
			for _, m := range tc.missed {
				buffer = append(buffer, m.ev)
				want = append(want, m.ev)
			}
			agentNow = tc.reconnect
			c.start(tc.daemonNow)
			var got []events.Message
			for _, m := range dockerdReplay(buffer, c.String()) {
				if c.advance(m) {
					got = append(got, m)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("since %s: after the reconnect handled %v, want exactly the missed %v", c.String(), got, want)
			}
		})
	}
}

// The memory of handled events is bounded; a window that still covers
// dockerd's 256-event replay buffer.
func TestEventCursorRemembersABoundedWindow(t *testing.T) {
	var c eventCursor
	for i := range 3 * eventReplayWindow {
		c.advance(stepEvent(10, int64(i), "a", "health_status: healthy"))
	}
	if len(c.index) != eventReplayWindow || len(c.ring) != eventReplayWindow {
		t.Fatalf("remembers %d events (ring %d), want %d", len(c.index), len(c.ring), eventReplayWindow)
	}
	last := 3*eventReplayWindow - 1
	for i := last - 255; i <= last; i++ {
		if c.advance(stepEvent(10, int64(i), "a", "health_status: healthy")) {
			t.Fatalf("replay of event %d, within the last 256, handled again", i)
		}
	}
}

// fakeInspectEngine answers container inspects for the ids it knows (404
// for the rest) on a unix socket, counting them, and an empty container
// list, calling onList (if set) while it answers; nothing else.
func fakeInspectEngine(t *testing.T, known map[string]string, onList func()) (*Collector, *atomic.Int32) {
	t.Helper()
	var inspects atomic.Int32
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		if strings.HasSuffix(r.URL.Path, "/containers/json") {
			if onList != nil {
				onList()
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, "[]")
			return
		}
		parts := strings.Split(r.URL.Path, "/")
		if len(parts) < 2 || parts[len(parts)-1] != "json" || parts[len(parts)-3] != "containers" {
			http.NotFound(w, r)
			return
		}
		inspects.Add(1)
		id := parts[len(parts)-2]
		name, ok := known[id]
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"message":"No such container: `+id+`"}`)
			return
		}
		health := ""
		if strings.HasPrefix(name, "unhealthy-") { // a container whose health check fails
			health = `,"Health":{"Status":"unhealthy","FailingStreak":1}`
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"Id":%q,"Name":"/%s","Config":{"Image":"web:1"},"State":{"Status":"running","Running":true,"StartedAt":"2026-12-03T10:00:00Z"%s},"HostConfig":{"LogConfig":{"Type":"json-file"}}}`, id, name, health)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	cfg := config.Default()
	cfg.Docker.Host = "unix://" + sock
	cfg.Docker.APIVersion = "1.41"
	c, err := New(Options{Config: cfg, Store: pipeline.NewStore(), Telemetry: pipeline.NewTelemetry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.docker.Close() })
	host, driver := "host1", "cgroupfs"
	c.hostname.Store(&host)
	c.cgroupDriver.Store(&driver)
	return c, &inspects
}

// One inspect serves a batch of a container's events, a batch ending in
// its removal needs none, and every event is counted either way.
func TestHandleEventsInspectsOncePerBatch(t *testing.T) {
	c, inspects := fakeInspectEngine(t, map[string]string{"c1": "web"}, nil)
	sampler := newStatsSampler(c)
	batch := func(id string, actions ...string) []events.Message {
		var b []events.Message
		for _, a := range actions {
			b = append(b, events.Message{Action: events.Action(a), Actor: events.Actor{ID: id}})
		}
		return b
	}

	c.handleEvents(t.Context(), batch("c1", "create", "start", "health_status: healthy"), sampler)
	if n := inspects.Load(); n != 1 {
		t.Fatalf("%d inspects for create+start+health_status, want 1", n)
	}
	snap, ok := c.store.Get("c1")
	if !ok || snap.Meta.Name != "web" {
		t.Fatalf("store after the batch: %+v, %v", snap.Meta, ok)
	}
	if snap.Events["create"] != 1 || snap.Events["start"] != 1 || snap.Events["health_status"] != 1 {
		t.Errorf("events counted: %v", snap.Events)
	}

	c.handleEvents(t.Context(), batch("c1", "die", "destroy"), sampler)
	if n := inspects.Load(); n != 1 {
		t.Errorf("a batch ending in destroy inspected (%d inspects in all)", n)
	}
	if _, ok := c.store.Get("c1"); ok {
		t.Error("a destroyed container is still in the store")
	}

	// Gone before its events were handled: inspected once, nothing kept.
	c.handleEvents(t.Context(), batch("c2", "create", "start"), sampler)
	if _, ok := c.store.Get("c2"); ok || inspects.Load() != 2 {
		t.Errorf("a container the engine does not know: kept %v, %d inspects", ok, inspects.Load())
	}
	if out := c.tel.Stage(pipeline.StageEvents).Out.Load(); out != 7 {
		t.Errorf("%d events counted as handled, want 7", out)
	}
}

// Podman's health_status event has no status in its action (Docker's is
// "health_status: unhealthy"): the container is inspected for it, rather
// than its health being blanked.
func TestPodmanHealthEventInspects(t *testing.T) {
	c, inspects := fakeInspectEngine(t, map[string]string{"p1": "unhealthy-web"}, nil)
	sampler := newStatsSampler(c)
	c.handleEvents(t.Context(), []events.Message{{Action: "start", Actor: events.Actor{ID: "p1"}}}, sampler)
	c.store.SetHealth("p1", "healthy")
	// As podman 4.3 sends it (recorded): Action "health_status", the
	// status only in a HealthStatus field the Docker API does not have.
	c.handleEvents(t.Context(), []events.Message{{Action: "health_status", Actor: events.Actor{ID: "p1",
		Attributes: map[string]string{"containerExitCode": "0", "name": "unhealthy-web", "podId": ""}}}}, sampler)
	if n := inspects.Load(); n != 2 {
		t.Errorf("%d inspects, want 2: a bare health_status must be inspected", n)
	}
	if snap, _ := c.store.Get("p1"); snap.State.Health != "unhealthy" {
		t.Errorf("health after a bare health_status = %q, want unhealthy (from inspect)", snap.State.Health)
	}
}

// Podman's removal event is "remove", Docker's "destroy": either forgets
// the container at once, without an inspect, and counts as destroy.
func TestPodmanRemoveEventForgets(t *testing.T) {
	c, inspects := fakeInspectEngine(t, map[string]string{"p1": "web"}, nil)
	sampler := newStatsSampler(c)
	c.handleEvents(t.Context(), []events.Message{{Action: "start", Actor: events.Actor{ID: "p1"}}}, sampler)
	c.handleEvents(t.Context(), []events.Message{{Action: "remove", Actor: events.Actor{ID: "p1"}}}, sampler)
	if _, ok := c.store.Get("p1"); ok {
		t.Error("a container podman removed is still in the store")
	}
	if n := inspects.Load(); n != 1 {
		t.Errorf("%d inspects, want 1 (the start's only)", n)
	}
	if a, _ := splitAction("remove"); a != "destroy" {
		t.Errorf("splitAction(remove) = %q, want destroy", a)
	}
}

func TestPodmanGone(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		// As the client reports Podman 4.3's answer (a 500).
		{errors.New("Error response from daemon: container 39edc49497e7b184 does not exist in database: no such container"), true},
		{errors.New("Error response from daemon: the engine is shutting down"), false},
		{nil, false},
	} {
		if got := podmanGone(tc.err); got != tc.want {
			t.Errorf("podmanGone(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A resync forgets the containers gone from its list, but not one that an
// event worker added while the list was being read: it is newer than the
// list, not gone.
func TestReconcileKeepsContainersAddedDuringTheList(t *testing.T) {
	var c *Collector
	c, _ = fakeInspectEngine(t, nil, func() {
		c.store.Upsert(pipeline.ContainerMeta{ID: "new", Name: "new"}, pipeline.ContainerState{Status: "running"}, pipeline.ContainerSpec{})
	})
	c.store.Upsert(pipeline.ContainerMeta{ID: "gone", Name: "gone"}, pipeline.ContainerState{Status: "running"}, pipeline.ContainerSpec{})
	if err := c.reconcile(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.store.Get("gone"); ok {
		t.Error("a container missing from the list is still in the store")
	}
	if _, ok := c.store.Get("new"); !ok {
		t.Error("a container added while the list was read was forgotten")
	}
}

// A 404 from the stats endpoint alone (a proxy, an engine without it) does
// not forget a container an inspect still finds: forgetting drops its log
// position too. One the inspect does not find is forgotten.
func TestStats404IsConfirmedByAnInspect(t *testing.T) {
	c, inspects := fakeInspectEngine(t, map[string]string{"c1": "web"}, nil)
	c.cfg.Stats.Source = "api"
	sampler := newStatsSampler(c)
	for _, id := range []string{"c1", "c2"} {
		c.store.Upsert(pipeline.ContainerMeta{ID: id, Name: id}, pipeline.ContainerState{Status: "running"}, pipeline.ContainerSpec{})
		sampler.sampleOne(t.Context(), statsJob{id: id})
	}
	if _, ok := c.store.Get("c1"); !ok {
		t.Error("a container its inspect finds was forgotten after a stats 404")
	}
	if _, ok := c.store.Get("c2"); ok {
		t.Error("a container its inspect does not find was kept")
	}
	if n := inspects.Load(); n != 2 {
		t.Errorf("%d inspects, want one per stats 404", n)
	}
}
