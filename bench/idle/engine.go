package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// engine is a fake Docker Engine on a unix socket: n running containers,
// each with one log line, whose follow streams stay open and silent, and an
// events stream with no events. It answers what the agent asks while it
// discovers and follows containers, and counts what it was asked besides.
type engine struct {
	sock    string
	srv     *http.Server
	ids     []string
	started time.Time

	following atomic.Int64 // follow streams open now
	logsReqs  atomic.Int64
	inspects  atomic.Int64
	mu        sync.Mutex
	unknown   map[string]int // paths it had no answer for
}

// apiVersion is what the fake engine negotiates: Engine 20.10's, the
// oldest the agent supports.
const apiVersion = "1.41"

var versionPrefix = regexp.MustCompile(`^/v[0-9]+\.[0-9]+`)

func containerID(i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "dockscope-bench-idle-%d", i))
	return hex.EncodeToString(sum[:])
}

func startEngine(sock string, n int) (*engine, error) {
	e := &engine{sock: sock, started: time.Now().Add(-time.Minute).UTC(), unknown: map[string]int{}}
	for i := range n {
		e.ids = append(e.ids, containerID(i))
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", sock, err)
	}
	e.srv = &http.Server{Handler: http.HandlerFunc(e.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.srv.Serve(ln) }()
	return e, nil
}

// close ends every stream and the listener.
func (e *engine) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		_ = e.srv.Close()
	}
}

func (e *engine) unknownPaths() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for k, v := range e.unknown {
		out[k] = v
	}
	return out
}

func (e *engine) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Api-Version", apiVersion)
	w.Header().Set("Ostype", "linux")
	path := versionPrefix.ReplaceAllString(r.URL.Path, "")
	switch {
	case path == "/_ping":
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("OK"))
	case path == "/version":
		writeJSON(w, map[string]any{"Version": "20.10.24", "ApiVersion": apiVersion, "MinAPIVersion": "1.12",
			"Os": "linux", "Arch": "amd64"})
	case path == "/info":
		writeJSON(w, map[string]any{"Name": "bench-idle", "ServerVersion": "20.10.24", "OSType": "linux",
			"CgroupDriver": "cgroupfs", "CgroupVersion": "1", "SystemTime": time.Now().UTC().Format(time.RFC3339Nano)})
	case path == "/events":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	case path == "/containers/json":
		list := make([]map[string]any, 0, len(e.ids))
		for i, id := range e.ids {
			list = append(list, map[string]any{"Id": id, "Names": []string{"/" + name(i)}, "Image": "bench/idle:1",
				"ImageID": "sha256:" + strings.Repeat("0", 64), "Created": e.started.Unix(), "State": "running",
				"Status": "Up 1 minute", "Labels": map[string]string{}})
		}
		writeJSON(w, list)
	case strings.HasPrefix(path, "/containers/"):
		rest := strings.TrimPrefix(path, "/containers/")
		id, op, _ := strings.Cut(rest, "/")
		i := e.index(id)
		if i < 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			writeJSON(w, map[string]string{"message": "No such container: " + id})
			return
		}
		switch op {
		case "json":
			e.inspects.Add(1)
			e.inspect(w, i)
		case "logs":
			e.follow(w, r)
		case "stats":
			writeJSON(w, map[string]any{"read": time.Now().UTC().Format(time.RFC3339Nano), "id": id, "name": "/" + name(i),
				"pids_stats": map[string]any{"current": 1}, "cpu_stats": map[string]any{"cpu_usage": map[string]any{"total_usage": 1000}},
				"memory_stats": map[string]any{"usage": 1 << 20, "limit": 1 << 30}})
		default:
			e.notFound(w, path)
		}
	default:
		e.notFound(w, path)
	}
}

func name(i int) string { return fmt.Sprintf("bench-idle-%05d", i) }

func (e *engine) index(id string) int {
	for i, x := range e.ids {
		if x == id {
			return i
		}
	}
	return -1
}

func (e *engine) notFound(w http.ResponseWriter, path string) {
	e.mu.Lock()
	e.unknown[path]++
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	writeJSON(w, map[string]string{"message": "page not found"})
}

func (e *engine) inspect(w http.ResponseWriter, i int) {
	started := e.started.Format(time.RFC3339Nano)
	writeJSON(w, map[string]any{
		"Id": e.ids[i], "Name": "/" + name(i), "Created": started, "Image": "sha256:" + strings.Repeat("0", 64),
		"RestartCount": 0,
		"State": map[string]any{"Status": "running", "Running": true, "Pid": 0, "StartedAt": started,
			"FinishedAt": "0001-01-01T00:00:00Z"},
		"Config":     map[string]any{"Image": "bench/idle:1", "Labels": map[string]string{}, "Tty": false},
		"HostConfig": map[string]any{"LogConfig": map[string]any{"Type": "json-file"}},
	})
}

// follow sends the container's one line, as a multiplexed stdout frame,
// and keeps the stream open and silent until the agent or close ends it.
func (e *engine) follow(w http.ResponseWriter, r *http.Request) {
	e.logsReqs.Add(1)
	w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
	w.WriteHeader(http.StatusOK)
	at := e.started.Add(time.Second)
	if since, err := strconv.ParseFloat(r.URL.Query().Get("since"), 64); err != nil || since <= float64(at.Unix()) {
		line := at.Format("2006-01-02T15:04:05.000000000Z") + " idle container started, nothing more to say\n"
		frame := make([]byte, 8, 8+len(line))
		frame[0] = 1
		binary.BigEndian.PutUint32(frame[4:], uint32(len(line)))
		_, _ = w.Write(append(frame, line...))
	}
	if err := http.NewResponseController(w).Flush(); err != nil {
		return
	}
	e.following.Add(1)
	defer e.following.Add(-1)
	<-r.Context().Done()
}

func writeJSON(w http.ResponseWriter, v any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	_ = json.NewEncoder(w).Encode(v) // the agent's side of a failed write shows in its metrics
}
