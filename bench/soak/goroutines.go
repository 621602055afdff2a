package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// goroutineCounts is the agent's goroutines grouped by the function each
// was started with: two of them, early and late in the soak, tell which
// kind of goroutine a growth comes from.
type goroutineCounts map[string]int

// startWrappers start goroutines on behalf of the function below them on
// the stack, which names the goroutine better.
var startWrappers = []string{"sync.(*WaitGroup).Go.func1", "golang.org/x/sync/errgroup.(*Group).Go.func1"}

// parseGoroutines reads a /debug/pprof/goroutine?debug=1 profile: records
// "N @ addresses" followed by "#\taddress\tfunction+offset\tfile:line"
// frames, innermost first.
func parseGoroutines(r io.Reader) (goroutineCounts, error) {
	counts := goroutineCounts{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	var frames []string
	flush := func() {
		if n == 0 {
			return
		}
		entry := "?"
		for i := len(frames) - 1; i >= 0; i-- {
			entry = frames[i]
			if !slices.Contains(startWrappers, entry) {
				break
			}
		}
		counts[entry] += n
		n, frames = 0, frames[:0]
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#\t"):
			f := strings.Split(line, "\t")
			if len(f) >= 3 {
				fn := f[2]
				if i := strings.LastIndex(fn, "+0x"); i >= 0 {
					fn = fn[:i]
				}
				frames = append(frames, fn)
			}
		case strings.Contains(line, " @ "):
			flush()
			v, err := strconv.Atoi(strings.TrimSpace(line[:strings.Index(line, " @ ")]))
			if err != nil {
				return nil, fmt.Errorf("parsing the goroutine profile: %q", line)
			}
			n = v
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the goroutine profile: %w", err)
	}
	return counts, nil
}

// fetchGoroutines asks the agent (run with --web.enable-pprof) for its
// goroutines and keeps the raw profile in path.
func fetchGoroutines(ctx context.Context, url, path string) (goroutineCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching the goroutine profile: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the goroutine profile: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the goroutine profile: %s, %v", resp.Status, err)
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return nil, fmt.Errorf("keeping the goroutine profile: %w", err)
	}
	return parseGoroutines(strings.NewReader(string(body)))
}

// goroutineDiff lists the start functions whose goroutine count changed
// from early to late, largest change first, at most limit.
func goroutineDiff(early, late goroutineCounts, limit int) []string {
	type change struct {
		fn       string
		from, to int
	}
	var cs []change
	for fn := range late {
		if late[fn] != early[fn] {
			cs = append(cs, change{fn, early[fn], late[fn]})
		}
	}
	for fn := range early {
		if _, ok := late[fn]; !ok {
			cs = append(cs, change{fn, early[fn], 0})
		}
	}
	abs := func(x int) int { return max(x, -x) }
	slices.SortFunc(cs, func(a, b change) int {
		return cmp.Or(abs(b.to-b.from)-abs(a.to-a.from), strings.Compare(a.fn, b.fn))
	})
	var out []string
	for _, c := range cs[:min(len(cs), limit)] {
		out = append(out, fmt.Sprintf("%s %d → %d", c.fn, c.from, c.to))
	}
	return out
}
