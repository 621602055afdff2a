package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate checks the values that decoding alone cannot: ranges, choices,
// addresses, patterns and fields that go together. It returns the first
// problem as an *Error naming the key; Parse adds the file and line.
func (c *Config) Validate() error {
	if p := c.problems(); len(p) > 0 {
		return p[0]
	}
	return nil
}

// problems lists every problem, in struct order, with Key and Msg set.
func (c *Config) problems() []*Error {
	var v validator

	a := c.Agent
	v.oneOf("agent.log_level", a.LogLevel, "debug", "info", "warn", "error")
	v.oneOf("agent.log_format", a.LogFormat, "logfmt", "json")
	if a.StateDir == "" {
		v.add("agent.state_dir", "must not be empty")
	}
	if a.MaxProcs < 0 {
		v.add("agent.max_procs", "must not be negative, got %d", a.MaxProcs)
	}

	dk := c.Docker
	v.dockerHost("docker.host", dk.Host)
	v.positive("docker.timeout", dk.Timeout)
	v.atLeast("docker.max_backoff", dk.MaxBackoff, time.Second)

	ds := c.Discovery
	v.atLeast("discovery.resync_interval", ds.ResyncInterval, time.Second)
	v.filter("discovery.include", ds.Include)
	v.filter("discovery.exclude", ds.Exclude)
	for i, p := range ds.LabelAllowlist {
		v.glob(index("discovery.label_allowlist", i), p)
	}

	s := c.Stats
	v.atLeast("stats.interval", s.Interval, time.Second)
	if s.Concurrency < 1 || s.Concurrency > 256 {
		v.add("stats.concurrency", "must be between 1 and 256, got %d", s.Concurrency)
	}
	v.oneOf("stats.source", s.Source, "api", "cgroup", "auto")
	for _, root := range []struct{ key, path string }{{"stats.cgroup_root", s.CgroupRoot}, {"stats.proc_root", s.ProcRoot}, {"stats.sys_root", s.SysRoot}} {
		if !path.IsAbs(root.path) {
			v.add(root.key, "must be an absolute path, got %q", root.path)
		}
	}
	if f := s.Filesystem; f.Enabled {
		v.atLeast("stats.filesystem.interval", f.Interval, 10*time.Second)
		if f.DockerRoot != "" && !path.IsAbs(f.DockerRoot) {
			v.add("stats.filesystem.docker_root", "must be empty (the daemon's own data root) or an absolute path, got %q", f.DockerRoot)
		}
		if f.FilesPerTurn < 100 {
			v.add("stats.filesystem.files_per_turn", "must be at least 100, got %d", f.FilesPerTurn)
		}
		if f.FilesPerSecond < 100 {
			v.add("stats.filesystem.files_per_second", "must be at least 100, got %d", f.FilesPerSecond)
		}
	}

	l := c.Logs
	if l.MaxLineBytes < 1024 || l.MaxLineBytes > 64<<20 {
		v.add("logs.max_line_bytes", "must be between 1024 and 67108864, got %d", l.MaxLineBytes)
	}
	if l.BufferBytes < int64(l.MaxLineBytes) {
		v.add("logs.buffer_bytes", "must be at least logs.max_line_bytes (%d), got %d", l.MaxLineBytes, l.BufferBytes)
	}
	v.oneOf("logs.overflow", l.Overflow, "block", "drop")
	if l.Batch.MaxRecords < 1 {
		v.add("logs.batch.max_records", "must be at least 1, got %d", l.Batch.MaxRecords)
	}
	if l.Batch.MaxBytes < 1024 {
		v.add("logs.batch.max_bytes", "must be at least 1024, got %d", l.Batch.MaxBytes)
	}
	v.positive("logs.batch.timeout", l.Batch.Timeout)
	v.maxLineFitsBatch(l)

	w := c.Web
	v.listenAddress("web.listen_address", w.ListenAddress)
	switch tp := w.TelemetryPath; {
	case !strings.HasPrefix(tp, "/"):
		v.add("web.telemetry_path", `must start with "/", got %q`, tp)
	case tp == "/healthz" || tp == "/readyz":
		v.add("web.telemetry_path", "must not be /healthz or /readyz, which the agent serves itself; got %q", tp)
	case strings.ContainsAny(tp, " \t\r\n"):
		v.add("web.telemetry_path", "must not contain white space, got %q", tp)
	default:
		if msg := routeProblem(tp); msg != "" {
			v.add("web.telemetry_path", "%s; got %q", msg, tp)
		}
	}
	v.readable("web.config_file", w.ConfigFile)

	o := c.Exporters.OTLP
	v.endpoint("exporters.otlp.endpoint", o.Endpoint)
	if o.Protocol != "" {
		v.oneOf("exporters.otlp.protocol", o.Protocol, "grpc", "http/protobuf")
	}
	v.otlpHeaders("exporters.otlp.headers", o.Headers)
	v.oneOf("exporters.otlp.compression", o.Compression, "gzip", "none")
	v.positive("exporters.otlp.timeout", o.Timeout)
	if o.Interval != 0 && o.Interval < time.Second {
		v.add("exporters.otlp.interval", "must be 0 (use stats.interval) or at least 1s, got %s", o.Interval)
	}
	v.readable("exporters.otlp.tls.ca_file", o.TLS.CAFile)
	v.readable("exporters.otlp.tls.cert_file", o.TLS.CertFile)
	v.readable("exporters.otlp.tls.key_file", o.TLS.KeyFile)
	switch t := o.TLS; {
	case t.CertFile != "" && t.KeyFile == "":
		v.add("exporters.otlp.tls.cert_file", "is set but key_file is not; set both or neither")
	case t.KeyFile != "" && t.CertFile == "":
		v.add("exporters.otlp.tls.key_file", "is set but cert_file is not; set both or neither")
	}
	if r := o.Retry; r.Enabled {
		// Disabled retry ignores the intervals, so leftovers do not matter.
		v.positive("exporters.otlp.retry.initial_interval", r.InitialInterval)
		v.positive("exporters.otlp.retry.max_interval", r.MaxInterval)
		if r.InitialInterval > 0 && r.MaxInterval > 0 && r.MaxInterval < r.InitialInterval {
			v.add("exporters.otlp.retry.max_interval", "must not be less than initial_interval (%s), got %s", r.InitialInterval, r.MaxInterval)
		}
		if r.MaxElapsedTime < 0 {
			v.add("exporters.otlp.retry.max_elapsed_time", "must not be negative (0 means no limit), got %s", r.MaxElapsedTime)
		}
	}
	return v.problems
}

// validator collects problems so that Parse can report them all, in file
// order rather than in struct order.
type validator struct {
	problems []*Error
}

func (v *validator) add(key, format string, args ...any) {
	v.problems = append(v.problems, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) oneOf(key, got string, choices ...string) {
	if !slices.Contains(choices, got) {
		v.add(key, "must be one of %s; got %q", strings.Join(choices, ", "), got)
	}
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.add(key, "must be greater than 0, got %s", d)
	}
}

func (v *validator) atLeast(key string, d, minimum time.Duration) {
	if d < minimum {
		v.add(key, "must be at least %s, got %s", minimum, d)
	}
}

// glob checks a pattern the way the collector will use it. path.Match
// reports a malformed pattern whatever the name, so "" is enough.
func (v *validator) glob(key, pattern string) {
	if pattern == "" {
		v.add(key, "must not be an empty pattern")
		return
	}
	if _, err := path.Match(pattern, ""); err != nil {
		v.add(key, "invalid glob pattern %q: %v", pattern, err)
	}
}

func (v *validator) filter(key string, f Filter) {
	for i, p := range f.Names {
		v.glob(index(key+".names", i), p)
	}
	for i, p := range f.Images {
		v.glob(index(key+".images", i), p)
	}
	for i, p := range f.Labels {
		k := index(key+".labels", i)
		name, value, hasValue := strings.Cut(p, "=")
		if name == "" {
			v.add(k, `must be "key" or "key=glob" with a non-empty key, got %q`, p)
			continue
		}
		if !hasValue {
			continue
		}
		if _, err := path.Match(value, ""); err != nil {
			v.add(k, "invalid glob pattern %q for the value of label %q: %v", value, name, err)
		}
	}
}

func (v *validator) listenAddress(key, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(key, "cannot parse %q as host:port: %s", addr, addrErr(err))
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.add(key, "port must be a number from 0 to 65535, got %q", port)
	}
}

// endpoint accepts what the OTLP exporters accept: a URL (http or https,
// whose scheme then decides TLS) or a bare host:port.
func (v *validator) endpoint(key, ep string) {
	if ep == "" {
		return
	}
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		switch {
		case err != nil:
			v.add(key, "cannot parse %q as a URL: %s", RedactURL(ep), urlErr(err))
		case u.Scheme != "http" && u.Scheme != "https":
			v.add(key, "URL scheme must be http or https, got %q", u.Scheme)
		case u.Host == "":
			v.add(key, "URL %q has no host", RedactURL(ep))
		}
		return
	}
	host, port, err := net.SplitHostPort(ep)
	if err == nil && host != "" {
		if _, err := strconv.ParseUint(port, 10, 16); err == nil {
			return
		}
	}
	v.add(key, `must be a URL such as "https://collector:4318" or a host:port such as "collector:4317", got %q`, RedactURL(ep))
}

// dockerHost refuses what the Docker client refuses when the collector is
// built (at start, or at a reload): no "proto://", an empty address, a tcp
// URL that does not parse.
func (v *validator) dockerHost(key, h string) {
	if h == "" {
		return
	}
	proto, addr, ok := strings.Cut(h, "://")
	switch {
	case !ok || proto == "" || addr == "":
		v.add(key, `must be "unix:///path/to/docker.sock" or "tcp://host:port", got %q`, h)
	case proto == "tcp":
		if _, err := url.Parse(h); err != nil {
			v.add(key, "cannot parse %q as a URL: %s", h, urlErr(err))
		}
	}
}

// readable checks that a file the agent will read at start, and again at
// every reload, can be read now: --config.check must refuse what the agent
// would then fail on.
func (v *validator) readable(key, name string) {
	if name == "" {
		return
	}
	f, err := os.Open(name)
	if err == nil {
		var fi os.FileInfo
		if fi, err = f.Stat(); err == nil && fi.IsDir() {
			err = errors.New("is a directory")
		}
		f.Close()
	}
	if err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			err = pe.Err
		}
		v.add(key, "cannot read %q: %v", name, err)
	}
}

// routeProblem says why the agent's HTTP server could not serve the
// telemetry path, or "": http.ServeMux panics on a pattern it cannot parse
// ("/metrics/{node") or one that overlaps a route registered before it, so
// the path is registered here as the server will, next to the agent's own
// routes (the landing page at "/", /healthz, /readyz, pprof).
func routeProblem(p string) (msg string) {
	h := http.NotFoundHandler()
	parsed := false
	defer func() {
		r := recover()
		switch {
		case r == nil:
		case !parsed:
			msg = "is not an HTTP path pattern: " + strings.TrimPrefix(fmt.Sprint(r), fmt.Sprintf("parsing %q: ", p))
		default:
			msg = "serves the same requests as one of the agent's own routes (/, /healthz, /readyz, /debug/pprof/)"
		}
	}()
	http.NewServeMux().Handle(p, h)
	parsed = true
	mux := http.NewServeMux()
	for _, route := range []string{"/healthz", "/readyz", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/profile",
		"/debug/pprof/symbol", "/debug/pprof/trace", "POST /debug/free-os-memory"} {
		mux.Handle(route, h)
	}
	if p != "/" {
		mux.Handle("/", h)
	}
	mux.Handle(p, h)
	return ""
}

// addrErr drops the address that net.AddrError repeats, since the message
// already quotes it.
func addrErr(err error) string {
	if ae := (*net.AddrError)(nil); errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}

// urlErr likewise keeps only url.Error's reason.
func urlErr(err error) string {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

func index(key string, i int) string {
	return key + "[" + strconv.Itoa(i) + "]"
}
