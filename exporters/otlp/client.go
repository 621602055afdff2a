// Package otlp exports the agent's data over OTLP (gRPC or HTTP/protobuf),
// with one Resource per container as the semantic conventions ask.
package otlp

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/dockscope/dockscope/config"
)

// Protocols.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// protocol resolves the metrics transport: config first, then the standard
// variables, then the specification's default, http/protobuf.
func protocol(cfg config.OTLPConfig, getenv func(string) string) string {
	return signalProtocol(cfg, getenv, signalMetrics)
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
