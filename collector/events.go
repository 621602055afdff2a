package collector

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/dockscope/dockscope/pipeline"
)

// eventQueueSize bounds the events waiting for the handler. dockerd drops a
// subscriber that falls ~100 ms behind, so the reader must never wait for
// the handler (which inspects containers); past this bound events are
// dropped, counted, and healed by a full resync.
const eventQueueSize = 4096

// eventReader drains the Engine's event stream into a bounded queue.
type eventReader struct {
	docker *client.Client
	tel    *pipeline.Telemetry
	since  string

	queue      chan events.Message
	errs       chan error    // the stream's end; buffered, written once
	overflowed chan struct{} // signalled (non-blocking) when events were dropped
}

func newEventReader(docker *client.Client, tel *pipeline.Telemetry, since string) *eventReader {
	return &eventReader{
		docker:     docker,
		tel:        tel,
		since:      since,
		queue:      make(chan events.Message, eventQueueSize),
		errs:       make(chan error, 1),
		overflowed: make(chan struct{}, 1),
	}
}

// run reads the stream until it ends or ctx is cancelled.
func (r *eventReader) run(ctx context.Context) {
	stream := r.docker.Events(ctx, client.EventsListOptions{
		Since:   r.since,
		Filters: make(client.Filters).Add("type", string(events.ContainerEventType)),
	})
	counters := r.tel.Stage(pipeline.StageEvents)
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-stream.Err:
			if err == nil {
				err = fmt.Errorf("event stream closed")
			}
			r.errs <- err
			return
		case msg := <-stream.Messages:
			counters.In.Add(1)
			select {
			case r.queue <- msg:
			default:
				counters.Dropped.Add(1)
				select {
				case r.overflowed <- struct{}{}:
				default:
				}
			}
		}
	}
}

// eventCursor remembers where a reconnect resumes and which events were
// handled, so that the reconnect's replay is not handled twice: `since` is
// inclusive and several events can share one nanosecond.
//
// Events are never filtered by time. The daemon's clock can step back (NTP,
// a VM restore), and every event after the step is then older than the ones
// before it; a "newer than the newest seen" rule dropped them all until the
// clock caught up. A replayed event is an exact copy of one handled before
// (same time, container and action); a live one never is.
type eventCursor struct {
	mu    sync.Mutex
	nanos int64     // the last event handled, in stream order; the next `since`
	at    time.Time // when, on the agent's monotonic clock, nanos was set
	now   func() time.Time

	// ring holds the last eventReplayWindow events handled (oldest at
	// next once full); index finds them.
	ring  []eventID
	next  int
	index map[eventID]struct{}
}

// eventReplayWindow bounds the events remembered for deduplication. dockerd
// replays only from the last 256 events it keeps (of every type); those of
// them this agent handled are among the last 256 it handled, so twice that
// is enough to recognise every replay.
const eventReplayWindow = 512

type eventID struct {
	nanos  int64
	id     string
	action events.Action
}

// advance records an event and reports whether it is new, false only for
// an event already handled (a replay after a reconnect).
func (c *eventCursor) advance(m events.Message) bool {
	k := eventID{nanos: m.TimeNano, id: m.Actor.ID, action: m.Action}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.index[k]; dup {
		return false
	}
	if c.index == nil {
		c.index = make(map[eventID]struct{}, eventReplayWindow)
		c.ring = make([]eventID, 0, eventReplayWindow)
	}
	if len(c.ring) < eventReplayWindow {
		c.ring = append(c.ring, k)
	} else {
		delete(c.index, c.ring[c.next])
		c.ring[c.next] = k
		c.next = (c.next + 1) % eventReplayWindow
	}
	c.index[k] = struct{}{}
	// The last event in stream order, not the newest by time: dockerd's
	// replay walks its buffer back from the newest event and stops at the
	// first one older than `since`, so after a step back only a `since`
	// from after the step reaches the events that followed it.
	c.nanos, c.at = m.TimeNano, c.clock()
	return true
}

// start sets where the next stream begins, from the daemon's clock at
// connect. Before any event it is that clock: a stream that broke before its
// first whole event would otherwise be reopened at "now", losing what
// happened in between. After events, it is the last one's time, or where
// the daemon's clock stood when that event was handled, by the agent's own
// monotonic clock, if that is earlier: the daemon's clock was stepped back
// while the agent was away, and only that earlier `since` makes dockerd
// replay the events that followed the step. What it replays that was
// handled before is dropped by advance.
func (c *eventCursor) start(daemonNow time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if daemonNow.IsZero() {
		return
	}
	now := daemonNow.UnixNano()
	if c.nanos == 0 {
		c.nanos, c.at = now, c.clock()
		return
	}
	if then := now - int64(c.clock().Sub(c.at)); then < c.nanos {
		c.nanos = then
	}
}

// clock is the agent's monotonic clock (a test's, when set).
func (c *eventCursor) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// String is the `since` parameter for a reconnect, empty before any event.
func (c *eventCursor) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nanos == 0 {
		return ""
	}
	return fmt.Sprintf("%d.%09d", c.nanos/1e9, c.nanos%1e9)
}

// splitAction separates "health_status: healthy" or "exec_start: sh -c …"
// into the action and its detail, so that counts are kept per action and a
// command line never becomes a label value.
// Podman's Docker API names a removal "remove" where Docker's says
// "destroy": it is read as Docker's, so a removed container goes at once.
func splitAction(a events.Action) (action, detail string) {
	act, detail, _ := strings.Cut(string(a), ":")
	if act == "remove" {
		act = "destroy"
	}
	return act, strings.TrimSpace(detail)
}

// countedActions are the lifecycle events exported in container_events_total.
var countedActions = map[string]bool{
	"create": true, "start": true, "restart": true, "die": true, "oom": true, "kill": true,
	"stop": true, "pause": true, "unpause": true, "health_status": true, "rename": true,
	"update": true,
}

// reinspectActions change what an inspect reports (state, exit code,
// restart count, name, limits).
var reinspectActions = map[string]bool{
	"create": true, "start": true, "restart": true, "die": true, "stop": true,
	"pause": true, "unpause": true, "rename": true, "update": true, "oom": true,
}

// handleEvents applies one container's events, oldest first, to the store.
// It inspects the container once, after the last of them: what an inspect
// reports then is what each of them would have led to. A batch that ends
// with the container's removal needs no inspect at all.
func (c *Collector) handleEvents(ctx context.Context, batch []events.Message, sampler *statsSampler) {
	counters := c.tel.Stage(pipeline.StageEvents)
	id := batch[0].Actor.ID
	inspectFor, started, destroyed := "", false, false
	for _, m := range batch {
		action, detail := splitAction(m.Action)
		switch {
		case action == "destroy":
			destroyed = true
		case action == "health_status" && detail != "":
			// Refreshed on every event, never only at start (an Alloy
			// bug); an inspect below overrides it with what is newer.
			c.store.SetHealth(id, detail)
		case action == "health_status":
			// Podman's action is a bare "health_status", the status in a
			// field of its own that lagged a run behind (4.3): inspect.
			inspectFor = action
		case reinspectActions[action]:
			inspectFor = action
			// A new run of the container, even if it died since: its log
			// is read again.
			started = started || action == "start" || action == "restart"
		}
	}
	if inspectFor != "" && !destroyed {
		if started {
			inspectFor = "start"
		}
		state, kept, err := c.inspect(ctx, id, inspectFor)
		if err != nil {
			counters.Dropped.Add(uint64(len(batch)))
			c.log.Debug("inspect after event failed", "container", shortID(id), "action", inspectFor, "err", err)
			return
		}
		if kept && started && state.Running() {
			sampler.trigger(id)
		}
	}
	for _, m := range batch {
		action, detail := splitAction(m.Action)
		if countedActions[action] {
			c.store.RecordEvent(id, action, time.Unix(0, m.TimeNano))
		}
		if action == "health_status" && detail == "" {
			if snap, ok := c.store.Get(id); ok {
				detail = snap.State.Health // Podman's, as inspected above
			}
		}
		// Shipped before forget below: the last chance to know whose
		// event it is.
		c.shipEvent(m, action, detail)
	}
	if destroyed {
		c.forget(id)
	}
	counters.Out.Add(uint64(len(batch)))
}

// shippedActions are the lifecycle events sent as OTLP log records when
// logs are on; exec_* and the like would be noise (and carry command lines).
var shippedActions = map[string]bool{
	"create": true, "start": true, "restart": true, "die": true, "oom": true, "kill": true,
	"stop": true, "pause": true, "unpause": true, "health_status": true, "rename": true,
	"update": true, "destroy": true,
}

// shipEvent queues the event as a log record of its container, when logs
// are on and the container is followed. It never waits: a full log queue
// drops the event (counted) rather than stall the event stream.
func (c *Collector) shipEvent(m events.Message, action, detail string) {
	if c.logs == nil || !c.cfg.Logs.Events || !shippedActions[action] {
		return
	}
	snap, ok := c.store.Get(m.Actor.ID)
	if !ok {
		return // not followed (filtered out, opted out) or already gone
	}
	meta := snap.Meta
	rec := pipeline.LogRecord{
		ContainerID: m.Actor.ID,
		Container:   &meta,
		Time:        time.Unix(0, m.TimeNano),
		Observed:    time.Now(),
		Event:       eventRecord(action, detail, m.Actor.Attributes),
	}
	rec.Body = []byte(eventBody(meta.Name, rec.Event))
	if !c.logs.opts.Queue.Offer(rec) {
		c.tel.Stage(pipeline.StageEvents).Dropped.Add(1)
	}
}

// eventRecord describes one event. Only attributes Docker defines for the
// event are kept: the actor's attributes also hold every container label,
// which could carry secrets and are exported only when allow-listed.
func eventRecord(action, detail string, attrs map[string]string) *pipeline.Event {
	ev := &pipeline.Event{Name: "container." + action, Severity: pipeline.SeverityInfo}
	str := func(k, v string) {
		if v != "" {
			ev.Attrs = append(ev.Attrs, pipeline.EventAttr{Key: k, Str: v})
		}
	}
	str("docker.event.action", action)
	switch action {
	case "die":
		if code, err := strconv.ParseInt(attrs["exitCode"], 10, 64); err == nil {
			ev.Attrs = append(ev.Attrs, pipeline.EventAttr{Key: "process.exit.code", Int: code, IsInt: true})
			if code != 0 {
				ev.Severity = pipeline.SeverityWarn
			}
		}
	case "kill":
		// Every `docker stop` sends one: not a warning by itself; the die
		// that follows says whether it went badly.
		str("docker.event.signal", attrs["signal"])
	case "oom":
		ev.Severity = pipeline.SeverityError
	case "health_status":
		str("container.health.status", detail)
		if detail == "unhealthy" {
			ev.Severity = pipeline.SeverityWarn
		}
	case "rename":
		str("docker.event.old_name", strings.TrimPrefix(attrs["oldName"], "/"))
	}
	str("container.image.name", attrs["image"])
	return ev
}

// eventBody is the record's human-readable message.
func eventBody(name string, ev *pipeline.Event) string {
	msg := "container " + name + " " + strings.TrimPrefix(ev.Name, "container.")
	for _, a := range ev.Attrs {
		switch a.Key {
		case "process.exit.code":
			msg += fmt.Sprintf(" (exit code %d)", a.Int)
		case "container.health.status":
			msg += ": " + a.Str
		case "docker.event.signal":
			msg += " (signal " + a.Str + ")"
		}
	}
	return msg
}

// healthFromStatus reads the health out of the list's human status, e.g.
// "Up 5 minutes (healthy)" or "Up 3 seconds (health: starting)".
func healthFromStatus(status string) string {
	switch {
	case strings.HasSuffix(status, "(healthy)"):
		return "healthy"
	case strings.HasSuffix(status, "(unhealthy)"):
		return "unhealthy"
	case strings.HasSuffix(status, "(health: starting)"):
		return "starting"
	}
	return ""
}
