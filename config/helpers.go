package config

import _ "embed"

//go:embed default.yml
var defaultYAML []byte

// DefaultYAML returns the full default configuration file: every key with
// its default value and a comment. Parsing it gives exactly Default().
func DefaultYAML() []byte {
	return append([]byte(nil), defaultYAML...) // a copy: callers may write to it
}

// Enabled reports whether OTLP export is on: an endpoint is set here or in
// the standard environment variables. getenv is normally os.Getenv; nil
// means an empty environment.
func (c OTLPConfig) Enabled(getenv func(string) string) bool {
	if c.Endpoint != "" {
		return true
	}
	if getenv == nil {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != ""
}

// Empty reports whether the filter has no patterns at all. An empty include
// filter follows every container; an empty exclude filter drops none.
func (f Filter) Empty() bool {
	return len(f.Names) == 0 && len(f.Images) == 0 && len(f.Labels) == 0
}
