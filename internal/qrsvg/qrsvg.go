// Package qrsvg draws QR codes as inline SVG for thon's printed pages: the
// code's modules come from github.com/piglig/go-qr (a port of Project
// Nayuki's generator); the SVG is written here, numbers only, so a page's
// Content-Security-Policy needs nothing but inline markup for it.
package qrsvg

import (
	"fmt"
	"html"
	"html/template"
	"strings"

	goqr "github.com/piglig/go-qr"
)

// QuietZone is the light border around a code, in modules, that readers
// need (ISO/IEC 18004 asks for 4).
const QuietZone = 4

// Code is a QR code's modules: Size × Size, true for dark.
type Code struct {
	size int
	dark []bool
}

// Encode returns the QR code of text with error correction level M (15%
// of the code may be lost), raised when the symbol has room for more.
func Encode(text string) (Code, error) {
	q, err := goqr.EncodeText(text, goqr.Medium)
	if err != nil {
		return Code{}, fmt.Errorf("qr code of %d bytes: %w", len(text), err)
	}
	c := Code{size: q.Size(), dark: make([]bool, q.Size()*q.Size())}
	for y := range c.size {
		for x := range c.size {
			c.dark[y*c.size+x] = q.Module(x, y)
		}
	}
	return c, nil
}

// Size is the number of modules on a side, without the quiet zone.
func (c Code) Size() int { return c.size }

// Dark reports whether the module at column x and row y is dark; outside
// the code (the quiet zone) everything is light.
func (c Code) Dark(x, y int) bool {
	if x < 0 || y < 0 || x >= c.size || y >= c.size {
		return false
	}
	return c.dark[y*c.size+x]
}

// SVG returns the code as an <svg> element one module per user unit, with
// the quiet zone, scaled by CSS or by the width and height its container
// gives it; label is its accessible name (escaped here). The dark modules
// are one path of horizontal runs, "M<x> <y>h<n>v1h-<n>z" each, in module
// coordinates including the quiet zone.
func (c Code) SVG(label string) template.HTML {
	side := c.size + 2*QuietZone
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges" role="img" aria-label="%s">`,
		side, side, html.EscapeString(label))
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, side, side)
	for y := range c.size {
		for x := 0; x < c.size; {
			if !c.Dark(x, y) {
				x++
				continue
			}
			run := 1
			for c.Dark(x+run, y) {
				run++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", x+QuietZone, y+QuietZone, run, run)
			x += run
		}
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String()) // numbers and an escaped label only
}
