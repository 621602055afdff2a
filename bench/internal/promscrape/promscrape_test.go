package promscrape

import (
	"strings"
	"testing"
)

func TestParseAndSum(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 96
dockscope_records_sent_total{stage="logs"} 1000
dockscope_records_sent_total{stage="events"} 3
odd line
process_resident_memory_bytes 1.9e+07
`
	m, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m["go_goroutines"] != 96 || m["process_resident_memory_bytes"] != 1.9e7 || len(m) != 4 {
		t.Errorf("parsed %v", m)
	}
	if s := Sum(m, `dockscope_records_sent_total{stage="logs"}`); s != 1000 {
		t.Errorf("logs sent = %v", s)
	}
	if s := Sum(m, "dockscope_records_sent_total"); s != 1003 {
		t.Errorf("all sent = %v", s)
	}
}
