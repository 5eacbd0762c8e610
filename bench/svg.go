package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// The charts are plain SVG written here: no plotting dependency, and a
// diff of a chart shows which number moved.

// series is one line of a line chart.
type series struct {
	Name   string
	Color  string
	Width  float64
	Points [][2]float64 // x, y
}

// axis maps values to pixels, linearly or on a log scale.
type axis struct {
	min, max float64
	log      bool
	from, to float64 // pixels
}

func (a axis) pos(v float64) float64 {
	lo, hi, x := a.min, a.max, v
	if a.log {
		lo, hi, x = math.Log10(lo), math.Log10(hi), math.Log10(math.Max(v, a.min))
	}
	return a.from + (x-lo)/(hi-lo)*(a.to-a.from)
}

type lineChart struct {
	Title, XLabel, YLabel string
	X, Y                  axis
	XTicks, YTicks        []float64
	XFmt, YFmt            func(float64) string
	VLine                 float64 // a marked x (capacity); 0 = none
	VLineLabel            string
	Series                []series
}

const chartW, chartH = 760, 440

func (c lineChart) svg() string {
	var b strings.Builder
	left, right, top, bottom := 78.0, float64(chartW)-190, 48.0, float64(chartH)-58
	c.X.from, c.X.to = left, right
	c.Y.from, c.Y.to = bottom, top
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%g" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(c.Title))
	for _, t := range c.YTicks {
		y := c.Y.pos(t)
		fmt.Fprintf(&b, `<line x1="%g" y1="%.1f" x2="%g" y2="%.1f" stroke="#e5e5e5"/>`+"\n", left, y, right, y)
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" text-anchor="end" fill="#444">%s</text>`+"\n", left-6, y+4, c.YFmt(t))
	}
	for _, t := range c.XTicks {
		x := c.X.pos(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#e5e5e5"/>`+"\n", x, top, x, bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" text-anchor="middle" fill="#444">%s</text>`+"\n", x, bottom+18, c.XFmt(t))
	}
	fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%g" fill="none" stroke="#888"/>`+"\n", left, top, right-left, bottom-top)
	if c.VLine > 0 {
		x := c.X.pos(c.VLine)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#999" stroke-dasharray="5,4"/>`+"\n", x, top, x, bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" fill="#666">%s</text>`+"\n", x+4, top+14, html.EscapeString(c.VLineLabel))
	}
	fmt.Fprintf(&b, `<text x="%g" y="%d" text-anchor="middle" fill="#222">%s</text>`+"\n", (left+right)/2, chartH-16, html.EscapeString(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(18 %g) rotate(-90)" text-anchor="middle" fill="#222">%s</text>`+"\n", (top+bottom)/2, html.EscapeString(c.YLabel))
	for i, s := range c.Series {
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", c.X.pos(p[0]), c.Y.pos(p[1])))
		}
		if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="%g"/>`+"\n", strings.Join(pts, " "), s.Color, s.Width)
		}
		for _, p := range pts {
			xy := strings.Split(p, ",")
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="%g" fill="%s"/>`+"\n", xy[0], xy[1], 2+s.Width/2, s.Color)
		}
		ly := top + 10 + float64(i)*22
		fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="%s" stroke-width="%g"/>`+"\n", right+14, ly, right+40, ly, s.Color, s.Width)
		fmt.Fprintf(&b, `<text x="%g" y="%g">%s</text>`+"\n", right+46, ly+4, html.EscapeString(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// bar is one bar of a bar chart.
type bar struct {
	Label string
	Value float64
	Note  string // printed after the value
	Color string
}

// barChart draws horizontal bars, one per row, scaled to the largest.
func barChart(title, unit string, bars []bar) string {
	var b strings.Builder
	rowH, left, top := 30.0, 190.0, 48.0
	w := float64(chartW)
	h := top + rowH*float64(len(bars)) + 30
	maxV := 0.0
	for _, br := range bars {
		maxV = math.Max(maxV, br.Value)
	}
	if maxV == 0 {
		maxV = 1
	}
	span := w - left - 230
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="16" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	for i, br := range bars {
		y := top + float64(i)*rowH
		bw := br.Value / maxV * span
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="end">%s</text>`+"\n", left-8, y+rowH/2+4, html.EscapeString(br.Label))
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%.1f" height="%g" fill="%s"/>`+"\n", left, y+5, bw, rowH-10, br.Color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" fill="#222">%s %s  %s</text>`+"\n", left+bw+6, y+rowH/2+4, thousands(br.Value), unit, html.EscapeString(br.Note))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// thousands formats v with thin spaces between groups of three digits.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []string
	for len(s) > 3 {
		out = append([]string{s[len(s)-3:]}, out...)
		s = s[:len(s)-3]
	}
	out = append([]string{s}, out...)
	r := strings.Join(out, " ")
	if neg {
		r = "-" + r
	}
	return r
}

// peerColor gives each proxy the same color in every chart.
func peerColor(name string) string {
	switch {
	case strings.HasPrefix(name, "sluice, access"):
		return "#6aa84f"
	case strings.HasPrefix(name, "sluice"):
		return "#1b7a2e"
	case name == "HAProxy":
		return "#1f5fbf"
	case name == "nginx":
		return "#8e44ad"
	case name == "Caddy":
		return "#e69138"
	case strings.HasPrefix(name, "httputil"):
		return "#cc0000"
	}
	return "#777777"
}
