package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// tally counts what the collector received: for each container, how many
// copies of each numbered line.
type tally struct {
	lines  map[string]map[int]int // container name → line number → copies
	events int                    // lifecycle events shipped as log records
	other  int                    // records that are neither (should stay 0)
}

func newTally() *tally { return &tally{lines: map[string]map[int]int{}} }

// otlpLogs is the part of an OTLP/JSON logs export request the soak reads.
type otlpLogs struct {
	ResourceLogs []struct {
		Resource struct {
			Attributes []otlpKV `json:"attributes"`
		} `json:"resource"`
		ScopeLogs []struct {
			LogRecords []struct {
				Body      otlpValue `json:"body"`
				EventName string    `json:"eventName"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

type otlpKV struct {
	Key   string    `json:"key"`
	Value otlpValue `json:"value"`
}

type otlpValue struct {
	StringValue *string `json:"stringValue"`
}

// addFile counts every export request of a file exporter output. A missing
// file counts nothing; a last line without its newline is being written
// and is left for the next read.
func (t *tally) addFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the collector output: %w", err)
	}
	defer f.Close()
	if err := t.add(f); err != nil {
		return fmt.Errorf("reading the collector output %s: %w", path, err)
	}
	return nil
}

func (t *tally) add(r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			return nil // a partial last line, if any, is not complete yet
		}
		if err != nil {
			return err
		}
		var req otlpLogs
		if err := json.Unmarshal(line, &req); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		for _, rl := range req.ResourceLogs {
			name := ""
			for _, kv := range rl.Resource.Attributes {
				if kv.Key == "container.name" && kv.Value.StringValue != nil {
					name = *kv.Value.StringValue
				}
			}
			for _, sl := range rl.ScopeLogs {
				for _, rec := range sl.LogRecords {
					t.record(name, rec.EventName, rec.Body)
				}
			}
		}
	}
}

func (t *tally) record(container, event string, body otlpValue) {
	if event != "" {
		t.events++
		return
	}
	if body.StringValue == nil || container == "" {
		t.other++
		return
	}
	n, ok := lineNumber(*body.StringValue)
	if !ok {
		t.other++
		return
	}
	m := t.lines[container]
	if m == nil {
		m = map[int]int{}
		t.lines[container] = m
	}
	m[n]++
}

// verdict compares a tally with what the containers wrote.
type verdict struct {
	written    int // lines the expected containers wrote
	delivered  int // of those, lines that arrived at least once
	lost       int // written, never arrived
	duplicated int // extra copies of lines that arrived more than once
	unexpected int // records of lines nobody wrote (unknown container or line number)
	// lostIn names containers with lost lines, with how many, sorted.
	lostIn []string
	// lostNames are the same containers' names.
	lostNames []string
}

// check compares the tally with expected (container name → lines 1..n).
func (t *tally) check(expected map[string]int) verdict {
	var v verdict
	for name, n := range expected {
		got := t.lines[name]
		lost := 0
		for i := 1; i <= n; i++ {
			switch c := got[i]; {
			case c == 0:
				lost++
			case c > 1:
				v.duplicated += c - 1
			}
		}
		v.written += n
		v.delivered += n - lost
		v.lost += lost
		if lost > 0 {
			v.lostIn = append(v.lostIn, fmt.Sprintf("%s (%d of %d)", name, lost, n))
			v.lostNames = append(v.lostNames, name)
		}
	}
	for name, m := range t.lines {
		n, known := expected[name]
		for i, c := range m {
			if !known || i < 1 || i > n {
				v.unexpected += c
			}
		}
	}
	slices.Sort(v.lostIn)
	slices.Sort(v.lostNames)
	return v
}

func (v verdict) String() string {
	s := fmt.Sprintf("written %d, delivered %d, lost %d, duplicated %d, unexpected %d", v.written, v.delivered, v.lost, v.duplicated, v.unexpected)
	if len(v.lostIn) > 0 {
		shown := v.lostIn
		if len(shown) > 10 {
			shown = shown[:10]
		}
		s += "; lost in " + strings.Join(shown, ", ")
		if len(v.lostIn) > len(shown) {
			s += fmt.Sprintf(" and %d more containers", len(v.lostIn)-len(shown))
		}
	}
	return s
}
