package loadtest

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// Chart geometry: two panels sharing the time axis, latency above,
// offered load and goodput below.
const (
	chartW, chartH = 800, 530
	padL, padR     = 70, 20
	panelH         = 180
	top1, top2     = 56, 310
)

// WriteSVG draws the run per second: admitted p50 and p99 latency in the
// upper panel, offered load and goodput in the lower one, and the
// capacity search's breaking point when there is one.
func (r *Report) WriteSVG(w io.Writer) error {
	var b strings.Builder
	n := max(len(r.Windows), 1)
	x := func(sec float64) float64 { return padL + sec*(chartW-padL-padR)/float64(n) }
	var maxLat, maxRate float64
	for _, win := range r.Windows {
		maxLat = max(maxLat, float64(win.AdmittedP99))
		maxRate = max(maxRate, win.Offered, win.Goodput)
	}
	maxLat, maxRate = nice(maxLat), nice(maxRate)

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">%s</text>`+"\n", padL, esc("sluice loadtest "+r.URL))
	panel := func(topY float64, title, unit string, maxV float64, series []series) {
		y := func(v float64) float64 { return topY + panelH - v*panelH/maxV }
		fmt.Fprintf(&b, `<g><text x="%d" y="%.0f">%s</text>`+"\n", padL, topY-8, esc(title))
		for i := 0; i <= 4; i++ {
			v := maxV * float64(i) / 4
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
				padL, chartW-padR, y(v), y(v), padL-6, y(v)+4, esc(fmt.Sprintf("%g%s", v, unit)))
		}
		for _, s := range series {
			var pts []string
			for _, win := range r.Windows {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(win.Second)+0.5), y(s.value(win))))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"><title>%s</title></polyline>`+"\n", s.color, strings.Join(pts, " "), esc(s.name))
		}
		for i, s := range series {
			lx := float64(chartW - padR - 130)
			ly := topY + 14 + float64(i)*16
			fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="%s" stroke-width="2"/><text x="%.0f" y="%.0f">%s</text>`+"\n", lx, lx+20, ly-4, ly-4, s.color, lx+26, ly, esc(s.name))
		}
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.0f" y2="%.0f" stroke="black"/></g>`+"\n", padL, chartW-padR, topY+panelH, topY+panelH)
	}
	panel(top1, "admitted latency per second", "ms", maxLat, []series{
		{"p50", "#1f77b4", func(w Window) float64 { return float64(w.AdmittedP50) }},
		{"p99", "#d62728", func(w Window) float64 { return float64(w.AdmittedP99) }},
	})
	panel(top2, "offered load and goodput", "/s", maxRate, []series{
		{"offered req/s", "#7f7f7f", func(w Window) float64 { return w.Offered }},
		{"goodput (2xx/s)", "#2ca02c", func(w Window) float64 { return w.Goodput }},
	})
	if c := r.Capacity; c != nil && c.Found {
		bx := x(float64(c.BrokeAt))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#ff7f0e" stroke-dasharray="4 3"/><text x="%.1f" y="%d" fill="#ff7f0e">%s</text>`+"\n",
			bx, bx, top1, top2+panelH, bx+4, top2+panelH-6, esc(fmt.Sprintf("capacity %.0f req/s", c.Goodput)))
	}
	for s := 0; s <= n; s += max(1, n/10) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%ds</text>`+"\n", x(float64(s)), top2+panelH+18, s)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

type series struct {
	name, color string
	value       func(Window) float64
}

// nice rounds an axis maximum up to 1, 2 or 5 times a power of ten.
func nice(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := 1.0
	for p*10 <= v {
		p *= 10
	}
	for p > v {
		p /= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
