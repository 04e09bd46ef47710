package qrsvg

import (
	"encoding/xml"
	"fmt"
	"image"
	"image/color"
	"strings"
	"testing"

	goqr "github.com/piglig/go-qr"
)

// parsed is what an SVG of SVG says: its side and its dark modules.
type parsed struct {
	side  int
	dark  map[[2]int]bool
	label string
}

// parseSVG reads an SVG written by SVG back, strictly: an <svg> with a
// square viewBox, a white <rect> over all of it and one black <path> of
// "M<x> <y>h<n>v1h-<n>z" runs. Anything else fails the test.
func parseSVG(t *testing.T, svg string) parsed {
	t.Helper()
	var doc struct {
		XMLName xml.Name `xml:"svg"`
		ViewBox string   `xml:"viewBox,attr"`
		Label   string   `xml:"aria-label,attr"`
		Rect    []struct {
			Width  int    `xml:"width,attr"`
			Height int    `xml:"height,attr"`
			Fill   string `xml:"fill,attr"`
		} `xml:"rect"`
		Path []struct {
			Fill string `xml:"fill,attr"`
			D    string `xml:"d,attr"`
		} `xml:"path"`
	}
	if err := xml.Unmarshal([]byte(svg), &doc); err != nil {
		t.Fatalf("the SVG is not XML: %v\n%s", err, svg)
	}
	p := parsed{dark: map[[2]int]bool{}, label: doc.Label}
	var w, h int
	if _, err := fmt.Sscanf(doc.ViewBox, "0 0 %d %d", &w, &h); err != nil || w != h {
		t.Fatalf("viewBox %q", doc.ViewBox)
	}
	p.side = w
	if len(doc.Rect) != 1 || doc.Rect[0].Width != w || doc.Rect[0].Height != h || doc.Rect[0].Fill != "#fff" {
		t.Fatalf("background %+v", doc.Rect)
	}
	if len(doc.Path) != 1 || doc.Path[0].Fill != "#000" {
		t.Fatalf("paths %+v", doc.Path)
	}
	for _, run := range strings.SplitAfter(doc.Path[0].D, "z") {
		if run == "" {
			continue
		}
		var x, y, n, back int
		if _, err := fmt.Sscanf(run, "M%d %dh%dv1h-%dz", &x, &y, &n, &back); err != nil || n < 1 || back != n {
			t.Fatalf("path segment %q: %v", run, err)
		}
		for i := range n {
			if p.dark[[2]int{x + i, y}] {
				t.Fatalf("module %d,%d drawn twice", x+i, y)
			}
			p.dark[[2]int{x + i, y}] = true
		}
	}
	return p
}

func TestSVGIsTheMatrix(t *testing.T) {
	for _, text := range []string{
		"https://203.0.113.7/join/Zk3v0bJc8gW2yq4oXb6L1nQe5sT9uVwYxA7dE_fHh-I",
		"http://localhost:8080/join/" + strings.Repeat("A", 43),
		"x",
	} {
		c, err := Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		// The matrix is the library's.
		q, err := goqr.EncodeText(text, goqr.Medium)
		if err != nil {
			t.Fatal(err)
		}
		if c.Size() != q.Size() || c.Size() < 21 {
			t.Fatalf("%q: size %d, library %d", text, c.Size(), q.Size())
		}
		p := parseSVG(t, string(c.SVG(text)))
		if p.side != c.Size()+2*QuietZone {
			t.Errorf("%q: side %d, want %d", text, p.side, c.Size()+2*QuietZone)
		}
		darkCount := 0
		for y := -QuietZone; y < c.Size()+QuietZone; y++ {
			for x := -QuietZone; x < c.Size()+QuietZone; x++ {
				want := c.Dark(x, y)
				if x >= 0 && y >= 0 && x < c.Size() && y < c.Size() && want != q.Module(x, y) {
					t.Fatalf("%q: Dark(%d, %d) = %v, library %v", text, x, y, want, q.Module(x, y))
				}
				if got := p.dark[[2]int{x + QuietZone, y + QuietZone}]; got != want {
					t.Fatalf("%q: module %d,%d in the SVG = %v, matrix %v", text, x, y, got, want)
				}
				if want {
					darkCount++
				}
			}
		}
		if darkCount != len(p.dark) || darkCount == 0 {
			t.Errorf("%q: %d dark modules in the matrix, %d in the SVG", text, darkCount, len(p.dark))
		}
		// What the SVG draws reads back as the text.
		if got, err := goqr.Decode(raster(p, 4)); err != nil || got != text {
			t.Errorf("decoding the drawn SVG: %q, %v; want %q", got, err, text)
		}
	}
}

// raster paints the modules of p scale pixels each, as a printer would.
func raster(p parsed, scale int) image.Image {
	img := image.NewGray(image.Rect(0, 0, p.side*scale, p.side*scale))
	for y := range p.side * scale {
		for x := range p.side * scale {
			c := color.Gray{Y: 255}
			if p.dark[[2]int{x / scale, y / scale}] {
				c = color.Gray{}
			}
			img.SetGray(x, y, c)
		}
	}
	return img
}

func TestSVGEscapesLabel(t *testing.T) {
	c, err := Encode("x")
	if err != nil {
		t.Fatal(err)
	}
	label := `"><script>alert(1)</script><x y='`
	svg := string(c.SVG(label))
	if strings.Contains(svg, "<script") || strings.Contains(svg, label) || strings.Count(svg, "<") != 4 {
		t.Errorf("the label is not escaped: %s", svg)
	}
	if p := parseSVG(t, svg); p.label != label {
		t.Errorf("label reads back as %q, want %q", p.label, label)
	}
}

func TestEncodeTooLong(t *testing.T) {
	if _, err := Encode(strings.Repeat("x", 4000)); err == nil {
		t.Error("4000 bytes fit a QR code")
	}
}
