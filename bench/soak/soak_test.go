package main

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.duration != 30*time.Minute || o.outageEvery != 2*time.Minute || o.outage != 20*time.Second || o.sampleEvery != 10*time.Second {
		t.Errorf("defaults: duration %s, outage %s every %s, samples every %s", o.duration, o.outage, o.outageEvery, o.sampleEvery)
	}
	o, err = parseOptions([]string{"-duration", "3m", "-outage-every", "0", "-churn-every", "0"})
	if err != nil || o.duration != 3*time.Minute || o.outageEvery != 0 {
		t.Errorf("-duration 3m -outage-every 0: %+v, %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-duration", "0s"}, "-duration must be positive"},
		{[]string{"-outage", "2m"}, "-outage must be positive and shorter than -outage-every"},
		{[]string{"-outage", "0s"}, "-outage must be positive and shorter than -outage-every"},
		{[]string{"-protocol", "udp"}, `-protocol must be http/protobuf or grpc, not "udp"`},
		{[]string{"-stats-source", "x"}, `-stats-source must be api, cgroup or auto, not "x"`},
		{[]string{"-line-bytes", "20000"}, "-line-bytes must be from 16 to 16000"},
		{[]string{"-churn-lines", "0"}, "-churn-lines must be at least 1"},
		{[]string{"-csv", ""}, "-csv and -plot must name files"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		if _, err := parseOptions(tc.args); err == nil || err.Error() != tc.want {
			t.Errorf("parseOptions(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestLineNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		isOK bool
	}{
		{"line 1", 1, true},
		{"line 42 xxxxxxxx", 42, true},
		{"line ", 0, false},
		{"line x1", 0, false},
		{"lines 3", 0, false},
		{"line 99999999999999999999", 0, false},
	} {
		if n, ok := lineNumber(tc.in); n != tc.n || ok != tc.isOK {
			t.Errorf("lineNumber(%q) = %d, %v, want %d, %v", tc.in, n, ok, tc.n, tc.isOK)
		}
	}
}

// request builds one OTLP/JSON logs export line as the file exporter writes
// it: records of one container, bodies given.
func request(container string, bodies ...string) string {
	var recs []string
	for _, b := range bodies {
		if strings.HasPrefix(b, "event:") {
			recs = append(recs, `{"timeUnixNano":"1","body":{"stringValue":"x"},"eventName":"`+strings.TrimPrefix(b, "event:")+`"}`)
			continue
		}
		recs = append(recs, `{"timeUnixNano":"1","body":{"stringValue":"`+b+`"},"attributes":[{"key":"log.iostream","value":{"stringValue":"stdout"}}]}`)
	}
	return `{"resourceLogs":[{"resource":{"attributes":[{"key":"container.id","value":{"stringValue":"abc"}},` +
		`{"key":"container.name","value":{"stringValue":"` + container + `"}}]},` +
		`"scopeLogs":[{"scope":{"name":"dockscope"},"logRecords":[` + strings.Join(recs, ",") + `]}]}]}` + "\n"
}

func TestTally(t *testing.T) {
	out := request("a", "line 1 xx", "line 2 xx", "event:container.start") +
		request("a", "line 2 xx", "line 3 xx") + // line 2 twice
		request("b", "line 1", "not a numbered line") +
		request("c", "line 1") + // a container nobody expected
		`{"resourceLogs":[{"resource":{},"scopeLogs":[{"logRecords":[{"body":{"stringValue":"line 1"}}]}]}]}` + "\n" +
		request("b", "line 2")[:40] // being written: no newline yet
	tl := newTally()
	if err := tl.add(strings.NewReader(out)); err != nil {
		t.Fatal(err)
	}
	if tl.events != 1 || tl.other != 2 {
		t.Errorf("events %d, other %d; want 1, 2", tl.events, tl.other)
	}
	v := tl.check(map[string]int{"a": 4, "b": 2})
	want := verdict{written: 6, delivered: 4, lost: 2, duplicated: 1, unexpected: 1, lostIn: []string{"a (1 of 4)", "b (1 of 2)"}}
	if v.written != want.written || v.delivered != want.delivered || v.lost != want.lost ||
		v.duplicated != want.duplicated || v.unexpected != want.unexpected || !slices.Equal(v.lostIn, want.lostIn) {
		t.Errorf("check = %+v, want %+v", v, want)
	}
	if s := v.String(); !strings.Contains(s, "lost 2") || !strings.Contains(s, "lost in a (1 of 4), b (1 of 2)") {
		t.Errorf("String() = %q", s)
	}

	if err := newTally().add(strings.NewReader("{not json}\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad JSON: %v, want an error naming line 1", err)
	}
}

func TestSummarize(t *testing.T) {
	var samples []sample
	for i := range 40 {
		samples = append(samples, sample{rssMiB: float64(i), goroutines: math.NaN()})
	}
	st, ok := summarize(samples, func(s sample) float64 { return s.rssMiB })
	if !ok || st.first != 0 || st.last != 39 || st.min != 0 || st.max != 39 || st.headMedian != 1.5 || st.tailMedian != 37.5 {
		t.Errorf("summarize = %+v, %v", st, ok)
	}
	if _, ok := summarize(samples, func(s sample) float64 { return s.goroutines }); ok {
		t.Error("a gauge never read was summarised")
	}
}

func TestLogfmtValue(t *testing.T) {
	line := `time=2026-12-03T14:43:28Z level=WARN msg="OTLP log export failing; retrying" target=http://x err="connection refused"`
	if got := logfmtValue(line, "msg"); got != "OTLP log export failing; retrying" {
		t.Errorf("msg = %q", got)
	}
	if got := logfmtValue(line, "target"); got != "http://x" {
		t.Errorf("target = %q", got)
	}
	if got := logfmtValue(line, "missing"); got != "" {
		t.Errorf("missing = %q", got)
	}
}

func TestFigure(t *testing.T) {
	samples := []sample{
		{elapsed: 0, rssMiB: 20, hwmMiB: 20, goroutines: 100, fds: 18, containers: 3},
		{elapsed: time.Minute, rssMiB: 25, hwmMiB: 26, goroutines: math.NaN(), fds: 20, containers: 6},
	}
	svg := string(figure("t", samples, []outage{{from: 10 * time.Second, to: 30 * time.Second}}).SVG())
	for _, want := range []string{`data-name="RSS (VmRSS)"`, `data-name="goroutines"`, `data-name="open fds"`, "collector stopped"} {
		if !strings.Contains(svg, want) {
			t.Errorf("the plot has no %s", want)
		}
	}
}

func TestExplainLoss(t *testing.T) {
	outages := []outage{{from: 2 * time.Minute, to: 2*time.Minute + 20*time.Second}}
	lt := lifetime{started: 2*time.Minute + 5*time.Second, exited: 2*time.Minute + 6*time.Second, removed: 2*time.Minute + 11*time.Second}
	got := explainLoss("c1", lt, outages)
	want := "c1 started at 2m5s, exited at 2m6s, was removed at 2m11s (from the soak's start); the collector was down from 2m0s to 2m20s"
	if got != want {
		t.Errorf("explainLoss = %q, want %q", got, want)
	}
	lt = lifetime{started: time.Minute, exited: time.Minute + time.Second, removed: time.Minute + 6*time.Second}
	if got := explainLoss("c2", lt, outages); !strings.HasSuffix(got, "; the collector was up") {
		t.Errorf("explainLoss = %q, want the collector up", got)
	}
}

const goroutineProfile = `goroutine profile: total 70
64 @ 0x48d94e 0x469fa5 0x853dce 0x4a046a 0x4951a1
#	0x853dcd	github.com/dockscope/dockscope/collector.(*statsSampler).run.func1+0xad	/work/main/collector/stats.go:90
#	0x4a0469	sync.(*WaitGroup).Go.func1+0x49						/usr/local/go/src/sync/waitgroup.go:258

2 @ 0x48d94e 0x469fa5 0x77ce26 0x4951a1
#	0x77ce25	net/http.(*persistConn).writeLoop+0xe5	/usr/local/go/src/net/http/transport.go:2652

3 @ 0x422f69 0x48fc18 0x56da73 0x4951a1
#	0x48fc17	os/signal.signal_recv+0x97	/usr/local/go/src/runtime/sigqueue.go:152
#	0x56da72	os/signal.loop+0x12		/usr/local/go/src/os/signal/signal_unix.go:23

1 @ 0x422f69 0x48fc18 0x56da73 0x4951a1
#	0x48fc17	net/http.(*persistConn).writeLoop+0x97	/usr/local/go/src/runtime/sigqueue.go:152
`

func TestGoroutines(t *testing.T) {
	g, err := parseGoroutines(strings.NewReader(goroutineProfile))
	if err != nil {
		t.Fatal(err)
	}
	want := goroutineCounts{
		"github.com/dockscope/dockscope/collector.(*statsSampler).run.func1": 64,
		"net/http.(*persistConn).writeLoop":                                  3,
		"os/signal.loop":                                                     3,
	}
	if len(g) != len(want) {
		t.Errorf("parsed %v, want %v", g, want)
	}
	for fn, n := range want {
		if g[fn] != n {
			t.Errorf("%s: %d goroutines, want %d", fn, g[fn], n)
		}
	}
	late := goroutineCounts{"net/http.(*persistConn).writeLoop": 13, "os/signal.loop": 3, "x.tail": 2}
	got := goroutineDiff(g, late, 2)
	if !slices.Equal(got, []string{"github.com/dockscope/dockscope/collector.(*statsSampler).run.func1 64 → 0", "net/http.(*persistConn).writeLoop 3 → 13"}) {
		t.Errorf("goroutineDiff = %q", got)
	}
	if _, err := parseGoroutines(strings.NewReader("x @ 0x1\n")); err == nil {
		t.Error("a bad count was accepted")
	}
}
