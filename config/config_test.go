package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestBadConfigs maps every testdata/bad-*.yml to the exact message the
// agent prints for it.
func TestBadConfigs(t *testing.T) {
	want := map[string]string{
		"bad-unknown-top.yml":             `testdata/bad-unknown-top.yml:2: agnet: unknown key; did you mean "agent"?`,
		"bad-unknown-nested.yml":          `testdata/bad-unknown-nested.yml:3: discovery.resync_intervall: unknown key; did you mean "resync_interval"?`,
		"bad-type-int.yml":                `testdata/bad-type-int.yml:3: stats.concurrency: cannot parse "many" as an integer`,
		"bad-duration.yml":                `testdata/bad-duration.yml:3: docker.timeout: cannot parse "10" as a duration (e.g. "10s", "1m30s")`,
		"bad-interval-small.yml":          `testdata/bad-interval-small.yml:2: stats.interval: must be at least 1s, got 500ms`,
		"bad-log-level.yml":               `testdata/bad-log-level.yml:2: agent.log_level: must be one of debug, info, warn, error; got "verbose"`,
		"bad-logs-overflow.yml":           `testdata/bad-logs-overflow.yml:2: logs.overflow: must be one of block, drop; got "spill"`,
		"bad-stats-source.yml":            `testdata/bad-stats-source.yml:2: stats.source: must be one of api, cgroup, auto; got "files"`,
		"bad-cgroup-root.yml":             `testdata/bad-cgroup-root.yml:3: stats.cgroup_root: must be an absolute path, got "sys/fs/cgroup"`,
		"bad-sys-root.yml":                `testdata/bad-sys-root.yml:3: stats.sys_root: must be an absolute path, got "host/sys"`,
		"bad-fs-docker-root.yml":          `testdata/bad-fs-docker-root.yml:3: stats.filesystem.docker_root: must be empty (the daemon's own data root) or an absolute path, got "host/var/lib/docker"`,
		"bad-fs-interval.yml":             `testdata/bad-fs-interval.yml:3: stats.filesystem.interval: must be at least 10s, got 1s`,
		"bad-fs-files-per-turn.yml":       `testdata/bad-fs-files-per-turn.yml:3: stats.filesystem.files_per_turn: must be at least 100, got 10`,
		"bad-listen-address.yml":          `testdata/bad-listen-address.yml:2: web.listen_address: cannot parse "9817" as host:port: missing port in address`,
		"bad-listen-port.yml":             `testdata/bad-listen-port.yml:2: web.listen_address: port must be a number from 0 to 65535, got "http"`,
		"bad-otlp-protocol.yml":           `testdata/bad-otlp-protocol.yml:4: exporters.otlp.protocol: must be one of grpc, http/protobuf; got "http"`,
		"bad-compression.yml":             `testdata/bad-compression.yml:3: exporters.otlp.compression: must be one of gzip, none; got "zstd"`,
		"bad-glob.yml":                    `testdata/bad-glob.yml:6: discovery.include.names[2]: invalid glob pattern "[db": syntax error in pattern`,
		"bad-label-filter.yml":            `testdata/bad-label-filter.yml:3: discovery.exclude.labels[1]: must be "key" or "key=glob" with a non-empty key, got "=batch"`,
		"bad-label-value-glob.yml":        `testdata/bad-label-value-glob.yml:4: discovery.include.labels[0]: invalid glob pattern "[prod" for the value of label "env": syntax error in pattern`,
		"bad-label-allowlist.yml":         `testdata/bad-label-allowlist.yml:4: discovery.label_allowlist[1]: must not be an empty pattern`,
		"bad-env-unset.yml":               `testdata/bad-env-unset.yml:3: exporters.otlp.endpoint: environment variable DOCKSCOPE_TEST_UNSET is not set`,
		"bad-env-name.yml":                `testdata/bad-env-name.yml:2: agent.hostname: invalid environment variable name "HOST-NAME"`,
		"bad-cert-without-key.yml":        `testdata/bad-cert-without-key.yml:6: exporters.otlp.tls.cert_file: is set but key_file is not; set both or neither`,
		"bad-syntax.yml":                  `testdata/bad-syntax.yml:3: invalid YAML: mapping values are not allowed in this context`,
		"bad-telemetry-path.yml":          `testdata/bad-telemetry-path.yml:2: web.telemetry_path: must not be /healthz or /readyz, which the agent serves itself; got "/healthz"`,
		"bad-telemetry-path-relative.yml": `testdata/bad-telemetry-path-relative.yml:2: web.telemetry_path: must start with "/", got "metrics"`,
		"bad-wrong-kind.yml":              `testdata/bad-wrong-kind.yml:3: discovery.include.names: expected a list, got "web"`,
		"bad-section-scalar.yml":          `testdata/bad-section-scalar.yml:1: stats: expected a mapping, got "10s"`,
		"bad-root-list.yml":               `testdata/bad-root-list.yml:1: expected a mapping, got a list`,
		"bad-duplicate.yml":               `testdata/bad-duplicate.yml:3: stats: duplicate key, first set on line 1`,
		"bad-multiple-docs.yml":           `testdata/bad-multiple-docs.yml:3: only one YAML document is allowed`,
		"bad-bool.yml":                    `testdata/bad-bool.yml:3: exporters.prometheus.enabled: cannot parse "maybe" as a boolean (true or false)`,
		"bad-endpoint.yml":                `testdata/bad-endpoint.yml:3: exporters.otlp.endpoint: must be a URL such as "https://collector:4318" or a host:port such as "collector:4317", got "collector"`,
		"bad-endpoint-scheme.yml":         `testdata/bad-endpoint-scheme.yml:3: exporters.otlp.endpoint: URL scheme must be http or https, got "grpc"`,
		"bad-retry.yml":                   `testdata/bad-retry.yml:5: exporters.otlp.retry.max_interval: must not be less than initial_interval (10s), got 5s`,
		"bad-otlp-interval.yml":           `testdata/bad-otlp-interval.yml:3: exporters.otlp.interval: must be 0 (use stats.interval) or at least 1s, got 100ms`,
		"bad-concurrency-range.yml":       `testdata/bad-concurrency-range.yml:2: stats.concurrency: must be between 1 and 256, got 1000`,
		"bad-file-order.yml": `testdata/bad-file-order.yml:4: stats.interval: must be at least 1s, got 1ms
testdata/bad-file-order.yml:6: agent.log_format: must be one of logfmt, json; got "text"`,
		"bad-several.yml": `testdata/bad-several.yml:5: stats.intervall: unknown key; did you mean "interval"?
testdata/bad-several.yml:6: stats.concurrency: cannot parse "many" as an integer
testdata/bad-several.yml:9: web.telemetry_path: must start with "/", got "metrics"`,
		"bad-merge.yml":                   `testdata/bad-merge.yml:4: stats.<<: merge keys are not supported`,
		"bad-state-dir.yml":               `testdata/bad-state-dir.yml:2: agent.state_dir: must not be empty`,
		"bad-max-procs.yml":               `testdata/bad-max-procs.yml:3: agent.max_procs: must not be negative, got -2`,
		"bad-header-type.yml":             `testdata/bad-header-type.yml:4: exporters.otlp.headers.x-tenant: expected a string, got a list`,
		"bad-header-value.yml":            `testdata/bad-header-value.yml:6: exporters.otlp.headers.authorization: value of header "authorization" has a byte that is not printable ASCII (0x0a) at byte 10 (a trailing newline read with ${file:...}?)`,
		"bad-header-name.yml":             `testdata/bad-header-name.yml:4: exporters.otlp.headers.x tenant: header name "x tenant" has a character other than letters, digits, '-', '_' and '.' at byte 1`,
		"bad-header-reserved.yml":         `testdata/bad-header-reserved.yml:4: exporters.otlp.headers.Content-Type: header "Content-Type" is set by the transport itself`,
		"bad-max-line-bytes.yml":          `testdata/bad-max-line-bytes.yml:2: logs.max_line_bytes: must leave 16384 bytes of logs.batch.max_bytes (4194304) for the record's metadata: at most 4177920, got 4194304`,
		"bad-telemetry-path-pattern.yml":  `testdata/bad-telemetry-path-pattern.yml:2: web.telemetry_path: is not an HTTP path pattern: at offset 9: bad wildcard segment (must end with '}'); got "/metrics/{node"`,
		"bad-telemetry-path-space.yml":    `testdata/bad-telemetry-path-space.yml:2: web.telemetry_path: must not contain white space, got "/my metrics"`,
		"bad-telemetry-path-conflict.yml": `testdata/bad-telemetry-path-conflict.yml:3: web.telemetry_path: serves the same requests as one of the agent's own routes (/, /healthz, /readyz, /debug/pprof/); got "/{path...}"`,
		"bad-web-config-file.yml":         `testdata/bad-web-config-file.yml:3: web.config_file: cannot read "testdata/no-such-web.yml": no such file or directory`,
		"bad-tls-key-file.yml":            `testdata/bad-tls-key-file.yml:6: exporters.otlp.tls.key_file: cannot read "testdata/files/no-such-key.pem": no such file or directory`,
		"bad-tls-ca-dir.yml":              `testdata/bad-tls-ca-dir.yml:5: exporters.otlp.tls.ca_file: cannot read "testdata/files": is a directory`,
		"bad-docker-host.yml":             `testdata/bad-docker-host.yml:3: docker.host: must be "unix:///path/to/docker.sock" or "tcp://host:port", got "/var/run/docker.sock"`,
		"bad-docker-host-tcp.yml":         `testdata/bad-docker-host-tcp.yml:2: docker.host: cannot parse "tcp://[::1" as a URL: missing ']' in host`,
		"bad-endpoint-userinfo.yml":       `testdata/bad-endpoint-userinfo.yml:3: exporters.otlp.endpoint: cannot parse "https://***@collector:port" as a URL: invalid port ":port" after host`,
	}
	unsetEnv(t, "DOCKSCOPE_TEST_UNSET")

	files, err := filepath.Glob("testdata/bad-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if _, ok := want[filepath.Base(file)]; !ok {
			t.Errorf("%s has no expected error in this test", file)
		}
	}
	for name, msg := range want {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join("testdata", name)
			c, err := Load(file)
			if err == nil {
				t.Fatalf("Load(%s) succeeded, want error %q", file, msg)
			}
			if c != nil {
				t.Errorf("Load(%s) returned a config along with its error", file)
			}
			if err.Error() != msg {
				t.Errorf("Load(%s) error:\n got %s\nwant %s", file, err, msg)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) != strings.Count(msg, "\n")+1 {
				t.Fatalf("Load(%s) error is %T %v, want config.Errors, one per line", file, err, err)
			}
			for _, ce := range es {
				if ce.File != file || ce.Line == 0 {
					t.Errorf("Error{File: %q, Line: %d}, want File %q and a line", ce.File, ce.Line, file)
				}
			}
			var first *Error
			if !errors.As(err, &first) || first != es[0] {
				t.Errorf("errors.As(*Error) = %v, want the first problem %v", first, es[0])
			}
		})
	}
}

// unsetEnv removes a variable for the test; t.Setenv restores it after.
func unsetEnv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "")
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}

func TestGoodFull(t *testing.T) {
	t.Setenv("DOCKSCOPE_TEST_HOST", "node-1")
	t.Setenv("DOCKSCOPE_TEST_CONCURRENCY", "16")
	t.Setenv("DOCKSCOPE_TEST_COLLECTOR", "otel.example.com")
	t.Setenv("DOCKSCOPE_TEST_TOKEN", "s3cr$t")
	unsetEnv(t, "NOT_EXPANDED")

	got, err := Load("testdata/good-full.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Agent: AgentConfig{
			Hostname:  "node-1",
			LogLevel:  "debug",
			LogFormat: "json",
			StateDir:  "/data/dockscope",
			MaxProcs:  2,
		},
		Docker: DockerConfig{
			Host:       "unix:///run/user/1000/docker.sock",
			APIVersion: "1.41",
			Timeout:    5 * time.Second,
			MaxBackoff: 2 * time.Minute,
		},
		Discovery: DiscoveryConfig{
			ResyncInterval: 30 * time.Second,
			Include: Filter{
				Names:  []string{"web-*", "api"},
				Images: []string{"nginx", "ghcr.io/example/*"},
				Labels: []string{"com.docker.compose.project=shop", "monitored"},
			},
			Exclude: Filter{
				Names:  []string{"tmp-*"},
				Labels: []string{"dockscope.skip"},
			},
			LabelAllowlist: []string{"com.example.*", "team"},
		},
		Stats: StatsConfig{Interval: 15 * time.Second, Concurrency: 16, Source: "auto", CgroupRoot: "/host/sys/fs/cgroup", ProcRoot: "/host/proc", SysRoot: "/host/sys",
			Filesystem: FilesystemConfig{Enabled: true, Interval: 15 * time.Minute, DockerRoot: "/host/var/lib/docker", FilesPerTurn: 5000, FilesPerSecond: 2000}},
		Logs: LogsConfig{Enabled: true, MaxLineBytes: 65536, BufferBytes: 8 << 20, Overflow: "drop",
			Batch: LogBatchConfig{MaxRecords: 100, MaxBytes: 262144, Timeout: 200 * time.Millisecond}, Events: false},
		Swarm: SwarmConfig{Services: true},
		Web: WebConfig{
			ListenAddress: "127.0.0.1:9900",
			TelemetryPath: "/container-metrics",
			ConfigFile:    "testdata/files/web.yml",
		},
		Exporters: ExportersConfig{
			Prometheus: PrometheusConfig{Enabled: false},
			OTLP: OTLPConfig{
				Endpoint: "https://otel.example.com:4318",
				Protocol: "http/protobuf",
				Insecure: true,
				Headers: map[string]string{
					"authorization": "Bearer s3cr$t",
					"x-literal":     "${env:NOT_EXPANDED}",
				},
				Compression: "none",
				Timeout:     20 * time.Second,
				Interval:    time.Minute,
				TLS: TLSConfig{
					CAFile:             "testdata/files/ca.pem",
					CertFile:           "testdata/files/client.pem",
					KeyFile:            "testdata/files/client-key.pem",
					ServerName:         "collector.internal",
					InsecureSkipVerify: true,
				},
				Retry: RetryConfig{
					Enabled:         false,
					InitialInterval: time.Second,
					MaxInterval:     10 * time.Second,
				},
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(good-full.yml):\n got %+v\nwant %+v", got, want)
	}
}

func TestGoodPartial(t *testing.T) {
	got, err := Load("testdata/good-partial.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Stats.Interval = 20 * time.Second
	want.Discovery.Include.Images = []string{"postgres", "redis"}
	want.Discovery.Exclude.Images = []string{"postgres", "redis"}
	want.Web.ListenAddress = "[::1]:9817"
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("Load(good-partial.yml):\n got %+v\nwant %+v", *got, want)
	}
}

func TestDefaultsWithoutFile(t *testing.T) {
	want := Default()
	if err := want.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("Load(\"\") = %+v, want the defaults", *c)
	}
	for _, input := range []string{"", "\n\n", "# only a comment\n", "---\n", "~\n"} {
		c, err := Parse([]byte(input), "x.yml")
		if err != nil {
			t.Errorf("Parse(%q): %v", input, err)
			continue
		}
		if !reflect.DeepEqual(*c, want) {
			t.Errorf("Parse(%q) = %+v, want the defaults", input, *c)
		}
	}
	c, err = Load("testdata/good-empty.yml")
	if err != nil || !reflect.DeepEqual(*c, want) {
		t.Errorf("Load(good-empty.yml) = %+v, %v; want the defaults", c, err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yml")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want one wrapping fs.ErrNotExist", err)
	}
}

// TestDefaultYAML keeps default.yml and Default() from drifting apart: same
// values, every field present, every key explained.
func TestDefaultYAML(t *testing.T) {
	c, lines, err := parse(DefaultYAML(), "default.yml", noSources)
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(*c, want) {
		t.Errorf("default.yml parses to\n%+v\nwant Default()\n%+v", *c, want)
	}
	for _, key := range schemaKeys(reflect.TypeFor[Config](), "") {
		if _, ok := lines[key]; !ok {
			t.Errorf("default.yml lacks %s", key)
		}
	}

	var root yaml.Node
	if err := yaml.Unmarshal(DefaultYAML(), &root); err != nil {
		t.Fatal(err)
	}
	checkCommented(t, root.Content[0], "")
}

// schemaKeys lists the dotted key of every field, sections included.
func schemaKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for name, i := range yamlFields(t) {
		key := joinKey(prefix, name)
		keys = append(keys, key)
		if f := t.Field(i).Type; f.Kind() == reflect.Struct && !isDuration(f) {
			keys = append(keys, schemaKeys(f, key)...)
		}
	}
	return keys
}

// checkCommented requires a comment on every leaf key and every section
// below the top level (top-level sections are self-explanatory).
func checkCommented(t *testing.T, n *yaml.Node, prefix string) {
	t.Helper()
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := joinKey(prefix, k.Value)
		if prefix != "" && k.HeadComment == "" && k.LineComment == "" && v.LineComment == "" {
			t.Errorf("default.yml: %s has no comment", key)
		}
		if v.Kind == yaml.MappingNode && key != "exporters.otlp.headers" {
			checkCommented(t, v, key)
		}
	}
}

func TestDefaultYAMLIsACopy(t *testing.T) {
	b := DefaultYAML()
	b[0] = 'X'
	if DefaultYAML()[0] == 'X' {
		t.Error("DefaultYAML returns the embedded slice itself")
	}
}

func TestEnvExpansion(t *testing.T) {
	env := map[string]string{"A": "alpha", "EMPTY": "", "DOLLAR": "${env:A}"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	files := map[string]string{
		"/run/secrets/token": "s3cret\n",
		"/run/secrets/crlf":  "two\nlines\r\n",
		"/run/secrets/huge":  strings.Repeat("x", 64<<10+1),
	}
	readFile := func(p string) ([]byte, error) {
		v, ok := files[p]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return []byte(v), nil
	}
	for _, tc := range []struct{ in, want, err string }{
		{in: "plain", want: "plain"},
		{in: "${env:A}", want: "alpha"},
		{in: "x-${env:A}-${env:A}-y", want: "x-alpha-alpha-y"},
		{in: "${env:EMPTY}", want: ""},
		{in: "$${env:A}", want: "${env:A}"},
		{in: "$$${env:A}", want: "$${env:A}"},
		{in: "$${env:A} and ${env:A}", want: "${env:A} and alpha"},
		{in: "$${env:", want: "${env:"},
		{in: "${env:DOLLAR}", want: "${env:A}"}, // values are not expanded again
		{in: "pa$$word ${A} $A $", want: "pa$$word ${A} $A $"},
		{in: "${env:MISSING}", err: "environment variable MISSING is not set"},
		{in: "${env:A", err: "unterminated ${env:...} reference"},
		{in: "${env:}", err: `invalid environment variable name ""`},
		{in: "${env:1A}", err: `invalid environment variable name "1A"`},
		{in: "${env:A B}", err: `invalid environment variable name "A B"`},
		{in: "Bearer ${file:/run/secrets/token}", want: "Bearer s3cret"}, // one trailing newline dropped
		{in: "${file:/run/secrets/crlf}", want: "two\nlines"},
		{in: "$${file:/run/secrets/token}", want: "${file:/run/secrets/token}"},
		{in: "${file:/run/secrets/token}${env:A}", want: "s3cretalpha"},
		{in: "${file:token}", err: `file reference "token" is not an absolute path`},
		{in: "${file:/missing}", err: "reading /missing: file does not exist"},
		{in: "${file:/run/secrets/huge}", err: "file /run/secrets/huge holds 65537 bytes; a ${file:...} reference reads at most 65536"},
		{in: "${file:/x", err: "unterminated ${file:...} reference"},
	} {
		got, err := expandEnv(tc.in, sources{lookupEnv: lookup, readFile: readFile})
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("expandEnv(%q) error = %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("expandEnv(%q) error = %v", tc.in, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("expandEnv(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// noSources has no environment variable and no file.
var noSources = sources{
	lookupEnv: func(string) (string, bool) { return "", false },
	readFile:  func(string) ([]byte, error) { return nil, fs.ErrNotExist },
}

func TestFileReferenceThroughLoad(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "token")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "dockscope.yml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("exporters:\n  otlp:\n    headers:\n      authorization: \"Bearer ${file:" + secret + "}\"\n")
	c, err := Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Exporters.OTLP.Headers["authorization"]; got != "Bearer s3cret" {
		t.Fatalf("authorization = %q", got)
	}
	write("agent:\n  hostname: ${file:/dev/stdin}\n")
	if _, err = Load(cfgPath); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Fatalf("a non-regular file: %v", err)
	}
	write("agent:\n  hostname: ${file:" + filepath.Join(dir, "missing") + "}\n")
	_, err = Load(cfgPath)
	if err == nil || !strings.Contains(err.Error(), cfgPath+":2: agent.hostname: reading ") {
		t.Fatalf("missing secret file: %v", err)
	}
}

// TestEnvOnlyInValues checks that keys are never expanded and that an
// expanded value is typed by its field.
func TestEnvOnlyInValues(t *testing.T) {
	t.Setenv("DOCKSCOPE_TEST_KEY", "stats")
	t.Setenv("DOCKSCOPE_TEST_N", "many")
	_, err := Parse([]byte("${env:DOCKSCOPE_TEST_KEY}:\n  interval: 10s\n"), "k.yml")
	if err == nil || err.Error() != "k.yml:1: ${env:DOCKSCOPE_TEST_KEY}: unknown key" {
		t.Errorf("env in a key: %v", err)
	}
	_, err = Parse([]byte("stats:\n  concurrency: ${env:DOCKSCOPE_TEST_N}\n"), "n.yml")
	if err == nil || err.Error() != `n.yml:2: stats.concurrency: cannot parse "many" as an integer` {
		t.Errorf("env in an integer: %v", err)
	}
	t.Setenv("DOCKSCOPE_TEST_N", "32")
	c, err := Parse([]byte("stats:\n  concurrency: \"${env:DOCKSCOPE_TEST_N}\"\n"), "n.yml")
	if err != nil || c.Stats.Concurrency != 32 {
		t.Errorf("quoted env in an integer: %v", err)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.Stats.Interval = 0
	c.Agent.LogLevel = "loud" // earlier in the struct, so reported first
	err := c.Validate()
	if err == nil || err.Error() != `agent.log_level: must be one of debug, info, warn, error; got "loud"` {
		t.Fatalf("Validate() = %v", err)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.File != "" || ce.Line != 0 || ce.Key != "agent.log_level" {
		t.Errorf("Validate() error = %#v", err)
	}
}

// TestValidate covers the rules case by case, on configs built in code.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"stats interval 1s", func(c *Config) { c.Stats.Interval = time.Second }, ""},
		{"concurrency 0", func(c *Config) { c.Stats.Concurrency = 0 }, "stats.concurrency: must be between 1 and 256, got 0"},
		{"concurrency 256", func(c *Config) { c.Stats.Concurrency = 256 }, ""},
		{"resync", func(c *Config) { c.Discovery.ResyncInterval = time.Millisecond }, "discovery.resync_interval: must be at least 1s, got 1ms"},
		{"docker timeout", func(c *Config) { c.Docker.Timeout = 0 }, "docker.timeout: must be greater than 0, got 0s"},
		{"max backoff", func(c *Config) { c.Docker.MaxBackoff = -time.Second }, "docker.max_backoff: must be at least 1s, got -1s"},
		{"log format", func(c *Config) { c.Agent.LogFormat = "text" }, `agent.log_format: must be one of logfmt, json; got "text"`},
		{"state dir", func(c *Config) { c.Agent.StateDir = "" }, "agent.state_dir: must not be empty"},
		{"max procs 1", func(c *Config) { c.Agent.MaxProcs = 1 }, ""},
		{"max procs negative", func(c *Config) { c.Agent.MaxProcs = -1 }, "agent.max_procs: must not be negative, got -1"},
		{"listen host:port", func(c *Config) { c.Web.ListenAddress = "0.0.0.0:9817" }, ""},
		{"listen empty", func(c *Config) { c.Web.ListenAddress = "" }, `web.listen_address: cannot parse "" as host:port: missing port in address`},
		{"readyz", func(c *Config) { c.Web.TelemetryPath = "/readyz" }, `web.telemetry_path: must not be /healthz or /readyz, which the agent serves itself; got "/readyz"`},
		{"protocol grpc", func(c *Config) { c.Exporters.OTLP.Protocol = "grpc" }, ""},
		{"compression empty", func(c *Config) { c.Exporters.OTLP.Compression = "" }, `exporters.otlp.compression: must be one of gzip, none; got ""`},
		{"endpoint host:port", func(c *Config) { c.Exporters.OTLP.Endpoint = "collector:4317" }, ""},
		{"endpoint http", func(c *Config) { c.Exporters.OTLP.Endpoint = "http://collector:4318/v1/metrics" }, ""},
		{"endpoint ipv6", func(c *Config) { c.Exporters.OTLP.Endpoint = "[::1]:4317" }, ""},
		{"endpoint no host", func(c *Config) { c.Exporters.OTLP.Endpoint = "https://" }, `exporters.otlp.endpoint: URL "https://" has no host`},
		{"endpoint bad url", func(c *Config) { c.Exporters.OTLP.Endpoint = "http://a b:1" }, `exporters.otlp.endpoint: cannot parse "http://a b:1" as a URL: invalid character " " in host name`},
		{"endpoint port", func(c *Config) { c.Exporters.OTLP.Endpoint = ":4317" }, `exporters.otlp.endpoint: must be a URL such as "https://collector:4318" or a host:port such as "collector:4317", got ":4317"`},
		{"otlp timeout", func(c *Config) { c.Exporters.OTLP.Timeout = 0 }, "exporters.otlp.timeout: must be greater than 0, got 0s"},
		{"otlp interval", func(c *Config) { c.Exporters.OTLP.Interval = time.Second }, ""},
		{"key without cert", func(c *Config) { c.Exporters.OTLP.TLS.KeyFile = "testdata/files/client-key.pem" }, "exporters.otlp.tls.key_file: is set but cert_file is not; set both or neither"},
		{"cert and key", func(c *Config) {
			c.Exporters.OTLP.TLS.KeyFile, c.Exporters.OTLP.TLS.CertFile = "testdata/files/client-key.pem", "testdata/files/client.pem"
		}, ""},
		{"retry zero", func(c *Config) { c.Exporters.OTLP.Retry.InitialInterval = 0 }, "exporters.otlp.retry.initial_interval: must be greater than 0, got 0s"},
		{"retry max zero", func(c *Config) { c.Exporters.OTLP.Retry.MaxInterval = 0 }, "exporters.otlp.retry.max_interval: must be greater than 0, got 0s"},
		{"retry off", func(c *Config) { c.Exporters.OTLP.Retry = RetryConfig{} }, ""},
		{"max elapsed", func(c *Config) { c.Exporters.OTLP.Retry.MaxElapsedTime = -time.Second }, "exporters.otlp.retry.max_elapsed_time: must not be negative (0 means no limit), got -1s"},
		{"label key only", func(c *Config) { c.Discovery.Include.Labels = []string{"a", "b=", "c=*x*"} }, ""},
		{"bad image", func(c *Config) { c.Discovery.Exclude.Images = []string{`x\`} }, `discovery.exclude.images[0]: invalid glob pattern "x\\": syntax error in pattern`},
		{"bad allowlist", func(c *Config) { c.Discovery.LabelAllowlist = []string{"[a-"} }, `discovery.label_allowlist[0]: invalid glob pattern "[a-": syntax error in pattern`},
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

// TestValidateLineFallback: a cross-field problem with a key the file does
// not set is placed at the closest section the file does set.
func TestValidateLineFallback(t *testing.T) {
	data := "exporters:\n  otlp:\n    retry:\n      initial_interval: 1m\n"
	_, err := Parse([]byte(data), "r.yml")
	want := "r.yml:3: exporters.otlp.retry.max_interval: must not be less than initial_interval (1m0s), got 30s"
	if err == nil || err.Error() != want {
		t.Errorf("Parse() = %v\nwant %s", err, want)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "/etc/d.yml", Line: 12, Key: "stats.interval", Msg: "m"}, "/etc/d.yml:12: stats.interval: m"},
		{Error{File: "/etc/d.yml", Key: "stats.interval", Msg: "m"}, "/etc/d.yml: stats.interval: m"},
		{Error{Line: 3, Key: "k", Msg: "m"}, "line 3: k: m"},
		{Error{Key: "k", Msg: "m"}, "k: m"},
		{Error{File: "f", Line: 1, Msg: "m"}, "f:1: m"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%#v.Error() = %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestOTLPEnabled(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	on := OTLPConfig{Endpoint: "collector:4317"}
	for _, tc := range []struct {
		name   string
		c      OTLPConfig
		getenv func(string) string
		want   bool
	}{
		{"nothing", OTLPConfig{}, env(), false},
		{"nil getenv", OTLPConfig{}, nil, false},
		{"endpoint", on, env(), true},
		{"generic env", OTLPConfig{}, env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), true},
		{"metrics env", OTLPConfig{}, env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:4318"), true},
		{"traces env only", OTLPConfig{}, env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318"), false},
		{"empty env", OTLPConfig{}, env("OTEL_EXPORTER_OTLP_ENDPOINT", ""), false},
	} {
		if got := tc.c.Enabled(tc.getenv); got != tc.want {
			t.Errorf("%s: Enabled() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestFilterEmpty(t *testing.T) {
	if !(Filter{}).Empty() || !(Filter{Names: []string{}}).Empty() {
		t.Error("a filter without patterns is not Empty")
	}
	for _, f := range []Filter{{Names: []string{"a"}}, {Images: []string{"a"}}, {Labels: []string{"a"}}} {
		if f.Empty() {
			t.Errorf("%+v is Empty", f)
		}
	}
}

func TestKeyLines(t *testing.T) {
	data := "discovery:\n  include:\n    names:\n      - a\n      - b\n"
	_, lines, err := parse([]byte(data), "x", noSources)
	if err != nil {
		t.Fatal(err)
	}
	for key, line := range map[string]int{
		"discovery": 1, "discovery.include": 2, "discovery.include.names": 3,
		"discovery.include.names[0]": 4, "discovery.include.names[1]": 5,
	} {
		if lines[key] != line {
			t.Errorf("line of %s = %d, want %d", key, lines[key], line)
		}
	}
	if n := strings.Count(data, "\n"); len(lines) != n {
		t.Errorf("%d keys recorded, want %d: %v", len(lines), n, lines)
	}
}

// TestEveryProblemAtOnce: a file with problems of every kind the walk can
// go on past reports each, in file order, with its line and key; what
// could not be decoded keeps its default and is not validated again.
func TestEveryProblemAtOnce(t *testing.T) {
	data := `agent:
  log_levle: debug
  max_procs: -1
stats:
  interval: soon
  concurrency: 8
  concurrency: 9
discovery:
  include:
    names: [web, [nested], "[bad"]
exporters:
  otlp:
    headers:
      x-ok: fine
      x-list: [a]
    retry: yes
  promethus:
    enabled: true
`
	_, err := Parse([]byte(data), "all.yml")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse() = %T %v, want Errors", err, err)
	}
	want := []struct {
		line      int
		key, text string
	}{
		{2, "agent.log_levle", `unknown key; did you mean "log_level"?`},
		{3, "agent.max_procs", "must not be negative, got -1"},
		{5, "stats.interval", `cannot parse "soon" as a duration (e.g. "10s", "1m30s")`},
		{7, "stats.concurrency", "duplicate key, first set on line 6"},
		{10, "discovery.include.names[1]", `expected a string, got a list`},
		{10, "discovery.include.names[2]", `invalid glob pattern "[bad": syntax error in pattern`},
		{15, "exporters.otlp.headers.x-list", "expected a string, got a list"},
		{16, "exporters.otlp.retry", `expected a mapping, got "yes"`},
		{17, "exporters.promethus", `unknown key; did you mean "prometheus"?`},
	}
	if len(es) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(es), len(want), err)
	}
	for i, w := range want {
		if e := es[i]; e.File != "all.yml" || e.Line != w.line || e.Key != w.key || e.Msg != w.text {
			t.Errorf("problem %d = %q, want all.yml:%d: %s: %s", i, e, w.line, w.key, w.text)
		}
	}
}

// TestProblemsAreCapped: a generated file with thousands of mistakes
// reports the first maxProblems and says how many more there are.
func TestProblemsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("discovery:\n  label_allowlist:\n")
	for range maxProblems + 7 {
		b.WriteString("    - \"\"\n")
	}
	_, err := Parse([]byte(b.String()), "many.yml")
	var es Errors
	if !errors.As(err, &es) || len(es) != maxProblems+1 {
		t.Fatalf("Parse() gave %d problems, want %d and a note", len(es), maxProblems)
	}
	if last := es[maxProblems].Error(); last != "many.yml: 7 more problems not shown" {
		t.Errorf("last line %q", last)
	}
}

func TestUnknownKeySuggestion(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"agnet: {}\n", `x.yml:1: agnet: unknown key; did you mean "agent"?`},           // transposition
		{"exporter: {}\n", `x.yml:1: exporter: unknown key; did you mean "exporters"?`}, // deletion
		{"Stats: {}\n", `x.yml:1: Stats: unknown key; did you mean "stats"?`},           // case
		{"logs:\n  max_line_byte: 2048\n", `x.yml:2: logs.max_line_byte: unknown key; did you mean "max_line_bytes"?`},
		{"exporters:\n  otlp:\n    endpiont: c:4317\n", `x.yml:3: exporters.otlp.endpiont: unknown key; did you mean "endpoint"?`},
		{"exporters:\n  otel: {}\n", `x.yml:2: exporters.otel: unknown key`},      // two edits from "otlp": not a typo
		{"stats:\n  log_level: debug\n", `x.yml:2: stats.log_level: unknown key`}, // a key of another section
		{"metrics: {}\n", `x.yml:1: metrics: unknown key`},                        // nothing close
	} {
		_, err := Parse([]byte(tc.data), "x.yml")
		if err == nil || err.Error() != tc.want {
			t.Errorf("Parse(%q) = %v\nwant %s", tc.data, err, tc.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"agent", "agent", 0},
		{"agnet", "agent", 1}, {"intervall", "interval", 1}, {"interval", "intreval", 1},
		{"otel", "otlp", 2}, {"kitten", "sitting", 3}, {"ca", "abc", 3},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := editDistance(tc.b, tc.a); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d (symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}
