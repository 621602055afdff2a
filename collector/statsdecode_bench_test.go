package collector

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// BenchmarkStatsDecode decodes one recorded one-shot stats document of each
// cgroup version as fetchStats does: the agent's main per-sample cost with
// stats.source api.
func BenchmarkStatsDecode(b *testing.B) {
	for _, f := range []string{"testdata/engine-28.5-cgroupv1/stats-oneshot.json", "testdata/engine-26.1-cgroupv2-systemd/limited/stats.json"} {
		doc, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(f, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var raw engineStats
				if err := json.NewDecoder(bytes.NewReader(doc)).Decode(&raw); err != nil {
					b.Fatal(err)
				}
				if _, err := statsFromResponse(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
