package main

import (
	"strings"
	"testing"
	"time"
)

func TestExpand(t *testing.T) {
	vars := cmdVars(&sink{grpcPort: 4317, httpPort: 4318}, "running-c1-l10-b70", []string{"aaa", "bbb"}, "/tmp/w", "/tmp/c.yml")
	for _, tc := range []struct{ in, want string }{
		{"vector --config {{config}}", "vector --config /tmp/c.yml"},
		{"x --endpoint {{otlp_http}} --grpc {{ otlp_grpc }}", "x --endpoint http://127.0.0.1:4318 --grpc 127.0.0.1:4317"},
		{"{{otlp_http_logs}} {{otlp_host}}:{{otlp_http_port}}/{{otlp_grpc_port}}", "http://127.0.0.1:4318/v1/logs 127.0.0.1:4318/4317"},
		{"--label {{label}} ({{label_key}} is {{label_value}})", "--label dockscope.bench.logs=running-c1-l10-b70 (dockscope.bench.logs is running-c1-l10-b70)"},
		{"{{container_ids}} {{dir}} {{docker_host}}", "aaa,bbb /tmp/w unix:///var/run/docker.sock"},
		{"no placeholders, {single} braces, ${env}", "no placeholders, {single} braces, ${env}"},
	} {
		got, err := expand(tc.in, vars)
		if err != nil || got != tc.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	_, err := expand("a {{otlp_htp}} b {{nope}} {{otlp_htp}}", vars)
	if err == nil || !strings.HasPrefix(err.Error(), "unknown placeholder(s) {{otlp_htp}}, {{nope}};") {
		t.Errorf("unknown placeholders: %v", err)
	}
}

func TestParseOptionsAgentCmd(t *testing.T) {
	o, err := parseOptions(nil)
	if err != nil || o.agentCmd != "" {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	o, err = parseOptions([]string{"-agent-cmd", "shipper --to {{otlp_grpc}}", "-agent-config", "c.yml", "-agent-done-after", "5m", "-mode", "running"})
	if err != nil || o.agentCmd != "shipper --to {{otlp_grpc}}" || o.agentConfig != "c.yml" || o.agentDoneAfter != 5*time.Minute {
		t.Errorf("-agent-cmd ...: %+v, %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-agent-config", "c.yml"}, "-agent-config and -agent-done-after only go with -agent-cmd"},
		{[]string{"-agent-done-after", "1m"}, "-agent-config and -agent-done-after only go with -agent-cmd"},
		{[]string{"-agent-cmd", "x", "-agent-bin", "y"}, "-agent-cmd excludes -agent-bin, -perf and -max-procs (they are about dockscope)"},
		{[]string{"-agent-cmd", "x", "-perf", "d"}, "-agent-cmd excludes -agent-bin, -perf and -max-procs (they are about dockscope)"},
		{[]string{"-agent-cmd", "x", "-max-procs", "1"}, "-agent-cmd excludes -agent-bin, -perf and -max-procs (they are about dockscope)"},
		{[]string{"-max-procs", "-2"}, "-max-procs must be -1 (the agent's default) or more"},
		{[]string{"-agent-cmd", "x", "-agent-done-after", "-1s"}, "-agent-done-after must not be negative"},
		{[]string{"-agent-cmd", "x {{otlp}}"}, "-agent-cmd: unknown placeholder(s) {{otlp}}; known: " + placeholderHelp},
	} {
		if _, err := parseOptions(tc.args); err == nil || err.Error() != tc.want {
			t.Errorf("parseOptions(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestCmdReport(t *testing.T) {
	o := &options{lines: 1000, lineBytes: 70, protocol: "http/protobuf", mode: "running", agentCmd: "shipper {{otlp_http}}"}
	res := []scenarioResult{{
		n: 1, lines: 1000,
		raw:  [2]rawResult{{ok: true, linesPerSec: 2000, wall: 0.5, lines: 1000}},
		runs: []agentResult{{compression: "cmd", cmd: true, ok: true, wall: 1, linesPerSec: 1000, agentCPU: 0.5, accepted: 1000}},
	}}
	text := renderText(o, environment{}, res)
	for _, want := range []string{"log throughput of another shipper", "the command `shipper {{otlp_http}}`",
		"command lines/s", "50 %", "500.00", "– / – / 1000", "(the command)"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "none / gzip") {
		t.Errorf("a command report shows dockscope's compression columns:\n%s", text)
	}
}
