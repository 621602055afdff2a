// Package config defines dockscope's YAML configuration: its schema, its
// defaults, ${env:VAR} expansion and validation with errors that name the
// file, the line and the key.
package config

import "time"

// Config is the whole configuration file. Every key is optional; a key
// left out, or given no value, keeps its value from Default().
type Config struct {
	Agent     AgentConfig     `yaml:"agent"`
	Docker    DockerConfig    `yaml:"docker"`
	Discovery DiscoveryConfig `yaml:"discovery"`
	Stats     StatsConfig     `yaml:"stats"`
	Logs      LogsConfig      `yaml:"logs"`
	Swarm     SwarmConfig     `yaml:"swarm"`
	Web       WebConfig       `yaml:"web"`
	Exporters ExportersConfig `yaml:"exporters"`
}

// AgentConfig is about the agent process itself.
type AgentConfig struct {
	// Hostname is reported as host.name and on container_info; empty means
	// the Docker host's name as the Engine reports it, then os.Hostname().
	Hostname  string `yaml:"hostname"`
	LogLevel  string `yaml:"log_level"`  // debug, info, warn, error
	LogFormat string `yaml:"log_format"` // logfmt, json
	StateDir  string `yaml:"state_dir"`
	// MaxProcs caps the threads running the agent's Go code at once
	// (GOMAXPROCS); 0 is Go's own default. The GOMAXPROCS environment
	// variable, when set, wins. One by default, as node_exporter does: the
	// agent mostly waits, and a second processor mostly adds wake-ups
	// (bench/logs: ~10 % more CPU per line with two).
	MaxProcs int `yaml:"max_procs"`
}

// DockerConfig says how to reach the Engine. Empty fields fall back to the
// standard DOCKER_HOST, DOCKER_API_VERSION, DOCKER_TLS_VERIFY and
// DOCKER_CERT_PATH environment variables.
type DockerConfig struct {
	Host       string `yaml:"host"`
	APIVersion string `yaml:"api_version"`
	// Timeout bounds every non-streaming request to the Engine.
	Timeout time.Duration `yaml:"timeout"`
	// MaxBackoff caps the wait between reconnection attempts.
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// DiscoveryConfig says which containers to follow.
type DiscoveryConfig struct {
	// ResyncInterval is how often the full container list is re-read so that
	// a missed event heals.
	ResyncInterval time.Duration `yaml:"resync_interval"`
	Include        Filter        `yaml:"include"`
	Exclude        Filter        `yaml:"exclude"`
	// LabelAllowlist holds glob patterns of container label keys exported as
	// container_label_<key> / container.label.<key>. Empty exports none.
	LabelAllowlist []string `yaml:"label_allowlist"`
}

// Filter matches containers. Within a list any pattern may match; across
// lists all non-empty lists must match. Patterns use path.Match syntax (and
// are validated with it), though the collector lets "*" match "/" as well.
type Filter struct {
	Names  []string `yaml:"names"`
	Images []string `yaml:"images"`
	// Labels are "key" (the label is present) or "key=value-glob".
	Labels []string `yaml:"labels"`
}

// StatsConfig controls resource sampling.
type StatsConfig struct {
	Interval time.Duration `yaml:"interval"`
	// Concurrency bounds the stats requests in flight at once. Engine 20.10
	// answers a repeated one-shot request on its next 1 s stats tick, so a
	// round takes about containers/Concurrency seconds.
	Concurrency int `yaml:"concurrency"`
	// Source is where samples come from: "api" (the Engine's stats
	// endpoint), "cgroup" (the container's cgroup files and
	// /proc/<pid>/net/dev, read by the agent) or "auto", the default
	// (cgroup when the daemon is on a local unix socket and CgroupRoot
	// holds a cgroup filesystem, else api). A cgroup read that fails falls
	// back to the API for that sample.
	Source     string `yaml:"source"`
	CgroupRoot string `yaml:"cgroup_root"`
	ProcRoot   string `yaml:"proc_root"`
	// SysRoot is the host's sysfs, where block devices' names are read
	// (/sys/dev/block/<major>:<minor>) for the `device` label.
	SysRoot string `yaml:"sys_root"`
	// PerCPU exports container_cpu_usage_seconds_total per CPU (cgroup v1
	// only; cpu="cpu00", ... instead of cpu="total", as cAdvisor does with
	// per-CPU metrics on): one series per CPU per container.
	PerCPU bool `yaml:"per_cpu"`
	// Filesystem is the measurement of containers' writable layers.
	Filesystem FilesystemConfig `yaml:"filesystem"`
}

// FilesystemConfig controls the container_fs_{usage,limit}_bytes and
// container_fs_inodes_{free,total} measurement: a walk of each running
// container's writable layer and log directory, bounded in pace and spread
// over time, in a goroutine of its own.
type FilesystemConfig struct {
	Enabled bool `yaml:"enabled"`
	// Interval is how often each running container is measured again.
	Interval time.Duration `yaml:"interval"`
	// DockerRoot is where the agent sees the daemon's data root
	// (DockerRootDir, /var/lib/docker by default), e.g.
	// /host/var/lib/docker in a container; empty: the daemon's own path.
	DockerRoot string `yaml:"docker_root"`
	// FilesPerTurn is how many entries one container's walk reads before
	// the next container gets its turn.
	FilesPerTurn int `yaml:"files_per_turn"`
	// FilesPerSecond caps how many entries all walks read per second.
	FilesPerSecond int `yaml:"files_per_second"`
}

// LogsConfig controls the collection of container logs, which are shipped
// over OTLP: without an OTLP endpoint no log is read.
type LogsConfig struct {
	Enabled bool `yaml:"enabled"`
	// MaxLineBytes caps one record; a longer line is cut and marked
	// log.truncated=true.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// BufferBytes bounds the records read but not yet exported.
	BufferBytes int64 `yaml:"buffer_bytes"`
	// Overflow says what readers do when the buffer is full: block (stop
	// reading; Docker's log file is the buffer) or drop (count and discard).
	Overflow string         `yaml:"overflow"`
	Batch    LogBatchConfig `yaml:"batch"`
	// Events also ships container lifecycle events (start, die, oom,
	// health_status, ...) as log records named container.<action>.
	Events bool `yaml:"events"`
}

// SwarmConfig is about Swarm services, as opposed to their containers.
type SwarmConfig struct {
	// Services exports the desired and running replicas of every service.
	// Only a manager can list them, and every manager would report the
	// same numbers: turn it on for one agent.
	Services bool `yaml:"services"`
}

// LogBatchConfig shapes OTLP log requests: a batch is sent when it holds
// MaxRecords records or MaxBytes bytes of bodies, or Timeout after its first
// record. MaxBytes also bounds one request's encoded size, Resources
// included: a batch that encodes larger goes out as several requests.
type LogBatchConfig struct {
	MaxRecords int           `yaml:"max_records"`
	MaxBytes   int           `yaml:"max_bytes"`
	Timeout    time.Duration `yaml:"timeout"`
}

// WebConfig is the HTTP endpoint serving /metrics, /healthz and /readyz.
type WebConfig struct {
	ListenAddress string `yaml:"listen_address"`
	TelemetryPath string `yaml:"telemetry_path"`
	// ConfigFile is an exporter-toolkit web configuration (TLS, basic auth).
	ConfigFile string `yaml:"config_file"`
}

// ExportersConfig holds one section per exporter.
type ExportersConfig struct {
	Prometheus PrometheusConfig `yaml:"prometheus"`
	OTLP       OTLPConfig       `yaml:"otlp"`
}

// PrometheusConfig controls the scrape endpoint's content.
type PrometheusConfig struct {
	Enabled bool `yaml:"enabled"`
	// CadvisorVersionInfo also exports cadvisor_version_info (value 1,
	// labelled with the kernel, OS and Docker versions), for dashboards
	// whose host variable reads it.
	CadvisorVersionInfo bool `yaml:"cadvisor_version_info"`
}

// OTLPConfig controls the OTLP exporter. It is off until an endpoint is set
// here or in OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_METRICS_ENDPOINT;
// the other standard OTEL_EXPORTER_OTLP_* variables apply to whatever is left
// empty here.
type OTLPConfig struct {
	Endpoint string `yaml:"endpoint"`
	// Protocol is grpc or http/protobuf.
	Protocol string `yaml:"protocol"`
	// Insecure means plaintext for an endpoint without a scheme; a URL's
	// scheme (http, https) decides for itself.
	Insecure bool              `yaml:"insecure"`
	Headers  map[string]string `yaml:"headers"`
	// Compression is gzip or none.
	Compression string        `yaml:"compression"`
	Timeout     time.Duration `yaml:"timeout"`
	// Interval is how often metrics are pushed; 0 means stats.interval.
	Interval time.Duration `yaml:"interval"`
	TLS      TLSConfig     `yaml:"tls"`
	Retry    RetryConfig   `yaml:"retry"`
}

// TLSConfig configures a TLS client.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// RetryConfig is an exponential backoff.
type RetryConfig struct {
	Enabled         bool          `yaml:"enabled"`
	InitialInterval time.Duration `yaml:"initial_interval"`
	MaxInterval     time.Duration `yaml:"max_interval"`
	MaxElapsedTime  time.Duration `yaml:"max_elapsed_time"`
}

// Default returns the configuration used when no file is given: Prometheus
// on :9817, OTLP off, every container followed.
func Default() Config {
	return Config{
		Agent: AgentConfig{
			LogLevel:  "info",
			LogFormat: "logfmt",
			StateDir:  "/var/lib/dockscope",
			MaxProcs:  1,
		},
		Docker: DockerConfig{
			Timeout:    10 * time.Second,
			MaxBackoff: 30 * time.Second,
		},
		Discovery: DiscoveryConfig{
			ResyncInterval: 60 * time.Second,
		},
		Stats: StatsConfig{
			Interval:    10 * time.Second,
			Concurrency: 64,
			Source:      "auto",
			CgroupRoot:  "/sys/fs/cgroup",
			ProcRoot:    "/proc",
			SysRoot:     "/sys",
			Filesystem: FilesystemConfig{
				Enabled:        true,
				Interval:       5 * time.Minute,
				FilesPerTurn:   10000,
				FilesPerSecond: 20000,
			},
		},
		Logs: LogsConfig{
			Enabled:      true,
			MaxLineBytes: 1 << 20,
			BufferBytes:  64 << 20,
			Overflow:     "block",
			Batch: LogBatchConfig{
				MaxRecords: 8192,
				MaxBytes:   4 << 20,
				Timeout:    time.Second,
			},
			Events: true,
		},
		Web: WebConfig{
			ListenAddress: ":9817",
			TelemetryPath: "/metrics",
		},
		Exporters: ExportersConfig{
			Prometheus: PrometheusConfig{Enabled: true},
			OTLP: OTLPConfig{
				Compression: "gzip",
				Timeout:     10 * time.Second,
				Retry: RetryConfig{
					Enabled:         true,
					InitialInterval: 5 * time.Second,
					MaxInterval:     30 * time.Second,
					MaxElapsedTime:  time.Minute,
				},
			},
		},
	}
}
