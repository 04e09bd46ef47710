package benchkit

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/atomicfile"
)

// ResultsHeader starts a new RESULTS.md.
const ResultsHeader = `# Benchmark results

How these are produced: ` + "`make bench`" + ` (or ` + "`bench/run.sh`" + `) runs every benchmark of the project
in turn. Each one measures thon and a reference doing the same work in one run, side by side, on the
same machine, and reports the ratio. These machines are small (2 shared cores) and noisy: the absolute
numbers below move from run to run and mean little on their own; the ratios measured in one run, and how
they change with the load, are the result. Each section says the exact command, the machine, and when
it was measured; a section is rewritten by its benchmark, never edited by hand.
`

// UpdateResults writes body as the section named title of the markdown
// file at path: it replaces the section from its "## title" line up to the
// next "## " heading, or appends it. A missing file is created with
// ResultsHeader. An unchanged file is not written.
func UpdateResults(path, title, body string) error {
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		old, err = []byte(ResultsHeader), nil
	}
	if err != nil {
		return err
	}
	out := ReplaceSection(string(old), title, body)
	if bytes.Equal([]byte(out), old) {
		return nil
	}
	_, err = atomicfile.Write(path, []byte(out), 0o644)
	return err
}

// ReplaceSection returns doc with the level-2 section named title replaced
// by body, or body appended after a blank line if there is none.
func ReplaceSection(doc, title, body string) string {
	body = strings.TrimRight(body, "\n") + "\n"
	lines := strings.SplitAfter(doc, "\n")
	start, end := -1, len(lines)
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		if !strings.HasPrefix(t, "## ") {
			continue
		}
		if start < 0 && strings.TrimSpace(t[3:]) == title {
			start = i
		} else if start >= 0 {
			end = i
			break
		}
	}
	if start < 0 {
		doc = strings.TrimRight(doc, "\n")
		if doc == "" {
			return body
		}
		return doc + "\n\n" + body
	}
	rest := strings.Join(lines[end:], "")
	if rest != "" {
		body += "\n"
	}
	return strings.Join(lines[:start], "") + body + rest
}

// Median of v: the middle value, or the mean of the two middle ones; 0
// for none.
func Median[T int64 | float64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Ratio is a ÷ b, or 0 when b is not positive: figures are never negative
// and a missing one has no ratio.
func Ratio[T int64 | float64 | time.Duration](a, b T) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// FmtDur prints a latency with three significant digits.
func FmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3gs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3gms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.3gµs", float64(d)/float64(time.Microsecond))
	}
}
