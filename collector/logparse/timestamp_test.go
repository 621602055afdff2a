package logparse

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestParseTimestamp(t *testing.T) {
	cases := []struct {
		in      string
		fast    bool // parsed by the fixed-layout path
		wantErr bool
	}{
		{in: "2026-11-23T10:06:33.117135967Z", fast: true},
		{in: "1970-01-01T00:00:00.000000000Z", fast: true},
		{in: "0000-01-01T00:00:00.000000000Z", fast: true},
		{in: "0000-03-01T00:00:00.000000000Z", fast: true},
		{in: "9999-12-31T23:59:59.999999999Z", fast: true},
		{in: "2024-02-29T12:00:00.000000001Z", fast: true},
		{in: "2000-02-29T12:00:00.000000001Z", fast: true},
		{in: "1969-12-31T23:59:59.999999999Z", fast: true},
		{in: "2026-11-23T10:06:33.1Z"},                        // fewer digits: fallback
		{in: "2026-11-23T10:06:33Z"},                          // no fraction
		{in: "2026-11-23T10:06:33.117135967+02:00"},           // numeric zone
		{in: "2026-11-23T10:06:33.117135967-00:30"},           // numeric zone
		{in: "2026-02-29T12:00:00.000000000Z", wantErr: true}, // not a leap year
		{in: "1900-02-29T12:00:00.000000000Z", wantErr: true},
		{in: "2026-04-31T12:00:00.000000000Z", wantErr: true},
		{in: "2026-13-01T12:00:00.000000000Z", wantErr: true},
		{in: "2026-00-01T12:00:00.000000000Z", wantErr: true},
		{in: "2026-01-00T12:00:00.000000000Z", wantErr: true},
		{in: "2026-01-01T24:00:00.000000000Z", wantErr: true},
		{in: "2026-01-01T23:60:00.000000000Z", wantErr: true},
		{in: "2026-01-01T23:59:60.000000000Z", wantErr: true},
		{in: "2026-01-01T23:59:59.00000000aZ", wantErr: true},
		{in: "2026-01-01t23:59:59.000000000Z", wantErr: true},
		{in: "2026-01-01T23:59:59.000000000z", wantErr: true},
		{in: "2026-01-01T23:59:59,000000000Z"}, // time.Parse accepts a comma
		{in: "+026-01-01T23:59:59.000000000Z", wantErr: true},
		{in: "", wantErr: true},
		{in: "line without timestamp", wantErr: true},
		{in: "2026-01-01T23:59:59.0000000000Z", wantErr: false}, // 10 digits: time.Parse accepts
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			_, fast := parseFixed([]byte(c.in))
			if fast != c.fast {
				t.Errorf("fast path = %v, want %v", fast, c.fast)
			}
			got, err := ParseTimestamp([]byte(c.in))
			want, wantErr := time.Parse(time.RFC3339Nano, c.in)
			if (err != nil) != c.wantErr || (wantErr != nil) != c.wantErr {
				t.Fatalf("err = %v, time.Parse err = %v, want error %v", err, wantErr, c.wantErr)
			}
			if !sameTime(got, want) {
				t.Errorf("got %v, time.Parse %v", got, want)
			}
		})
	}
}

// The fast path returns exactly what time.Parse does, across the years
// Docker can write.
func TestParseTimestampMatchesTimeParse(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lo := time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	hi := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
	for range 200000 {
		v := time.Unix(lo+rng.Int64N(hi-lo), rng.Int64N(1e9)).UTC()
		s := v.Format(dockerTSLayout)
		got, ok := parseFixed([]byte(s))
		if !ok {
			t.Fatalf("%s: fast path refused", s)
		}
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		if got != want || !got.Equal(v) {
			t.Fatalf("%s: got %v, time.Parse %v, want %v", s, got, want, v)
		}
	}
}

func TestParseTimestampNoAllocs(t *testing.T) {
	b := []byte("2026-11-23T10:06:33.117135967Z")
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseTimestamp(b) }); n != 0 {
		t.Errorf("allocs = %v, want 0", n)
	}
}

func FuzzTimestamp(f *testing.F) {
	f.Add("2026-11-23T10:06:33.117135967Z")
	f.Add("2024-02-29T23:59:59.999999999Z")
	f.Add("2026-11-23T10:06:33.1+01:00")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTimestamp([]byte(s))
		want, wantErr := time.Parse(time.RFC3339Nano, s)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%q: err = %v, time.Parse err = %v", s, err, wantErr)
		}
		if !sameTime(got, want) {
			t.Fatalf("%q: got %v, time.Parse %v", s, got, want)
		}
	})
}

// sameTime is == for UTC times; time.Parse gives each numeric zone a new
// *Location, so those are compared by instant and offset.
func sameTime(a, b time.Time) bool {
	if a.Location() == time.UTC || b.Location() == time.UTC {
		return a == b
	}
	an, ao := a.Zone()
	bn, bo := b.Zone()
	return a.Equal(b) && an == bn && ao == bo
}

var sinkTime time.Time

func BenchmarkParseTimestamp(b *testing.B) {
	in := []byte("2026-11-23T10:06:33.117135967Z")
	b.Run("fixed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkTime, _ = ParseTimestamp(in)
		}
	})
	// What a line costs in the Assembler, whose seconds cache leaves only
	// the nanoseconds to parse while the second does not change.
	b.Run("cached", func(b *testing.B) {
		a := NewAssembler(0, false)
		b.ReportAllocs()
		for b.Loop() {
			sinkTime, _ = a.parseFixedCached(in)
		}
	})
	b.Run("time.Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkTime, _ = time.Parse(time.RFC3339Nano, string(in))
		}
	})
	b.Run("fallback", func(b *testing.B) {
		in := []byte("2026-11-23T10:06:33.117+01:00")
		b.ReportAllocs()
		for b.Loop() {
			sinkTime, _ = ParseTimestamp(in)
		}
	})
}
