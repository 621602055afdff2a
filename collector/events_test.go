package collector

import (
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"

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
