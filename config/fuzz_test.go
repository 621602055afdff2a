package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no input panics, and whatever Parse accepts is valid, so the
// agent never starts on a configuration Validate would refuse.
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML())
	files, err := filepath.Glob("testdata/*.yml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &x [*x]\nstats: &s {interval: *s}\n"))
	f.Add([]byte("exporters: &e {otlp: *e}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		// Files are not read: a generated ${file:/dev/stdin} would block.
		c, _, err := parse(data, "fuzz.yml", sources{lookupEnv: os.LookupEnv, readFile: func(string) ([]byte, error) { return []byte("secret"), nil }})
		if err != nil {
			if c != nil {
				t.Errorf("Parse returned a config along with error %v", err)
			}
			es, ok := err.(Errors)
			if !ok || len(es) == 0 || len(es) > maxProblems+1 {
				t.Errorf("Parse error is %T with %d problems, want 1 to %d in Errors: %v", err, len(es), maxProblems+1, err)
			}
			for _, e := range es {
				if e == nil || e.File != "fuzz.yml" {
					t.Errorf("a problem without its file: %#v", e)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Parse accepted a config that Validate rejects: %v", err)
		}
	})
}
