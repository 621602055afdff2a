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
