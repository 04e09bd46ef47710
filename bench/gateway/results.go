package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"
)

// procField returns the value of the first "key: value" line of a /proc
// file.
func procField(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// median of v: the middle value, or the mean of the two middle ones.
func median[T int64 | float64 | time.Duration](v []T) T {
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

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// fmtDur prints a latency with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3gs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3gms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.3gµs", float64(d)/float64(time.Microsecond))
	}
}

// resultsHeader starts a new RESULTS.md; the same as the other benchmarks
// write.
const resultsHeader = `# Benchmark results

How these are produced: ` + "`make bench`" + ` (or ` + "`bench/run.sh`" + `) runs every benchmark of the project
in turn. Each one measures thon and a reference doing the same work in one run, side by side, on the
same machine, and reports the ratio. These machines are small (2 shared cores) and noisy: the absolute
numbers below move from run to run and mean little on their own; the ratios measured in one run, and how
they change with the load, are the result. Each section says the exact command, the machine, and when
it was measured; a section is rewritten by its benchmark, never edited by hand.
`

// updateResults writes body as the section named title of the markdown
// file at path: it replaces the section from its "## title" line up to the
// next "## " heading, or appends it. A missing file is created with
// resultsHeader.
func updateResults(path, title, body string) error {
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		old, err = []byte(resultsHeader), nil
	}
	if err != nil {
		return err
	}
	out := replaceSection(string(old), title, body)
	if bytes.Equal([]byte(out), old) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// replaceSection returns doc with the level-2 section named title replaced
// by body, or body appended after a blank line if there is none.
func replaceSection(doc, title, body string) string {
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
