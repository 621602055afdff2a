package collector

import (
	"testing"

	"github.com/dockscope/dockscope/config"
)

func TestSelector(t *testing.T) {
	type ctr struct {
		name, image string
		labels      map[string]string
	}
	web := &ctr{"web-1", "ghcr.io/acme/web:1.2", map[string]string{"team": "shop", "tier": "front"}}
	db := &ctr{"db", "postgres:16", map[string]string{"team": "data"}}
	optOut := &ctr{"noisy", "nginx", map[string]string{"dockscope.enable": "false"}}
	optOutCaps := &ctr{"noisy2", "nginx", map[string]string{"dockscope.enable": " FALSE "}}
	optIn := &ctr{"quiet", "nginx", map[string]string{"dockscope.enable": "true"}}

	for _, tc := range []struct {
		name string
		cfg  config.DiscoveryConfig
		want map[*ctr]bool
	}{
		{"defaults follow everything but opt-outs", config.DiscoveryConfig{},
			map[*ctr]bool{web: true, db: true, optOut: false, optOutCaps: false, optIn: true}},
		{"include by name glob", config.DiscoveryConfig{Include: config.Filter{Names: []string{"web-*"}}},
			map[*ctr]bool{web: true, db: false, optIn: false}},
		{"image glob crosses slashes", config.DiscoveryConfig{Include: config.Filter{Images: []string{"ghcr.io/*"}}},
			map[*ctr]bool{web: true, db: false}},
		{"image without tag matches tagged reference", config.DiscoveryConfig{Include: config.Filter{Images: []string{"postgres"}}},
			map[*ctr]bool{web: false, db: true}},
		{"include lists all must match", config.DiscoveryConfig{Include: config.Filter{Names: []string{"*"}, Labels: []string{"team=shop"}}},
			map[*ctr]bool{web: true, db: false}},
		{"label presence", config.DiscoveryConfig{Include: config.Filter{Labels: []string{"tier"}}},
			map[*ctr]bool{web: true, db: false}},
		{"exclude any list matches", config.DiscoveryConfig{Exclude: config.Filter{Names: []string{"db"}, Labels: []string{"tier=fr*"}}},
			map[*ctr]bool{web: false, db: false, optIn: true}},
		{"opt-out wins over include", config.DiscoveryConfig{Include: config.Filter{Images: []string{"nginx"}}},
			map[*ctr]bool{optOut: false, optIn: true}},
		{"character class", config.DiscoveryConfig{Include: config.Filter{Names: []string{"[dw]*"}}},
			map[*ctr]bool{web: true, db: true, optIn: false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSelector(tc.cfg)
			for c, want := range tc.want {
				if got := s.Selected(c.name, c.image, c.labels); got != want {
					t.Errorf("Selected(%s, %s, %v) = %v, want %v", c.name, c.image, c.labels, got, want)
				}
			}
		})
	}
}

func TestLabelAllowlist(t *testing.T) {
	s := NewSelector(config.DiscoveryConfig{LabelAllowlist: []string{"team", "com.example.*"}})
	for key, want := range map[string]bool{
		"team": true, "teams": false, "com.example.owner": true, "com.example.a/b": true, "other": false,
	} {
		if got := s.LabelAllowed(key); got != want {
			t.Errorf("LabelAllowed(%q) = %v, want %v", key, got, want)
		}
	}
	if NewSelector(config.DiscoveryConfig{}).LabelAllowed("team") {
		t.Error("an empty allow-list must export no label")
	}
}

func TestLogsOptOut(t *testing.T) {
	s := NewSelector(config.DiscoveryConfig{})
	if s.LogsSelected(map[string]string{"dockscope.logs": "false"}) {
		t.Error("dockscope.logs=false must opt out of logs")
	}
	if !s.LogsSelected(nil) || !s.LogsSelected(map[string]string{"dockscope.logs": "true"}) {
		t.Error("logs are collected by default")
	}
}

func TestCompileGlobEscapes(t *testing.T) {
	for _, tc := range []struct {
		glob, s string
		want    bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "axb", false}, // "." is literal, not a regexp wildcard
		{"a?c", "abc", true},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{"[!a]x", "bx", true},
		{"[!a]x", "ax", false},
		{"x+y", "x+y", true},
	} {
		if got := compileGlob(tc.glob).MatchString(tc.s); got != tc.want {
			t.Errorf("glob %q on %q = %v, want %v", tc.glob, tc.s, got, tc.want)
		}
	}
}
