package harness

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sample is one series of a Prometheus text exposition.
type Sample struct {
	Name      string            // series name as exposed, e.g. "x_bucket" for a histogram x
	Labels    map[string]string // never nil
	Value     float64
	Timestamp int64  // milliseconds; 0 if the line had none
	Type      string // TYPE of its family: counter, gauge, histogram, summary, untyped...
	Help      string // HELP of its family
}

// String formats the sample like the exposition line (labels sorted).
func (s Sample) String() string {
	return s.Name + formatLabels(s.Labels) + " " + strconv.FormatFloat(s.Value, 'g', -1, 64)
}

// Metrics is a parsed exposition: series name → samples, in exposition order.
type Metrics map[string][]Sample

// Find returns the first sample named name whose labels include all of
// labels (a nil map matches every sample).
func (m Metrics) Find(name string, labels map[string]string) (Sample, bool) {
	return FindSample(m, name, labels)
}

// FindAll returns every sample named name whose labels include all of labels.
func (m Metrics) FindAll(name string, labels map[string]string) []Sample {
	var out []Sample
	for _, s := range m[name] {
		if hasLabels(s.Labels, labels) {
			out = append(out, s)
		}
	}
	return out
}

// Names returns the series names, sorted.
func (m Metrics) Names() []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// FindSample returns the first sample in m named name whose labels include
// all of labels (a subset match; nil matches every sample).
func FindSample(m Metrics, name string, labels map[string]string) (Sample, bool) {
	for _, s := range m[name] {
		if hasLabels(s.Labels, labels) {
			return s, true
		}
	}
	return Sample{}, false
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// TryScrapeMetrics fetches url asking for the Prometheus text format 0.0.4 and
// parses the body.
func TryScrapeMetrics(url string) (Metrics, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("GET %s: Content-Type %q, want text/plain", url, ct)
	}
	m, err := ParseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v", url, err)
	}
	return m, nil
}

// ScrapeMetrics fetches url (e.g. "http://127.0.0.1:9817/metrics") and parses
// the Prometheus text exposition; it fails the test on any error, including a
// malformed exposition or a duplicate series.
func ScrapeMetrics(t testing.TB, url string) Metrics {
	t.Helper()
	m, err := TryScrapeMetrics(url)
	if err != nil {
		t.Fatalf("harness: scrape: %v", err)
	}
	return m
}

// ParseMetrics parses the Prometheus text exposition format 0.0.4 (including
// quoted UTF-8 metric and label names). It rejects malformed lines and
// duplicate series.
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	types := map[string]string{}
	helps := map[string]string{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			f := strings.SplitN(strings.TrimSpace(line[1:]), " ", 3)
			if len(f) >= 2 && (f[0] == "TYPE" || f[0] == "HELP") {
				name := f[1]
				if n, err := strconv.Unquote(name); err == nil {
					name = n
				}
				rest := ""
				if len(f) == 3 {
					rest = f[2]
				}
				if f[0] == "TYPE" {
					switch rest {
					case "counter", "gauge", "histogram", "gaugehistogram", "summary", "untyped", "info", "stateset", "unknown":
					default:
						return nil, fmt.Errorf("line %d: bad TYPE %q", lineNo, rest)
					}
					types[name] = rest
				} else {
					helps[name] = unescapeHelp(rest)
				}
			}
			continue
		}
		s, err := parseSampleLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v: %q", lineNo, err, line)
		}
		key := s.Name + formatLabels(s.Labels)
		if seen[key] {
			return nil, fmt.Errorf("line %d: duplicate series %s", lineNo, key)
		}
		seen[key] = true
		fam := familyOf(s.Name, types)
		s.Type = types[fam]
		if s.Type == "" {
			s.Type = "untyped"
		}
		s.Help = helps[fam]
		m[s.Name] = append(m[s.Name], s)
	}
	return m, sc.Err()
}

// familyOf returns the family a series name belongs to: itself if it has a
// TYPE, else the name without a histogram/summary/counter suffix that has one.
func familyOf(name string, types map[string]string) string {
	if _, ok := types[name]; ok {
		return name
	}
	for _, suf := range []string{"_bucket", "_sum", "_count", "_total", "_created", "_gcount", "_gsum", "_info"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if _, ok := types[base]; ok {
				return base
			}
		}
	}
	return name
}

func parseSampleLine(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := 0
	// Metric name, unless it is quoted inside the braces.
	for i < len(line) && isNameChar(line[i], i == 0, true) {
		i++
	}
	s.Name = line[:i]
	if i < len(line) && line[i] == '{' {
		i++
		first := true
		for {
			i = skipSpaces(line, i)
			if i >= len(line) {
				return s, fmt.Errorf("unterminated label set")
			}
			if line[i] == '}' {
				i++
				break
			}
			var lname string
			if line[i] == '"' {
				str, n, err := readQuoted(line, i)
				if err != nil {
					return s, err
				}
				i = skipSpaces(line, n)
				if first && s.Name == "" && i < len(line) && (line[i] == ',' || line[i] == '}') {
					s.Name = str // {"metric.name", ...}
					if line[i] == ',' {
						i++
					}
					first = false
					continue
				}
				lname = str
			} else {
				j := i
				for j < len(line) && isNameChar(line[j], j == i, false) {
					j++
				}
				if j == i {
					return s, fmt.Errorf("bad label name at byte %d", i)
				}
				lname = line[i:j]
				i = skipSpaces(line, j)
			}
			first = false
			if i >= len(line) || line[i] != '=' {
				return s, fmt.Errorf("missing = after label %s", lname)
			}
			i = skipSpaces(line, i+1)
			if i >= len(line) || line[i] != '"' {
				return s, fmt.Errorf("label %s: value not quoted", lname)
			}
			val, n, err := readQuoted(line, i)
			if err != nil {
				return s, err
			}
			if _, dup := s.Labels[lname]; dup {
				return s, fmt.Errorf("duplicate label %s", lname)
			}
			s.Labels[lname] = val
			i = skipSpaces(line, n)
			if i < len(line) && line[i] == ',' {
				i++
			} else if i >= len(line) || line[i] != '}' {
				return s, fmt.Errorf("expected , or } after label %s", lname)
			}
		}
	}
	if s.Name == "" {
		return s, fmt.Errorf("no metric name")
	}
	f := strings.Fields(line[i:])
	if len(f) < 1 || len(f) > 2 || (i < len(line) && line[i] != ' ' && line[i] != '\t') {
		return s, fmt.Errorf("want value [timestamp] after the series")
	}
	v, err := parseValue(f[0])
	if err != nil {
		return s, err
	}
	s.Value = v
	if len(f) == 2 {
		ts, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return s, fmt.Errorf("bad timestamp %q", f[1])
		}
		s.Timestamp = ts
	}
	return s, nil
}

func parseValue(v string) (float64, error) {
	switch v {
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("bad value %q", v)
	}
	return f, nil
}

func isNameChar(c byte, first, colonOK bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		return true
	case c == ':':
		return colonOK
	case c >= '0' && c <= '9':
		return !first
	}
	return false
}

func skipSpaces(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// readQuoted reads a double-quoted string with the exposition's escapes
// (\\, \", \n) starting at s[i] == '"'; it returns the value and the index
// after the closing quote.
func readQuoted(s string, i int) (string, int, error) {
	var b strings.Builder
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; c {
		case '"':
			return b.String(), j + 1, nil
		case '\\':
			j++
			if j >= len(s) {
				return "", 0, fmt.Errorf("unterminated escape")
			}
			switch s[j] {
			case '\\':
				b.WriteByte('\\')
			case '"':
				b.WriteByte('"')
			case 'n':
				b.WriteByte('\n')
			default:
				return "", 0, fmt.Errorf("bad escape \\%c", s[j])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("unterminated quoted string")
}

func unescapeHelp(s string) string {
	return strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(s)
}

func formatLabels(l map[string]string) string {
	if len(l) == 0 {
		return ""
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteString("=")
		b.WriteString(strconv.Quote(l[k]))
	}
	b.WriteByte('}')
	return b.String()
}
