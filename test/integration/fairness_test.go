//go:build integration

package integration

import (
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/dockscope/dockscope/test/integration/harness"
)

// slowLogBackend is an OTLP/HTTP backend that takes 200 ms to answer each
// log request and notes, for the containers it watches, each line's delay
// from its Docker timestamp to its arrival, and each lifecycle event's.
type slowLogBackend struct {
	delay time.Duration
	watch func(container string) bool

	mu       sync.Mutex
	lines    map[string][]int // line numbers as they arrived, by container
	slowest  time.Duration    // of the watched containers' lines
	slowEv   time.Duration    // of the watched containers' events
	events   int
	others   int // lines of containers not watched
	requests int
}

func startSlowLogBackend(t *testing.T, delay time.Duration, watch func(string) bool) (*slowLogBackend, string) {
	t.Helper()
	b := &slowLogBackend{delay: delay, watch: watch, lines: map[string][]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(b.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b, "http://" + ln.Addr().String()
}

func (b *slowLogBackend) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/logs" {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
		return // metrics: an empty response is a valid one
	}
	now := time.Now()
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	var req collogspb.ExportLogsServiceRequest
	if err == nil {
		err = proto.Unmarshal(data, &req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.requests++
	for _, rl := range req.ResourceLogs {
		name := ""
		for _, kv := range rl.GetResource().GetAttributes() {
			if kv.Key == "container.name" {
				name = kv.GetValue().GetStringValue()
			}
		}
		watched := b.watch(name)
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				delay := now.Sub(time.Unix(0, int64(lr.TimeUnixNano)))
				switch {
				case lr.EventName != "":
					if watched {
						b.events++
						b.slowEv = max(b.slowEv, delay)
					}
				case watched:
					// "line <n> xxx…"
					f := strings.Fields(lr.GetBody().GetStringValue())
					n := -1
					if len(f) > 1 {
						n, _ = strconv.Atoi(f[1])
					}
					b.lines[name] = append(b.lines[name], n)
					b.slowest = max(b.slowest, delay)
				default:
					b.others++
				}
			}
		}
	}
	b.mu.Unlock()
	time.Sleep(b.delay) // the slow part
	out, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// TestLogsQuietContainersNotStarvedBySlowBackend: one container logging
// 20,000 lines/s of 500 bytes into a backend taking 2,500 records/s keeps
// the default 64 MiB buffer full; nine containers then log 10 lines/s
// each. Their lines and lifecycle events reach the backend within 5 s of
// their Docker timestamps, all of them, each container's in order — where
// a FIFO queue would hold them behind ~90,000 of the noisy container's
// lines (~36 s). Both overflow modes.
func TestLogsQuietContainersNotStarvedBySlowBackend(t *testing.T) {
	for _, overflow := range []string{"block", "drop"} {
		t.Run(overflow, func(t *testing.T) {
			scope := "fair-" + overflow
			const quiet, quietLines = 9, 100
			quietName := uniq(t, "fair-quiet") + "-"
			b, endpoint := startSlowLogBackend(t, 200*time.Millisecond, func(name string) bool {
				return strings.HasPrefix(name, quietName)
			})
			// 500 records per 200 ms request: 2,500 records/s at most.
			a := startAgent(t, agentOpts{scope: scope, extra: logsConfigTo(endpoint, "http/protobuf", 500) + "  overflow: " + overflow + "\n"})

			noisy := uniq(t, "fair-noisy")
			// ~12 MB/s of json-file: rotated, so that the disk holds 100 MB.
			harness.RunContainer(t, append(scopeArgs(scope, noisy), "--log-opt", "max-size=50m", "--log-opt", "max-file=2",
				harness.WorkloadImage(t), "log", "-lines", "2000000", "-rate", "20000", "-line-bytes", "500", "-then", "sleep")...)
			queueBytes := func() float64 {
				s, _ := a.scrape(t).Find("dockscope_log_queue_bytes", nil)
				return s.Value
			}
			harness.WaitFor(t, 60*time.Second, 500*time.Millisecond, func() (bool, string) {
				q := queueBytes()
				return q >= 40<<20, fmt.Sprintf("log queue holds %.1f MiB, waiting for 40", q/(1<<20))
			})

			names := make([]string, quiet)
			for i := range names {
				names[i] = fmt.Sprintf("%s%d", quietName, i)
				harness.RunContainer(t, append(scopeArgs(scope, names[i]), harness.WorkloadImage(t),
					"log", "-lines", strconv.Itoa(quietLines), "-rate", "10", "-line-bytes", "60", "-then", "sleep")...)
			}
			minQueue := queueBytes()
			harness.WaitFor(t, 60*time.Second, 500*time.Millisecond, func() (bool, string) {
				m := a.scrape(t)
				if s, ok := m.Find("dockscope_log_queue_bytes", nil); ok {
					minQueue = min(minQueue, s.Value)
				}
				b.mu.Lock()
				defer b.mu.Unlock()
				for _, n := range names {
					if got := len(b.lines[n]); got < quietLines {
						// Whether the agent read them tells Docker's side
						// from the agent's.
						read, _ := m.Find("dockscope_container_log_lines_total", map[string]string{"name": n, "outcome": "read"})
						shipped, _ := m.Find("dockscope_container_log_lines_total", map[string]string{"name": n, "outcome": "shipped"})
						return false, fmt.Sprintf("%s: %d of %d lines arrived (agent: %.0f read, %.0f shipped); slowest so far %v",
							n, got, quietLines, read.Value, shipped.Value, b.slowest)
					}
				}
				return true, ""
			})
			minQueue = min(minQueue, queueBytes())

			b.mu.Lock()
			defer b.mu.Unlock()
			for _, n := range names {
				got := b.lines[n]
				for i, l := range got {
					if l != i+1 {
						t.Errorf("%s: lines arrived as %v, want 1 to %d once each, in order", n, got, quietLines)
						break
					}
				}
			}
			t.Logf("overflow=%s: %d quiet containers × %d lines at 10/s through a backend taking 2,500 records/s behind a container writing 20,000/s: slowest quiet line %v from its Docker timestamp to the backend, slowest of %d lifecycle events %v; the queue held ≥ %.1f MiB meanwhile; %d noisy lines delivered in %d requests",
				overflow, quiet, quietLines, b.slowest.Round(time.Millisecond), b.events, b.slowEv.Round(time.Millisecond), minQueue/(1<<20), b.others, b.requests)
			if b.slowest > 5*time.Second || b.slowEv > 5*time.Second {
				t.Errorf("slowest quiet line took %v, slowest event %v; want both within 5 s", b.slowest, b.slowEv)
			}
			if b.events < quiet {
				t.Errorf("%d lifecycle events of the quiet containers arrived, want at least their %d starts", b.events, quiet)
			}
			if minQueue < 32<<20 {
				t.Errorf("the log queue fell to %.1f MiB while the quiet containers logged: the backend was not slower than the input", minQueue/(1<<20))
			}
		})
	}
}
