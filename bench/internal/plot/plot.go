// Package plot draws the benchmarks' line charts as SVG with the standard
// library only: a figure of one or more charts side by side, each with
// axes, tick labels, a legend and optional shaded X intervals (bands).
//
// It is meant for a handful of series of at most a few thousand points,
// written once at the end of a run; it does no clipping or thinning.
package plot

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Point is one (x, y) value. A NaN Y leaves a gap in the line (a sample
// that could not be taken).
type Point struct{ X, Y float64 }

// Series is one line of a chart.
type Series struct {
	Name    string
	Points  []Point
	Markers bool // a dot on every point, for series of few points
	Dashed  bool
}

// Band shades the X interval [From, To] of a chart, e.g. a period when a
// backend was down. Bands of one chart share a single legend entry, Label
// of the first.
type Band struct {
	From, To float64
	Label    string
}

// Chart is one set of axes.
type Chart struct {
	Title          string
	XLabel, YLabel string
	Series         []Series
	Bands          []Band
	XFromZero      bool // the x axis starts at 0 even if the data does not (Y always includes 0)
}

// Figure is charts laid out in a grid under a title.
type Figure struct {
	Title   string
	Charts  []Chart
	Columns int // charts per row; 0 puts them all in one row
	// Size of each chart's plotting area in pixels; 0 means 360×200.
	PlotWidth, PlotHeight int
}

// The Okabe–Ito palette: tells lines apart for colour-blind readers too.
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"}

// Layout of one chart cell, in pixels.
const (
	marginLeft   = 64 // y tick labels and the rotated y label
	marginRight  = 18
	marginTop    = 34 // the chart's title
	axisBelow    = 46 // x tick labels and the x label
	legendRow    = 17
	legendBottom = 10
	figureTitle  = 30
	fontFamily   = "Helvetica, Arial, sans-serif"
)

// SVG renders the figure as a standalone SVG document.
func (f Figure) SVG() []byte {
	var b bytes.Buffer
	f.write(&b)
	return b.Bytes()
}

// WriteSVG writes the figure as a standalone SVG document to w.
func (f Figure) WriteSVG(w io.Writer) error {
	_, err := w.Write(f.SVG())
	return err
}

func (f Figure) write(b *bytes.Buffer) {
	pw, ph := f.PlotWidth, f.PlotHeight
	if pw <= 0 {
		pw = 360
	}
	if ph <= 0 {
		ph = 200
	}
	cols := f.Columns
	if cols <= 0 || cols > len(f.Charts) {
		cols = max(len(f.Charts), 1)
	}
	cellW := marginLeft + pw + marginRight
	// Every cell of a row gets the height of the row's tallest legend, so
	// the plotting areas line up.
	rows := (len(f.Charts) + cols - 1) / cols
	rowH := make([]int, rows)
	for i, c := range f.Charts {
		h := marginTop + ph + axisBelow + legendRow*c.legendEntries() + legendBottom
		rowH[i/cols] = max(rowH[i/cols], h)
	}
	top := 0
	if f.Title != "" {
		top = figureTitle
	}
	width, height := cellW*cols, top
	for _, h := range rowH {
		height += h
	}

	fmt.Fprintf(b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s" font-size="11">`+"\n",
		width, height, width, height, fontFamily)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	if f.Title != "" {
		fmt.Fprintf(b, `<text x="%d" y="20" font-size="14" font-weight="bold" text-anchor="middle">%s</text>`+"\n", width/2, esc(f.Title))
	}
	y := top
	for r := range rows {
		for c := range cols {
			i := r*cols + c
			if i >= len(f.Charts) {
				break
			}
			f.Charts[i].write(b, c*cellW, y, pw, ph)
		}
		y += rowH[r]
	}
	b.WriteString("</svg>\n")
}

func (c Chart) legendEntries() int {
	n := len(c.Series)
	if len(c.Bands) > 0 {
		n++
	}
	return n
}

// bounds is the data's extent: X over points and bands, Y over points with
// zero always included (these are costs and counts: a chart that starts
// at 0 does not exaggerate a small change).
func (c Chart) bounds() (xlo, xhi, ylo, yhi float64) {
	xlo, xhi = math.Inf(1), math.Inf(-1)
	ylo, yhi = 0, 0
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !finite(p.X) {
				continue
			}
			xlo, xhi = math.Min(xlo, p.X), math.Max(xhi, p.X)
			if finite(p.Y) {
				ylo, yhi = math.Min(ylo, p.Y), math.Max(yhi, p.Y)
			}
		}
	}
	for _, bd := range c.Bands {
		if finite(bd.From) && finite(bd.To) {
			xlo, xhi = math.Min(xlo, bd.From), math.Max(xhi, bd.To)
		}
	}
	if xlo > xhi { // nothing to plot
		xlo, xhi = 0, 1
	}
	if c.XFromZero {
		xlo, xhi = math.Min(xlo, 0), math.Max(xhi, 0)
	}
	return xlo, xhi, ylo, yhi
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// write draws the chart in the cell whose top-left corner is (x0, y0).
func (c Chart) write(b *bytes.Buffer, x0, y0, pw, ph int) {
	xlo, xhi, ylo, yhi := c.bounds()
	xt, xlo, xhi := Ticks(xlo, xhi, max(pw/70, 2))
	yt, ylo, yhi := Ticks(ylo, yhi, max(ph/40, 2))
	left, top := float64(x0+marginLeft), float64(y0+marginTop)
	right, bottom := left+float64(pw), top+float64(ph)
	sx := func(v float64) float64 { return left + (v-xlo)/(xhi-xlo)*float64(pw) }
	sy := func(v float64) float64 { return bottom - (v-ylo)/(yhi-ylo)*float64(ph) }

	fmt.Fprintf(b, `<g class="chart" data-title="%s">`+"\n", esc(c.Title))
	if c.Title != "" {
		fmt.Fprintf(b, `<text x="%.1f" y="%d" font-size="13" font-weight="bold" text-anchor="middle">%s</text>`+"\n",
			(left+right)/2, y0+20, esc(c.Title))
	}
	for _, bd := range c.Bands {
		if !finite(bd.From) || !finite(bd.To) || bd.To < bd.From {
			continue
		}
		fmt.Fprintf(b, `<rect class="band" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#999999" fill-opacity="0.18"/>`+"\n",
			sx(bd.From), top, sx(bd.To)-sx(bd.From), bottom-top)
	}
	// Grid lines and tick labels.
	xdec, ydec := decimals(xt), decimals(yt)
	for _, v := range yt {
		y := sy(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", left, y, right, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-6, y, formatTick(v, ydec))
	}
	for _, v := range xt {
		x := sx(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", x, top, x, bottom)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, bottom+15, formatTick(v, xdec))
	}
	// Axes.
	fmt.Fprintf(b, `<path d="M%.1f %.1fV%.1fH%.1f" fill="none" stroke="#333333"/>`+"\n", left, top, bottom, right)
	if c.XLabel != "" {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", (left+right)/2, bottom+34, esc(c.XLabel))
	}
	if c.YLabel != "" {
		fmt.Fprintf(b, `<text transform="translate(%.1f %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n",
			float64(x0+14), (top+bottom)/2, esc(c.YLabel))
	}

	for i, s := range c.Series {
		color := palette[i%len(palette)]
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(b, `<g class="series" data-name="%s">`+"\n", esc(s.Name))
		for _, run := range runs(s.Points) {
			var pts strings.Builder
			for j, p := range run {
				if j > 0 {
					pts.WriteByte(' ')
				}
				fmt.Fprintf(&pts, "%.1f,%.1f", sx(p.X), sy(p.Y))
			}
			fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.8" stroke-linejoin="round"%s/>`+"\n", pts.String(), color, dash)
		}
		if s.Markers {
			for _, p := range s.Points {
				if finite(p.X) && finite(p.Y) {
					fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", sx(p.X), sy(p.Y), color)
				}
			}
		}
		b.WriteString("</g>\n")
	}

	// Legend, below the x label: never on top of the data.
	ly := bottom + axisBelow + 4
	for i, s := range c.Series {
		color := palette[i%len(palette)]
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(b, `<line class="legend" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n",
			left, ly, left+22, ly, color, dash)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>`+"\n", left+28, ly, esc(s.Name))
		ly += legendRow
	}
	if len(c.Bands) > 0 {
		fmt.Fprintf(b, `<rect class="legend" x="%.1f" y="%.1f" width="22" height="10" fill="#999999" fill-opacity="0.3"/>`+"\n", left, ly-5)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>`+"\n", left+28, ly, esc(c.Bands[0].Label))
	}
	b.WriteString("</g>\n")
}

// runs splits points into the stretches between unplottable ones.
func runs(pts []Point) [][]Point {
	var out [][]Point
	var cur []Point
	for _, p := range pts {
		if finite(p.X) && finite(p.Y) {
			cur = append(cur, p)
			continue
		}
		if len(cur) > 0 {
			out = append(out, cur)
		}
		cur = nil
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// Ticks picks about n evenly spaced round tick values (steps of 1, 2, 2.5
// or 5 times a power of ten) covering [lo, hi], and returns them with the
// widened range they span.
func Ticks(lo, hi float64, n int) (ticks []float64, tlo, thi float64) {
	if !finite(lo) || !finite(hi) {
		lo, hi = 0, 1
	}
	if hi < lo {
		lo, hi = hi, lo
	}
	if hi == lo {
		if lo == 0 {
			hi = 1
		} else {
			d := math.Abs(lo) / 10
			lo, hi = lo-d, hi+d
		}
	}
	n = max(n, 1)
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	// The round step whose interval count is nearest n; on a tie, the one
	// that wastes less of the axis beyond the data.
	var step float64
	bestDiff, bestWaste := math.Inf(1), math.Inf(1)
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		s := m * mag
		l, h := math.Floor(lo/s+1e-9)*s, math.Ceil(hi/s-1e-9)*s
		diff := math.Abs(math.Round((h-l)/s) - float64(n))
		waste := (h - l) - (hi - lo)
		if diff < bestDiff || (diff == bestDiff && waste < bestWaste) {
			step, bestDiff, bestWaste = s, diff, waste
		}
	}
	tlo = math.Floor(lo/step+1e-9) * step
	thi = math.Ceil(hi/step-1e-9) * step
	for i := 0; ; i++ {
		v := tlo + float64(i)*step
		if v > thi+step/2 {
			break
		}
		// Snap away the float error of repeated steps (0.30000000000000004).
		ticks = append(ticks, math.Round(v/step*4)*step/4)
	}
	return ticks, tlo, thi
}

// decimals is how many decimals tell the ticks apart.
func decimals(ticks []float64) int {
	if len(ticks) < 2 {
		return 0
	}
	step := math.Abs(ticks[1] - ticks[0])
	for d := 0; d < 10; d++ {
		if math.Abs(step*math.Pow(10, float64(d))-math.Round(step*math.Pow(10, float64(d)))) < 1e-6 {
			return d
		}
	}
	return 10
}

func formatTick(v float64, dec int) string {
	s := strconv.FormatFloat(v, 'f', dec, 64)
	if strings.Trim(s, "-0.") == "" {
		return strings.TrimPrefix(s, "-") // no "-0"
	}
	return s
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // writes to a strings.Builder cannot fail
	return b.String()
}
