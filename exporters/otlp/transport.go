package otlp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/dockscope/dockscope/config"
)

// Both signals go through one transport: a sender takes a request already
// encoded as protobuf (logEncoder, metricEncoder) and says how it went. Its
// errors are of three kinds, which decide what the exporter does:
//
//   - *retryableError: anything that can heal (network, auth, 404, 5xx,
//     throttling); retried with backoff, the data kept.
//   - *tooLargeError: refused for its size (HTTP 413, gRPC
//     RESOURCE_EXHAUSTED without RetryInfo); split and sent again.
//   - any other error: the backend called the request malformed (HTTP 400,
//     gRPC INVALID_ARGUMENT); retrying the same bytes cannot help, so the
//     data is dropped and counted.
type sender interface {
	send(ctx context.Context, req []byte) (partialSuccess, error)
	close() error
	describe() string
}

// partialSuccess is the backend's answer to a request it accepted in part.
type partialSuccess struct {
	rejected int64
	message  string
}

// retryableError marks a failure worth retrying; after, when positive, is
// the delay the backend asked for (Retry-After, RetryInfo).
type retryableError struct {
	err   error
	after time.Duration
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// tooLargeError marks a request refused for its size.
type tooLargeError struct{ err error }

func (e *tooLargeError) Error() string { return e.err.Error() }
func (e *tooLargeError) Unwrap() error { return e.err }

// signal is what differs between logs and metrics on the wire.
type signal struct {
	name   string // for messages: "logs", "metrics"
	env    string // in OTEL_EXPORTER_OTLP_<env>_*
	path   string // OTLP/HTTP path under a base URL
	method string // OTLP/gRPC method
}

var (
	signalLogs    = signal{"logs", "LOGS", "v1/logs", "/opentelemetry.proto.collector.logs.v1.LogsService/Export"}
	signalMetrics = signal{"metrics", "METRICS", "v1/metrics", "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"}
)

// target is the resolved transport configuration of one signal: the config
// file first, then the standard OTEL_EXPORTER_OTLP_<SIGNAL>_* and
// OTEL_EXPORTER_OTLP_* variables.
type target struct {
	signal   signal
	protocol string
	// endpoint is the full URL for http, userinfo included (net/http sends
	// it as basic auth); host:port for grpc.
	endpoint string
	// display is the endpoint as logs and errors show it: without userinfo.
	display  string
	insecure bool
	headers  map[string]string
	tls      *tls.Config
	gzip     bool
	timeout  time.Duration
}

// LogsEnabled reports whether an OTLP endpoint for logs is configured at all.
func LogsEnabled(cfg config.OTLPConfig, getenv func(string) string) bool {
	return cfg.Endpoint != "" || getenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

func resolveLogTarget(cfg config.OTLPConfig, getenv func(string) string) (target, error) {
	return resolveTarget(cfg, getenv, signalLogs)
}

// signalEnv reads the signal-specific variable, else the generic one.
func signalEnv(getenv func(string) string, sig signal, suffix string) string {
	return firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_"+sig.env+"_"+suffix), getenv("OTEL_EXPORTER_OTLP_"+suffix))
}

// signalProtocol is the config's protocol, else the variables', else the
// specification's default, http/protobuf.
func signalProtocol(cfg config.OTLPConfig, getenv func(string) string, sig signal) string {
	return firstNonEmpty(cfg.Protocol, signalEnv(getenv, sig, "PROTOCOL"), ProtocolHTTP)
}

func resolveTarget(cfg config.OTLPConfig, getenv func(string) string, sig signal) (target, error) {
	t := target{
		signal:   sig,
		protocol: signalProtocol(cfg, getenv, sig),
		gzip:     cfg.Compression == "gzip",
		timeout:  cfg.Timeout,
		headers:  map[string]string{},
	}
	if t.protocol != ProtocolGRPC && t.protocol != ProtocolHTTP {
		return t, fmt.Errorf("unknown OTLP protocol %q (want %s or %s)", t.protocol, ProtocolGRPC, ProtocolHTTP)
	}
	// The file's headers were checked at load; the environment's are
	// checked here, so that a bad one stops the start rather than every
	// request.
	for _, v := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_" + sig.env + "_HEADERS"} {
		for k, val := range parseHeaderList(getenv(v)) {
			if err := config.CheckHeader(k, val); err != nil {
				return t, fmt.Errorf("%s: %w", v, err)
			}
			t.headers[k] = val
		}
	}
	for k, v := range cfg.Headers { // the file wins over the environment
		t.headers[k] = v
	}

	// The signal-specific variable is a full URL; the config key and the
	// generic variable are base URLs to which the signal path is appended.
	raw, full := cfg.Endpoint, false
	if raw == "" {
		if raw = getenv("OTEL_EXPORTER_OTLP_" + sig.env + "_ENDPOINT"); raw != "" {
			full = true
		} else {
			raw = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
		}
	}
	if raw == "" {
		return t, fmt.Errorf("no OTLP endpoint configured for %s", sig.name)
	}
	// Insecure (the config key or OTEL_EXPORTER_OTLP_[SIGNAL_]INSECURE)
	// only chooses the scheme of an endpoint given without one, as the
	// specification says: it never turns an explicit https:// into
	// plaintext, which would send the headers (tokens) in the clear.
	if !strings.Contains(raw, "://") {
		scheme := "https"
		if cfg.Insecure || envBool(signalEnv(getenv, sig, "INSECURE")) {
			scheme = "http"
		}
		raw = scheme + "://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return t, fmt.Errorf("parsing OTLP %s endpoint %q: %s", sig.name, config.RedactURL(raw), urlReason(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return t, fmt.Errorf("OTLP %s endpoint %q: scheme must be http or https", sig.name, config.RedactURL(raw))
	}
	t.insecure = u.Scheme == "http"
	if t.protocol == ProtocolGRPC {
		t.endpoint = u.Host
		t.display = u.Host
	} else {
		if !full {
			u.Path = path.Join("/", u.Path, sig.path)
		}
		t.endpoint = u.String()
		t.display = config.RedactURL(t.endpoint)
	}

	tlsCfg, err := tlsConfig(cfg.TLS)
	if err != nil {
		return t, err
	}
	if ca, cert := signalEnv(getenv, sig, "CERTIFICATE"), signalEnv(getenv, sig, "CLIENT_CERTIFICATE"); tlsCfg == nil && (ca != "" || cert != "") {
		tlsCfg, err = tlsConfig(config.TLSConfig{CAFile: ca, CertFile: cert, KeyFile: signalEnv(getenv, sig, "CLIENT_KEY")})
		if err != nil {
			return t, err
		}
	}
	t.tls = tlsCfg
	return t, nil
}

func envBool(v string) bool {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	return err == nil && b
}

// urlReason keeps only url.Error's reason: its URL may hold a password.
func urlReason(err error) string {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// parseHeaderList reads the OTEL_EXPORTER_OTLP_HEADERS format:
// comma-separated key=value pairs with URL-encoded values.
func parseHeaderList(s string) map[string]string {
	out := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || strings.TrimSpace(k) == "" {
			continue
		}
		if dv, err := url.QueryUnescape(strings.TrimSpace(v)); err == nil {
			v = dv
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func newSender(t target) (sender, error) {
	if t.protocol == ProtocolGRPC {
		return newGRPCSender(t)
	}
	return newHTTPSender(t), nil
}

// grpcSender speaks OTLP/gRPC.
type grpcSender struct {
	t    target
	conn *grpc.ClientConn
	md   metadata.MD
}

func newGRPCSender(t target) (*grpcSender, error) {
	creds := insecure.NewCredentials()
	if !t.insecure {
		tlsCfg := t.tls
		if tlsCfg == nil {
			tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		creds = credentials.NewTLS(tlsCfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if t.gzip {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.UseCompressor(grpcgzip.Name)))
	}
	conn, err := grpc.NewClient(t.endpoint, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating OTLP/gRPC %s client for %s: %w", t.signal.name, t.display, err)
	}
	return &grpcSender{t: t, conn: conn, md: metadata.New(t.headers)}, nil
}

func (s *grpcSender) describe() string { return "grpc " + s.t.display }
func (s *grpcSender) close() error     { return s.conn.Close() }

func (s *grpcSender) send(ctx context.Context, req []byte) (partialSuccess, error) {
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(ctx, s.md), s.t.timeout)
	defer cancel()
	var resp rawMessage
	err := s.conn.Invoke(ctx, s.t.signal.method, encodedMessage(req), &resp, grpc.ForceCodecV2(rawCodec{}))
	if err == nil {
		return parseExportResponse(resp), nil
	}
	st := status.Convert(err)
	wrapped := fmt.Errorf("OTLP/gRPC %s export to %s: %w", s.t.signal.name, s.t.display, err)
	switch st.Code() {
	case codes.InvalidArgument:
		return partialSuccess{}, wrapped
	case codes.ResourceExhausted:
		// With RetryInfo the backend is throttling; without it, the
		// request was too large (gRPC's own receive limit answers so).
		if after, ok := retryInfo(st); ok {
			return partialSuccess{}, &retryableError{err: wrapped, after: after}
		}
		return partialSuccess{}, &tooLargeError{err: wrapped}
	}
	// Unavailable, DeadlineExceeded, Unauthenticated, PermissionDenied,
	// Internal, Unknown, NotFound, Unimplemented...: a backend restarting,
	// a token being renewed, a route being fixed. The data waits.
	after, _ := retryInfo(st)
	return partialSuccess{}, &retryableError{err: wrapped, after: after}
}

func retryInfo(st *status.Status) (time.Duration, bool) {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			// AsDuration saturates instead of overflowing; a negative
			// delay means none.
			return max(ri.GetRetryDelay().AsDuration(), 0), true
		}
	}
	return 0, false
}

// encodedMessage is a request already in protobuf wire format.
type encodedMessage []byte

// rawMessage receives a response in protobuf wire format.
type rawMessage []byte

// rawCodec sends encodedMessages as they are and keeps responses as bytes.
// Its name is that of gRPC's protobuf codec, so the content type is the
// usual application/grpc+proto.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(encodedMessage)
	if !ok {
		return nil, fmt.Errorf("OTLP/gRPC: cannot send a %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMessage)
	if !ok {
		return fmt.Errorf("OTLP/gRPC: cannot decode into a %T", v)
	}
	*m = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// parseExportResponse reads the partial_success of an
// Export{Logs,Metrics}ServiceResponse: both are field 1, holding the count
// of rejected items (field 1) and a message (field 2). A response it cannot
// read counts as a full success: the backend said 200 / OK.
func parseExportResponse(b []byte) partialSuccess {
	var out partialSuccess
	forEachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) {
		if num != 1 || typ != protowire.BytesType {
			return
		}
		forEachField(v, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) {
			switch {
			case num == 1 && typ == protowire.VarintType:
				out.rejected = int64(n)
			case num == 2 && typ == protowire.BytesType:
				out.message = string(v)
			}
		})
	})
	return out
}

// forEachField calls fn for each field of a message, with the bytes of a
// length-delimited field or the value of a varint; it stops at the first
// malformed field.
func forEachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, n uint64)) {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return
		}
		b = b[l:]
		switch typ {
		case protowire.VarintType:
			n, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return
			}
			fn(num, typ, nil, n)
			b = b[l:]
		case protowire.BytesType:
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return
			}
			fn(num, typ, v, 0)
			b = b[l:]
		default:
			l := protowire.ConsumeFieldValue(num, typ, b)
			if l < 0 {
				return
			}
			b = b[l:]
		}
	}
}

// httpSender speaks OTLP/HTTP with binary protobuf.
type httpSender struct {
	t      target
	client *http.Client
	// The compressed body, reused from request to request.
	zbuf bytes.Buffer
}

// gzipWriters holds gzip writers between requests. A writer keeps about
// 2 MB of tables: pooled, not kept per sender, so that a sender used once a
// minute (metrics) does not hold them in between, and the log and metrics
// senders share one while they take turns.
var gzipWriters sync.Pool

func newHTTPSender(t target) *httpSender {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if t.tls != nil {
		tr.TLSClientConfig = t.tls
	}
	return &httpSender{t: t, client: &http.Client{
		Transport: tr,
		Timeout:   t.timeout,
		// A redirect on POST would be followed as a GET without the body,
		// and its 200 taken for a delivery. The 3xx is returned instead,
		// and retried until the endpoint is corrected.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// newHTTPLogSender is the HTTP sender of logs.
func newHTTPLogSender(t target) *httpSender { return newHTTPSender(t) }

func (s *httpSender) describe() string { return "http " + s.t.display }
func (s *httpSender) close() error {
	s.client.CloseIdleConnections()
	return nil
}

func (s *httpSender) send(ctx context.Context, req []byte) (partialSuccess, error) {
	body := io.Reader(bytes.NewReader(req))
	what := "OTLP/HTTP " + s.t.signal.name + " export to " + s.t.display
	if s.t.gzip {
		s.zbuf.Reset()
		zw, _ := gzipWriters.Get().(*gzip.Writer)
		if zw == nil {
			zw = gzip.NewWriter(&s.zbuf)
		} else {
			zw.Reset(&s.zbuf)
		}
		_, err := zw.Write(req)
		if err == nil {
			err = zw.Close()
		}
		gzipWriters.Put(zw)
		if err != nil {
			return partialSuccess{}, &retryableError{err: fmt.Errorf("compressing %s: %w", what, err)}
		}
		body = bytes.NewReader(s.zbuf.Bytes())
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.t.endpoint, body)
	if err != nil {
		return partialSuccess{}, &retryableError{err: fmt.Errorf("building %s: %s", what, urlReason(err))}
	}
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	if s.t.gzip {
		hreq.Header.Set("Content-Encoding", "gzip")
	}
	for k, v := range s.t.headers {
		hreq.Header.Set(k, v)
	}
	resp, err := s.client.Do(hreq)
	if err != nil {
		// Connection refused, reset, timeout: the backend may come back.
		// url.Error's URL would show the user name: keep its reason.
		return partialSuccess{}, &retryableError{err: fmt.Errorf("%s: %s", what, urlReason(err))}
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return parseExportResponse(respBody), nil
	case code == http.StatusBadRequest:
		return partialSuccess{}, fmt.Errorf("%s: %s: %s", what, resp.Status, bytes.TrimSpace(respBody))
	case code == http.StatusRequestEntityTooLarge:
		return partialSuccess{}, &tooLargeError{err: fmt.Errorf("%s: %s", what, resp.Status)}
	case code >= 300 && code < 400:
		return partialSuccess{}, &retryableError{err: fmt.Errorf("%s: %s: redirects are not followed for a POST; set the endpoint to the final URL", what, resp.Status)}
	default:
		// 401, 403, 404, 408, 429, 5xx and the rest: a token, a route or
		// a backend that can be fixed while the data waits.
		return partialSuccess{}, &retryableError{
			err:   fmt.Errorf("%s: %s: %s", what, resp.Status, bytes.TrimSpace(respBody)),
			after: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		}
	}
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
// Values too large for a Duration saturate rather than wrap around to a
// negative delay; the exporter caps the result anyway.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		switch {
		case secs <= 0:
			return 0
		case secs > int64(math.MaxInt64/time.Second):
			return math.MaxInt64
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now) // Sub saturates too
	}
	return 0
}
