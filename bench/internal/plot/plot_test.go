package plot

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
)

// parsed is what the tests look for in a rendered document.
type parsed struct {
	root     string
	series   map[string][]int // name → number of points of each polyline
	circles  int
	bands    int
	texts    []string
	charts   []string
	viewport string
}

// parse decodes the whole document, failing the test on any XML error, and
// collects the elements the assertions need.
func parse(t *testing.T, doc []byte) parsed {
	t.Helper()
	p := parsed{series: map[string][]int{}}
	dec := xml.NewDecoder(bytes.NewReader(doc))
	var current string // the enclosing series' name
	var inText bool
	var text strings.Builder
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			depth++
			attr := func(name string) string {
				for _, a := range el.Attr {
					if a.Name.Local == name {
						return a.Value
					}
				}
				return ""
			}
			switch el.Name.Local {
			case "svg":
				if depth == 1 {
					p.root = el.Name.Space + " svg"
					p.viewport = attr("viewBox")
				}
			case "g":
				if attr("class") == "series" {
					current = attr("data-name")
					if _, ok := p.series[current]; !ok {
						p.series[current] = nil
					}
				}
				if attr("class") == "chart" {
					p.charts = append(p.charts, attr("data-title"))
				}
			case "polyline":
				p.series[current] = append(p.series[current], len(strings.Fields(attr("points"))))
			case "circle":
				p.circles++
			case "rect":
				if attr("class") == "band" {
					p.bands++
				}
			case "text":
				inText = true
				text.Reset()
			}
		case xml.CharData:
			if inText {
				text.Write(el)
			}
		case xml.EndElement:
			depth--
			switch el.Name.Local {
			case "text":
				inText = false
				p.texts = append(p.texts, text.String())
			case "g":
				current = ""
			}
		}
	}
	if depth != 0 {
		t.Fatalf("unbalanced document (depth %d)", depth)
	}
	return p
}

func TestFigureSVG(t *testing.T) {
	f := Figure{
		Title:   `Overhead <N> & "friends"`,
		Columns: 2,
		Charts: []Chart{
			{
				Title: "CPU", XLabel: "containers (N)", YLabel: "% of one core",
				Series: []Series{
					{Name: "agent", Markers: true, Points: []Point{{50, 0.3}, {200, 0.8}, {500, 1.9}}},
					{Name: "daemons Δ", Markers: true, Dashed: true, Points: []Point{{50, -0.6}, {200, 0.1}, {500, 0.4}}},
				},
			},
			{
				Title: "RSS", XLabel: "containers (N)", YLabel: "MiB",
				Series: []Series{{Name: "peak RSS", Markers: true, Points: []Point{{50, 30}, {200, 34}, {500, 41}}}},
			},
			{
				Title: "soak", XLabel: "minutes",
				Series: []Series{{Name: "goroutines", Points: []Point{{0, 10}, {1, 12}, {2, math.NaN()}, {3, 12}, {4, 13}}}},
				Bands:  []Band{{From: 1.5, To: 2.5, Label: "collector down"}, {From: 3.5, To: 3.8, Label: "ignored label"}},
			},
		},
	}
	p := parse(t, f.SVG())
	if p.root != "http://www.w3.org/2000/svg svg" {
		t.Errorf("root element %q, want svg in the SVG namespace", p.root)
	}
	if p.viewport == "" {
		t.Error("no viewBox")
	}
	if want := []string{"CPU", "RSS", "soak"}; !slices.Equal(p.charts, want) {
		t.Errorf("charts %q, want %q", p.charts, want)
	}
	wantSeries := map[string][]int{
		"agent":      {3},
		"daemons Δ":  {3},
		"peak RSS":   {3},
		"goroutines": {2, 2}, // split at the NaN
	}
	if len(p.series) != len(wantSeries) {
		t.Errorf("series %v, want %v", p.series, wantSeries)
	}
	for name, want := range wantSeries {
		if got := p.series[name]; !slices.Equal(got, want) {
			t.Errorf("series %q: polylines of %v points, want %v", name, got, want)
		}
	}
	if p.circles != 9 {
		t.Errorf("%d markers, want 9 (3 series of 3 points with markers)", p.circles)
	}
	if p.bands != 2 {
		t.Errorf("%d bands, want 2", p.bands)
	}
	for _, want := range []string{`Overhead <N> & "friends"`, "agent", "daemons Δ", "peak RSS", "goroutines",
		"collector down", "containers (N)", "% of one core", "MiB", "minutes", "500"} {
		if !slices.Contains(p.texts, want) {
			t.Errorf("no text %q in %q", want, p.texts)
		}
	}
	if slices.Contains(p.texts, "ignored label") {
		t.Error("a second band label made a second legend entry")
	}
	if slices.Contains(p.texts, "-0") {
		t.Error(`a tick labelled "-0"`)
	}
}

func TestEmptyFigure(t *testing.T) {
	for _, f := range []Figure{{}, {Charts: []Chart{{Title: "nothing yet"}}}, {Charts: []Chart{{Series: []Series{{Name: "all NaN", Points: []Point{{math.NaN(), 1}, {1, math.Inf(1)}}}}}}}} {
		p := parse(t, f.SVG())
		for name, lines := range p.series {
			if len(lines) != 0 {
				t.Errorf("series %q drew %v though nothing is plottable", name, lines)
			}
		}
	}
}

func TestXFromZero(t *testing.T) {
	c := Chart{Series: []Series{{Points: []Point{{50, 1}, {500, 2}}}}}
	if xlo, _, _, _ := c.bounds(); xlo != 50 {
		t.Errorf("x starts at %v, want 50 (the data)", xlo)
	}
	c.XFromZero = true
	if xlo, xhi, ylo, yhi := c.bounds(); xlo != 0 || xhi != 500 || ylo != 0 || yhi != 2 {
		t.Errorf("bounds [%v, %v] × [%v, %v], want [0, 500] × [0, 2]", xlo, xhi, ylo, yhi)
	}
}

func TestTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi   float64
		n        int
		want     []float64
		tlo, thi float64
	}{
		{0, 500, 5, []float64{0, 100, 200, 300, 400, 500}, 0, 500},
		{50, 500, 5, []float64{0, 100, 200, 300, 400, 500}, 0, 500},
		{0, 1.9, 5, []float64{0, 0.5, 1, 1.5, 2}, 0, 2},
		{0, 0.3, 3, []float64{0, 0.1, 0.2, 0.3}, 0, 0.3},
		{-0.6, 0.4, 5, []float64{-0.6, -0.4, -0.2, 0, 0.2, 0.4}, -0.6, 0.4},
		{0, 41, 4, []float64{0, 10, 20, 30, 40, 50}, 0, 50},
		{0, 0, 5, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}, 0, 1},
		{0, 30, 5, []float64{0, 5, 10, 15, 20, 25, 30}, 0, 30}, // 6 is not a round step: 5 is
		{0, 9, 4, []float64{0, 2.5, 5, 7.5, 10}, 0, 10},
	} {
		got, tlo, thi := Ticks(tc.lo, tc.hi, tc.n)
		if !slices.EqualFunc(got, tc.want, func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }) || math.Abs(tlo-tc.tlo) > 1e-9 || math.Abs(thi-tc.thi) > 1e-9 {
			t.Errorf("Ticks(%v, %v, %d) = %v [%v, %v], want %v [%v, %v]", tc.lo, tc.hi, tc.n, got, tlo, thi, tc.want, tc.tlo, tc.thi)
		}
	}
}

func TestFormatTick(t *testing.T) {
	for _, tc := range []struct {
		ticks []float64
		v     float64
		want  string
	}{
		{[]float64{0, 100}, 500, "500"},
		{[]float64{0, 0.5}, 1.5, "1.5"},
		{[]float64{0, 2.5}, 7.5, "7.5"},
		{[]float64{-0.2, 0}, -0.00000001, "0.0"},
		{[]float64{0, 0.25}, 0.75, "0.75"},
	} {
		if got := formatTick(tc.v, decimals(tc.ticks)); got != tc.want {
			t.Errorf("formatTick(%v) with ticks %v = %q, want %q", tc.v, tc.ticks, got, tc.want)
		}
	}
}
