package otlp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dockscope/dockscope/config"
)

// logSender sends one OTLP logs request, an encoded
// ExportLogsServiceRequest (logEncoder); it does not keep req. Errors it
// returns are either retryable (*retryableError, possibly with the delay
// the server asked for) or permanent.
type logSender interface {
	send(ctx context.Context, req []byte) (rejected int64, err error)
	close() error
	describe() string
}

// retryableError marks a failure worth retrying; after, when set, is the
// delay the backend asked for (Retry-After, RetryInfo).
type retryableError struct {
	err   error
	after time.Duration
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// logTarget is the resolved transport configuration for logs: the config
// file first, then the standard OTEL_EXPORTER_OTLP_LOGS_* and
// OTEL_EXPORTER_OTLP_* variables.
type logTarget struct {
	protocol string
	endpoint string // full URL for http; host:port for grpc
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

func resolveLogTarget(cfg config.OTLPConfig, getenv func(string) string) (logTarget, error) {
	t := logTarget{
		protocol: cfg.Protocol,
		insecure: cfg.Insecure,
		gzip:     cfg.Compression == "gzip",
		timeout:  cfg.Timeout,
		headers:  map[string]string{},
	}
	if t.protocol == "" {
		t.protocol = firstNonEmpty(getenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), ProtocolHTTP)
	}
	if t.protocol != ProtocolGRPC && t.protocol != ProtocolHTTP {
		return t, fmt.Errorf("unknown OTLP protocol %q (want %s or %s)", t.protocol, ProtocolGRPC, ProtocolHTTP)
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_LOGS_INSECURE"} {
		if b, err := strconv.ParseBool(getenv(v)); err == nil && b {
			t.insecure = true
		}
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_LOGS_HEADERS"} {
		for k, val := range parseHeaderList(getenv(v)) {
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
		if raw = getenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"); raw != "" {
			full = true
		} else {
			raw = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
		}
	}
	if raw == "" {
		return t, errors.New("no OTLP endpoint configured for logs")
	}
	if !strings.Contains(raw, "://") {
		scheme := "https"
		if t.insecure {
			scheme = "http"
		}
		raw = scheme + "://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return t, fmt.Errorf("parsing OTLP logs endpoint %q: %w", raw, err)
	}
	if u.Scheme == "http" {
		t.insecure = true
	}
	if t.protocol == ProtocolGRPC {
		t.endpoint = u.Host
	} else {
		if !full {
			u.Path = path.Join("/", u.Path, "v1/logs")
		}
		t.endpoint = u.String()
	}

	tlsCfg, err := tlsConfig(cfg.TLS)
	if err != nil {
		return t, err
	}
	if tlsCfg == nil && (getenv("OTEL_EXPORTER_OTLP_CERTIFICATE") != "" || getenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE") != "") {
		tlsCfg, err = tlsConfig(config.TLSConfig{
			CAFile:   getenv("OTEL_EXPORTER_OTLP_CERTIFICATE"),
			CertFile: getenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
			KeyFile:  getenv("OTEL_EXPORTER_OTLP_CLIENT_KEY"),
		})
		if err != nil {
			return t, err
		}
	}
	t.tls = tlsCfg
	return t, nil
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

func newLogSender(t logTarget) (logSender, error) {
	if t.protocol == ProtocolGRPC {
		return newGRPCLogSender(t)
	}
	return newHTTPLogSender(t), nil
}

// grpcLogSender speaks OTLP/gRPC.
type grpcLogSender struct {
	t    logTarget
	conn *grpc.ClientConn
	md   metadata.MD
}

func newGRPCLogSender(t logTarget) (*grpcLogSender, error) {
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
		return nil, fmt.Errorf("creating OTLP/gRPC logs client for %s: %w", t.endpoint, err)
	}
	return &grpcLogSender{t: t, conn: conn, md: metadata.New(t.headers)}, nil
}

func (s *grpcLogSender) describe() string { return "grpc " + s.t.endpoint }
func (s *grpcLogSender) close() error     { return s.conn.Close() }

// exportLogsMethod is LogsService.Export, called with requests encoded by
// logEncoder (rawCodec).
const exportLogsMethod = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

func (s *grpcLogSender) send(ctx context.Context, req []byte) (int64, error) {
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(ctx, s.md), s.t.timeout)
	defer cancel()
	resp := &collogspb.ExportLogsServiceResponse{}
	err := s.conn.Invoke(ctx, exportLogsMethod, encodedMessage(req), resp, grpc.ForceCodecV2(rawCodec{}))
	if err == nil {
		return resp.GetPartialSuccess().GetRejectedLogRecords(), nil
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange,
		codes.Unavailable, codes.DataLoss, codes.ResourceExhausted:
		// The OTLP specification lists these as retryable; a throttling
		// backend says how long to wait in RetryInfo.
		var after time.Duration
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
				after = ri.GetRetryDelay().AsDuration()
			}
		}
		return 0, &retryableError{err: fmt.Errorf("OTLP/gRPC export to %s: %w", s.t.endpoint, err), after: after}
	}
	return 0, fmt.Errorf("OTLP/gRPC export to %s: %w", s.t.endpoint, err)
}

// encodedMessage is a request already in protobuf wire format.
type encodedMessage []byte

// rawCodec sends encodedMessages as they are and decodes responses with
// the protobuf library. Its name is that of gRPC's protobuf codec, so the
// content type is the usual application/grpc+proto.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(encodedMessage)
	if !ok {
		return nil, fmt.Errorf("OTLP/gRPC: cannot send a %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("OTLP/gRPC: cannot decode into a %T", v)
	}
	return proto.Unmarshal(data.Materialize(), m)
}

func (rawCodec) Name() string { return "proto" }

// httpLogSender speaks OTLP/HTTP with binary protobuf.
type httpLogSender struct {
	t      logTarget
	client *http.Client
	// The compressed body and its writer, reused from request to request.
	zbuf bytes.Buffer
	zw   *gzip.Writer
}

func newHTTPLogSender(t logTarget) *httpLogSender {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if t.tls != nil {
		tr.TLSClientConfig = t.tls
	}
	return &httpLogSender{t: t, client: &http.Client{Transport: tr, Timeout: t.timeout}}
}

func (s *httpLogSender) describe() string { return "http " + s.t.endpoint }
func (s *httpLogSender) close() error {
	s.client.CloseIdleConnections()
	return nil
}

func (s *httpLogSender) send(ctx context.Context, req []byte) (int64, error) {
	body := io.Reader(bytes.NewReader(req))
	if s.t.gzip {
		s.zbuf.Reset()
		if s.zw == nil {
			s.zw = gzip.NewWriter(&s.zbuf)
		} else {
			s.zw.Reset(&s.zbuf)
		}
		if _, err := s.zw.Write(req); err != nil {
			return 0, fmt.Errorf("compressing OTLP logs request: %w", err)
		}
		if err := s.zw.Close(); err != nil {
			return 0, fmt.Errorf("compressing OTLP logs request: %w", err)
		}
		body = bytes.NewReader(s.zbuf.Bytes())
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.t.endpoint, body)
	if err != nil {
		return 0, fmt.Errorf("building OTLP/HTTP request to %s: %w", s.t.endpoint, err)
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
		return 0, &retryableError{err: fmt.Errorf("OTLP/HTTP export to %s: %w", s.t.endpoint, err)}
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		var out collogspb.ExportLogsServiceResponse
		if err := proto.Unmarshal(respBody, &out); err != nil {
			return 0, nil // a body we cannot read is still a success
		}
		return out.GetPartialSuccess().GetRejectedLogRecords(), nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusBadGateway ||
		resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout:
		return 0, &retryableError{
			err:   fmt.Errorf("OTLP/HTTP export to %s: %s", s.t.endpoint, resp.Status),
			after: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		}
	}
	return 0, fmt.Errorf("OTLP/HTTP export to %s: %s: %s", s.t.endpoint, resp.Status, bytes.TrimSpace(respBody))
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
