package config

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://tenant:s3cr3t@otlp.example.com:4318/v1": "https://***@otlp.example.com:4318/v1",
		"https://token@collector":                        "https://***@collector",
		"http://u:p@a b:1":                               "http://***@a b:1",
		"user:pw@collector:4317":                         "***@collector:4317",
		"https://collector:4318/path@x":                  "https://collector:4318/path@x",
		"https://collector:4318?q=a@b":                   "https://collector:4318?q=a@b",
		"https://a@b@collector":                          "https://***@collector",
		"collector:4317":                                 "collector:4317",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// No configuration error repeats an endpoint's password, whatever is wrong
// with the endpoint.
func TestEndpointErrorsHideUserinfo(t *testing.T) {
	for _, ep := range []string{"https://tenant:s3cr3t@", "http://tenant:s3cr3t@a b:1", "tenant:s3cr3t@collector", "https://tenant:s3cr3t@host:99999x"} {
		c := Default()
		c.Exporters.OTLP.Endpoint = ep
		err := c.Validate()
		if err == nil {
			t.Errorf("%q: no error", ep)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%q: error shows the password: %v", ep, err)
		}
	}
}

func TestValidateOTLPHeadersAndLineBytes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"header ok", func(c *Config) {
			c.Exporters.OTLP.Headers = map[string]string{"Authorization": "Bearer a.b-c", "x-scope-orgid": "t1"}
		}, ""},
		{"header utf8", func(c *Config) { c.Exporters.OTLP.Headers = map[string]string{"x-tenant": "bücher"} },
			`exporters.otlp.headers.x-tenant: value of header "x-tenant" has a byte that is not printable ASCII (0xc3) at byte 1`},
		{"header empty name", func(c *Config) { c.Exporters.OTLP.Headers = map[string]string{"": "x"} },
			`exporters.otlp.headers.: header name must not be empty`},
		{"grpc reserved", func(c *Config) { c.Exporters.OTLP.Headers = map[string]string{"grpc-timeout": "1S"} },
			`exporters.otlp.headers.grpc-timeout: header "grpc-timeout" is set by the transport itself`},
		{"secret never echoed", func(c *Config) { c.Exporters.OTLP.Headers = map[string]string{"authorization": "Bearer s3cr3t\r"} },
			`exporters.otlp.headers.authorization: value of header "authorization" has a byte that is not printable ASCII (0x0d) at byte 13 (a trailing newline read with ${file:...}?)`},
		{"line fits", func(c *Config) { c.Logs.MaxLineBytes = 4<<20 - lineReserveBytes }, ""},
		{"line too long for batch", func(c *Config) { c.Logs.Batch.MaxBytes = 1 << 20 },
			"logs.max_line_bytes: must leave 16384 bytes of logs.batch.max_bytes (1048576) for the record's metadata: at most 1032192, got 1048576"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.modify(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Errorf("Validate() = %v\nwant %s", err, tc.want)
			}
		})
	}
}
