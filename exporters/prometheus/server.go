package prometheus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/exporter-toolkit/web"
)

// ReadyFunc reports whether the agent is ready, and why not.
type ReadyFunc func() (bool, string)

// ServerOptions configure the HTTP endpoint.
type ServerOptions struct {
	ListenAddress string
	MetricsPath   string
	// WebConfigFile is an exporter-toolkit web configuration (TLS, basic
	// auth); empty serves plain HTTP.
	WebConfigFile string
	// Containers renders the container series; nil serves none.
	// SetSources replaces it and Ready while the server runs.
	Containers *ContainerCollector
	// Collectors are the agent's own metrics, gathered with client_golang.
	Collectors []Collector
	// Ready answers /readyz; nil reads as not ready.
	Ready ReadyFunc
	// EnablePprof serves net/http/pprof under /debug/pprof/, and
	// /debug/free-os-memory.
	EnablePprof bool
	Logger      *slog.Logger
	Version     string
	// Listener, when set, is served instead of binding ListenAddress; the
	// server owns it from then on (see ShareListener).
	Listener net.Listener
}

// Server serves /metrics, /healthz and /readyz.
type Server struct {
	opts     ServerOptions
	listener net.Listener
	srv      *http.Server
	sources  atomic.Pointer[sources]

	freshMu sync.Mutex
	fresh   map[net.Conn]struct{} // accepted, first request not read yet
}

// sources are what a configuration reload replaces; the listener and the
// agent's own metrics outlive reloads so scrapes are never refused.
type sources struct {
	containers *ContainerCollector
	ready      ReadyFunc
}

// SetSources swaps the container series and the readiness check, for a
// configuration reload. A nil ready reads as not ready.
func (s *Server) SetSources(containers *ContainerCollector, ready ReadyFunc) {
	s.sources.Store(&sources{containers: containers, ready: ready})
}

// NewServer validates the web configuration and binds the listen address,
// so that a port in use or a bad TLS file is reported at start-up (or at a
// reload, while the running server goes on), not after the agent claims to
// be running.
func NewServer(opts ServerOptions) (*Server, error) {
	s := &Server{opts: opts}
	s.SetSources(opts.Containers, opts.Ready)
	mux, err := s.handler()
	if err != nil {
		if opts.Listener != nil {
			opts.Listener.Close()
		}
		return nil, err
	}
	l := opts.Listener
	if l == nil {
		if l, err = net.Listen("tcp", opts.ListenAddress); err != nil {
			return nil, fmt.Errorf("listening on %s: %w", opts.ListenAddress, err)
		}
	}
	s.listener = l
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         s.trackFresh,
	}
	s.fresh = make(map[net.Conn]struct{})
	return s, nil
}

// CheckServer reports what NewServer would refuse in opts, without binding
// the address: for --config.check.
func CheckServer(opts ServerOptions) error {
	_, err := (&Server{opts: opts}).handler()
	return err
}

// ShareListener returns a second listener on the server's socket, for a
// server that takes the address over at a reload: the socket stays open
// until both are closed, so no connection is refused in between.
func (s *Server) ShareListener() (net.Listener, error) {
	tl, ok := s.listener.(*net.TCPListener)
	if !ok {
		return nil, fmt.Errorf("sharing listener %s: not a TCP listener", s.listener.Addr())
	}
	f, err := tl.File() // a duplicate descriptor of the same socket
	if err != nil {
		return nil, fmt.Errorf("sharing listener %s: %w", s.listener.Addr(), err)
	}
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("sharing listener %s: %w", s.listener.Addr(), err)
	}
	return l, nil
}

// Close releases the listener of a server that will not Run (a reload
// given up).
func (s *Server) Close() error { return s.listener.Close() }

// handler checks the web configuration and builds the routes.
func (s *Server) handler() (http.Handler, error) {
	opts := s.opts
	if opts.WebConfigFile != "" {
		if err := web.Validate(opts.WebConfigFile); err != nil {
			return nil, fmt.Errorf("checking web config file %s: %w", opts.WebConfigFile, err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, c := range opts.Collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics collector: %w", err)
		}
	}

	mux := http.NewServeMux()
	// The telemetry path first: http.ServeMux panics on a pattern it cannot
	// parse or that overlaps another, and config validation should have
	// refused such a path, but a panic here would end the agent.
	if err := handle(mux, opts.MetricsPath, &metricsHandler{
		reg:     reg,
		sources: &s.sources,
		log:     opts.Logger,
		writers: make(chan struct{}, maxScrapeWriters),
		renders: make(chan struct{}, maxScrapeRenders),
		bufs:    make(chan *bytes.Buffer, 2),
		zbufs:   make(chan *bytes.Buffer, 2),
		gzips:   make(chan *gzip.Writer, 2),
	}); err != nil {
		return nil, err
	}
	routes := map[string]http.Handler{
		"/healthz": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "ok")
		}),
		"/readyz": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			ok, reason := false, "starting"
			if ready := s.sources.Load().ready; ready != nil {
				ok, reason = ready()
			}
			if !ok {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: %s\n", reason)
				return
			}
			fmt.Fprintln(w, "ready")
		}),
	}
	if opts.EnablePprof {
		routes["/debug/pprof/"] = http.HandlerFunc(pprof.Index)
		routes["/debug/pprof/cmdline"] = http.HandlerFunc(pprof.Cmdline)
		routes["/debug/pprof/profile"] = http.HandlerFunc(pprof.Profile)
		routes["/debug/pprof/symbol"] = http.HandlerFunc(pprof.Symbol)
		routes["/debug/pprof/trace"] = http.HandlerFunc(pprof.Trace)
		routes["POST /debug/free-os-memory"] = http.HandlerFunc(freeOSMemory)
	}
	if opts.MetricsPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "dockscope",
			Description: "Container metrics and logs from the Docker Engine",
			Version:     opts.Version,
			Links: []web.LandingLinks{
				{Address: opts.MetricsPath, Text: "Metrics"},
				{Address: "/readyz", Text: "Readiness"},
			},
		})
		if err != nil {
			return nil, fmt.Errorf("building landing page: %w", err)
		}
		routes["/"] = landing
	}
	for pattern, h := range routes {
		if err := handle(mux, pattern, h); err != nil {
			return nil, err
		}
	}
	return mux, nil
}

// handle registers h, turning ServeMux's panic on a bad or overlapping
// pattern into an error.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("serving %q: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// The endpoint is unauthenticated unless a web config file says otherwise,
// so no client may hold the agent's descriptors, memory or scrape slots for
// longer than these bounds.
const (
	// readHeaderTimeout bounds a request's headers: scrapers send theirs at
	// once.
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds a whole request; the agent's requests have no body.
	readTimeout = 30 * time.Second
	// writeTimeout bounds a response from the end of its request: a client
	// that stops reading loses its connection after it. One minute is the
	// longest scrape_timeout Prometheus allows at its default 1 m scrape
	// interval, and fits pprof's default 30 s CPU profile (pprof refuses a
	// profile as long as the server's WriteTimeout).
	writeTimeout = time.Minute
	// idleTimeout closes a keep-alive connection with no request. Prometheus
	// scrapes every 15 s to 1 m, so it reconnects for most scrapes; one TCP
	// (or TLS) handshake per scrape is cheap next to a descriptor held for
	// ever by every client that ever connected.
	idleTimeout = 10 * time.Second
	// maxHeaderBytes is ample for a scraper's or a browser's headers (Go's
	// default is 1 MiB, buffered per connection).
	maxHeaderBytes = 32 << 10

	// maxScrapeWriters bounds the responses being sent at once; each holds
	// its rendered scrape (a few MB at a few thousand containers) until the
	// client has read it or writeTimeout ends it. Eight leaves room for
	// Prometheus HA pairs and curl while a few stalled clients sit out their
	// timeout; beyond it a scrape gets 503 at once instead of queueing.
	maxScrapeWriters = 8
	// maxScrapeRenders bounds scrapes being built at once (CPU only, no
	// client involved), and renderWait how long one waits for its turn.
	maxScrapeRenders = 2
	renderWait       = 5 * time.Second
)

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// Run serves until ctx is cancelled, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		systemd := false
		configFile := s.opts.WebConfigFile
		errc <- web.Serve(s.listener, s.srv, &web.FlagConfig{
			WebListenAddresses: &[]string{s.opts.ListenAddress},
			WebSystemdSocket:   &systemd,
			WebConfigFile:      &configFile,
		}, s.opts.Logger)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serving HTTP on %s: %w", s.listener.Addr(), err)
	case <-ctx.Done():
	}
	// Stop accepting, then give the connections just accepted the time to
	// send their request: net/http closes, unanswered, a connection whose
	// request it reads after Shutdown began. At a reload that hands the
	// socket to a new server, those would be failed scrapes.
	_ = s.listener.Close()
	s.waitFresh(freshConnWait)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(shutdownCtx)
	if errors.Is(err, net.ErrClosed) {
		// Shutdown closes the listeners Serve still tracks: ours was
		// closed above already. It waited for the connections all the
		// same; only that close failed.
		err = nil
	}
	if err != nil {
		// Clients still being written to (or stalled) are cut off rather
		// than left holding their handlers until writeTimeout.
		_ = s.srv.Close()
	}
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && !errors.Is(serveErr, net.ErrClosed) && err == nil {
		err = serveErr
	}
	if err != nil {
		return fmt.Errorf("shutting down HTTP server: %w", err)
	}
	return nil
}

// freshConnWait bounds how long a stopping server waits for accepted
// connections to send their first request; a scraper sends it at once.
const freshConnWait = 2 * time.Second

// trackFresh is the server's ConnState hook: it keeps the connections
// accepted whose first request has not arrived yet.
func (s *Server) trackFresh(c net.Conn, state http.ConnState) {
	s.freshMu.Lock()
	defer s.freshMu.Unlock()
	if state == http.StateNew {
		s.fresh[c] = struct{}{}
	} else {
		delete(s.fresh, c)
	}
}

// waitFresh waits until no accepted connection is waiting for its first
// request, or for at most d.
func (s *Server) waitFresh(d time.Duration) {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		s.freshMu.Lock()
		n := len(s.fresh)
		s.freshMu.Unlock()
		if n == 0 {
			return
		}
	}
}

// Collector is a prometheus.Collector, named here so callers need not
// import client_golang.
type Collector = prometheus.Collector

// metricsHandler serves the container series, written directly, followed
// by the registry's (the agent's own, Go runtime and process metrics), in
// the text format. A response is rendered (and compressed) into a buffer
// before any byte is sent, so that a client that reads slowly, or not at
// all, holds only its own response and a writer slot, never what other
// scrapes need.
type metricsHandler struct {
	reg     *prometheus.Registry
	sources *atomic.Pointer[sources]
	log     *slog.Logger
	writers chan struct{} // responses in flight, rendered or being sent
	renders chan struct{} // responses being rendered
	// Response buffers (text and compressed) and gzip writers (whose
	// tables are large), kept across scrapes in free lists: a sync.Pool
	// empties at every GC, and regrowing them per scrape raised the
	// agent's peak RSS.
	bufs, zbufs chan *bytes.Buffer
	gzips       chan *gzip.Writer
}

// take returns a kept item, or nil.
func take[T any](free chan T) (v T) {
	select {
	case v = <-free:
	default:
	}
	return v
}

// keep returns an item to its free list, or drops it when the list is full.
func keep[T any](free chan T, v T) {
	select {
	case free <- v:
	default:
	}
}

var textFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

func (h *metricsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case h.writers <- struct{}{}:
		defer func() { <-h.writers }()
	default:
		http.Error(w, "too many concurrent scrapes", http.StatusServiceUnavailable)
		return
	}
	gz := strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
	body, err := h.render(r.Context(), gz)
	if err != nil {
		http.Error(w, err.Error(), err.status)
		return
	}
	defer func() {
		if gz {
			keep(h.zbufs, body)
		} else {
			keep(h.bufs, body)
		}
	}()
	w.Header().Set("Content-Type", string(textFormat))
	if gz {
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.Header().Set("Content-Length", strconv.Itoa(body.Len()))
	if _, err := w.Write(body.Bytes()); err != nil {
		h.log.Debug("writing scrape response", "err", err)
	}
}

// renderError is a scrape that could not be rendered, with its status.
type renderError struct {
	msg    string
	status int
}

func (e *renderError) Error() string { return e.msg }

// render builds the response body, compressed if gz, in a buffer the caller
// owns until it returns it to its free list.
func (h *metricsHandler) render(ctx context.Context, gz bool) (*bytes.Buffer, *renderError) {
	wait := time.NewTimer(renderWait)
	defer wait.Stop()
	select {
	case h.renders <- struct{}{}:
		defer func() { <-h.renders }()
	case <-wait.C:
		return nil, &renderError{"too many concurrent scrapes", http.StatusServiceUnavailable}
	case <-ctx.Done():
		return nil, &renderError{"scrape cancelled", http.StatusServiceUnavailable}
	}
	// Compressed, the scrape is written straight into the gzip writer: a
	// plain copy first would hold the whole text (9 MB at 1,000
	// containers) besides the compressed body, and copy it once more.
	var buf *bytes.Buffer
	var zw *gzip.Writer
	var w io.Writer
	if gz {
		buf = take(h.zbufs)
		if buf == nil {
			buf = new(bytes.Buffer)
		}
		buf.Reset()
		// Prometheus asks for gzip, and compressing is much of a scrape's
		// cost. BestSpeed, because the agent's CPU is what users watch;
		// klauspost's encoder, because at that level it took 3.7 ms where
		// compress/gzip took 8.9 for a 1.3 MB scrape of 210 containers,
		// and came out 8 % smaller.
		if zw = take(h.gzips); zw == nil {
			zw, _ = gzip.NewWriterLevel(buf, gzip.BestSpeed)
		} else {
			zw.Reset(buf)
		}
		defer keep(h.gzips, zw)
		w = zw
	} else {
		if buf = take(h.bufs); buf == nil {
			buf = new(bytes.Buffer)
		}
		buf.Reset()
		w = buf
	}
	release := func() {
		if gz {
			keep(h.zbufs, buf)
		} else {
			keep(h.bufs, buf)
		}
	}
	if containers := h.sources.Load().containers; containers != nil {
		if err := containers.WriteText(w); err != nil {
			release()
			return nil, &renderError{"rendering container metrics: " + err.Error(), http.StatusInternalServerError}
		}
	}
	mfs, err := h.reg.Gather()
	if err != nil {
		// Like promhttp's ContinueOnError: serve what could be gathered.
		h.log.Error("gathering agent metrics", "err", err)
	}
	enc := expfmt.NewEncoder(w, textFormat)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			release()
			return nil, &renderError{"encoding agent metrics: " + err.Error(), http.StatusInternalServerError}
		}
	}
	if gz {
		if err := zw.Close(); err != nil {
			release()
			return nil, &renderError{"compressing scrape: " + err.Error(), http.StatusInternalServerError}
		}
	}
	return buf, nil
}

// freeOSMemory collects garbage and hands every free page back to the
// system, then reports the memory the agent holds. The runtime otherwise
// keeps freed pages up to its next heap goal, so an RSS read at any one
// time carries up to a heap's worth of slack; read after this, it tells a
// leak from that slack.
func freeOSMemory(w http.ResponseWriter, _ *http.Request) {
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	fmt.Fprintf(w, "heap in use %d bytes, stacks %d bytes, released to the system %d bytes\n", m.HeapInuse, m.StackInuse, m.HeapReleased)
}
