// Package otlp exports the agent's data over OTLP (gRPC or HTTP/protobuf),
// with one Resource per container as the semantic conventions ask.
package otlp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc/credentials"

	"github.com/dockscope/dockscope/config"
)

// Protocols.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// protocol resolves the transport: config first, then the standard
// variables, then the specification's default, http/protobuf.
func protocol(cfg config.OTLPConfig, getenv func(string) string) string {
	for _, p := range []string{cfg.Protocol, getenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL")} {
		if p != "" {
			return p
		}
	}
	return ProtocolHTTP
}

// newMetricClient builds the otel-go OTLP metric exporter. We use it rather
// than the raw OTLP protobufs because it brings TLS, headers, compression,
// retry with backoff and every OTEL_EXPORTER_OTLP_* variable for free; we
// only bypass its MeterProvider, feeding it metricdata built from our
// snapshots, because a MeterProvider has one Resource and we need one per
// container. Settings left empty in the config are taken from those
// variables by the exporter itself.
func newMetricClient(ctx context.Context, cfg config.OTLPConfig, getenv func(string) string) (sdkmetric.Exporter, string, error) {
	proto := protocol(cfg, getenv)
	tlsCfg, err := tlsConfig(cfg.TLS)
	if err != nil {
		return nil, "", err
	}
	retry := cfg.Retry
	switch proto {
	case ProtocolGRPC:
		opts := []otlpmetricgrpc.Option{
			otlpmetricgrpc.WithTimeout(cfg.Timeout),
			otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{
				Enabled: retry.Enabled, InitialInterval: retry.InitialInterval,
				MaxInterval: retry.MaxInterval, MaxElapsedTime: retry.MaxElapsedTime,
			}),
		}
		if ep := cfg.Endpoint; ep != "" {
			if strings.Contains(ep, "://") {
				opts = append(opts, otlpmetricgrpc.WithEndpointURL(ep))
			} else {
				opts = append(opts, otlpmetricgrpc.WithEndpoint(ep))
			}
		}
		if cfg.Insecure {
			opts = append(opts, otlpmetricgrpc.WithInsecure())
		} else if tlsCfg != nil {
			opts = append(opts, otlpmetricgrpc.WithTLSCredentials(credentials.NewTLS(tlsCfg)))
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlpmetricgrpc.WithHeaders(cfg.Headers))
		}
		if cfg.Compression == "gzip" {
			opts = append(opts, otlpmetricgrpc.WithCompressor("gzip"))
		}
		exp, err := otlpmetricgrpc.New(ctx, opts...)
		if err != nil {
			return nil, "", fmt.Errorf("creating OTLP/gRPC metric exporter: %w", err)
		}
		return exp, proto, nil

	case ProtocolHTTP:
		opts := []otlpmetrichttp.Option{
			otlpmetrichttp.WithTimeout(cfg.Timeout),
			otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{
				Enabled: retry.Enabled, InitialInterval: retry.InitialInterval,
				MaxInterval: retry.MaxInterval, MaxElapsedTime: retry.MaxElapsedTime,
			}),
		}
		if ep := cfg.Endpoint; ep != "" {
			u, err := httpMetricsURL(ep)
			if err != nil {
				return nil, "", err
			}
			opts = append(opts, otlpmetrichttp.WithEndpointURL(u))
		}
		if cfg.Insecure {
			opts = append(opts, otlpmetrichttp.WithInsecure())
		}
		if tlsCfg != nil {
			opts = append(opts, otlpmetrichttp.WithTLSClientConfig(tlsCfg))
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlpmetrichttp.WithHeaders(cfg.Headers))
		}
		if cfg.Compression == "gzip" {
			opts = append(opts, otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
		}
		exp, err := otlpmetrichttp.New(ctx, opts...)
		if err != nil {
			return nil, "", fmt.Errorf("creating OTLP/HTTP metric exporter: %w", err)
		}
		return exp, proto, nil
	}
	return nil, "", fmt.Errorf("unknown OTLP protocol %q (want %s or %s)", proto, ProtocolGRPC, ProtocolHTTP)
}

// httpMetricsURL treats the configured endpoint like
// OTEL_EXPORTER_OTLP_ENDPOINT: a base URL to which /v1/metrics is appended.
// A bare host:port means https, as in the specification.
func httpMetricsURL(endpoint string) (string, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("parsing OTLP endpoint %q: %w", endpoint, err)
	}
	u.Path = path.Join("/", u.Path, "v1/metrics")
	return u.String(), nil
}

// tlsConfig builds a client TLS configuration from the config file's
// settings, or returns nil when none is set (the exporter then applies the
// OTEL_EXPORTER_OTLP_CERTIFICATE family of variables).
func tlsConfig(c config.TLSConfig) (*tls.Config, error) {
	if c == (config.TLSConfig{}) {
		return nil, nil
	}
	out := &tls.Config{
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // the user asked for it
		MinVersion:         tls.VersionTLS12,
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading OTLP CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("reading OTLP CA file %s: no PEM certificate found", c.CAFile)
		}
		out.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading OTLP client certificate: %w", err)
		}
		out.Certificates = []tls.Certificate{cert}
	}
	return out, nil
}
