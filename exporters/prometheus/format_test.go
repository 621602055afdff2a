package prometheus

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// appendFloat must write every value exactly as strconv's shortest 'g'
// does, the format the golden files and cAdvisor have.
func TestAppendFloatMatchesStrconv(t *testing.T) {
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 0.5, -0.5, 1e-7, 999999, 1e6, -1e6, 1000001, 1048576, 123456789,
		1e15, 1e16, 1<<53 - 1, -(1<<53 - 1), 1 << 53, 1<<53 + 2, 1e21, math.MaxUint64, math.MaxInt64,
		math.NaN(), math.Inf(1), math.Inf(-1), math.SmallestNonzeroFloat64, math.MaxFloat64}
	for e := range 17 {
		p := math.Pow(10, float64(e))
		vals = append(vals, p, p-1, p+1, -p, 7*p, 1.5*p)
	}
	for i := range 60 {
		vals = append(vals, float64(uint64(1)<<i), float64(uint64(1)<<i-1))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		vals = append(vals, float64(r.Int64N(1<<53)), float64(r.Int64N(1e7)), -float64(r.Int64N(1<<40)), r.Float64()*1e9, math.Float64frombits(r.Uint64()))
	}
	for _, v := range vals {
		if got, want := string(appendFloat(nil, v)), wantFloat(v); got != want {
			t.Fatalf("appendFloat(%v) = %q, want %q", v, got, want)
		}
	}
}

func FuzzAppendFloat(f *testing.F) {
	for _, v := range []float64{0, 1, 1e6, 1048576, 1<<53 - 1, 1 << 53, 0.25, -3} {
		f.Add(math.Float64bits(v))
	}
	f.Fuzz(func(t *testing.T, bits uint64) {
		v := math.Float64frombits(bits)
		if got, want := string(appendFloat(nil, v)), wantFloat(v); got != want {
			t.Fatalf("appendFloat(%v) = %q, want %q", v, got, want)
		}
		// And an integer near it, the fast path's domain.
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			n := math.Trunc(math.Mod(v, 1<<54))
			if got, want := string(appendFloat(nil, n)), wantFloat(n); got != want {
				t.Fatalf("appendFloat(%v) = %q, want %q", n, got, want)
			}
		}
	})
}

// wantFloat is the text format's value as written before the integer fast
// path.
func wantFloat(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// appendLabel must escape every value as the byte-at-a-time escaper it
// replaced did: backslash, double quote and newline, and invalid UTF-8
// replaced.
func TestAppendLabelEscapes(t *testing.T) {
	for _, v := range []string{"", "plain", "a\"b", "a\\b", "a\nb", "\n", "é", "x\xffy", "\xff", "tab\there", "\"\\\n\xfe", "日本\"語"} {
		if got, want := string(appendLabel(nil, "l", v)), wantLabel("l", v); got != want {
			t.Errorf("appendLabel(%q) = %s, want %s", v, got, want)
		}
	}
}

func FuzzAppendLabel(f *testing.F) {
	for _, v := range []string{"", "plain", "a\"b\\c\nd", "é", "x\xffy"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := appendLabel([]byte("prefix,"), "name", v)
		if want := "prefix," + wantLabel("name", v); string(got) != want {
			t.Fatalf("appendLabel(%q) = %s, want %s", v, got, want)
		}
		if !utf8.Valid(got) {
			t.Fatalf("appendLabel(%q) = %q: invalid UTF-8", v, got)
		}
	})
}

// wantLabel is name="value" as the text format escapes it.
func wantLabel(name, value string) string {
	value = strings.ToValidUTF8(value, "\uFFFD")
	value = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(value)
	return name + `="` + value + `"`
}

// Each family name has one buffer and one HELP/TYPE block per scrape.
func TestFamilyNamesAreUnique(t *testing.T) {
	seen := make(map[string]bool)
	for i, f := range allFamilies {
		if f.idx != i {
			t.Errorf("%s: idx %d at position %d", f.name, f.idx, i)
		}
		if seen[f.name] {
			t.Errorf("family %s declared twice", f.name)
		}
		seen[f.name] = true
	}
	sorted := familiesByName()
	if len(sorted) != len(allFamilies) {
		t.Fatalf("%d families sorted of %d", len(sorted), len(allFamilies))
	}
	for i := 1; i < len(sorted); i++ {
		if sorted[i-1].name >= sorted[i].name {
			t.Errorf("%s sorted before %s", sorted[i-1].name, sorted[i].name)
		}
	}
}
