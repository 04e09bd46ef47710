package benchkit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReplaceSection(t *testing.T) {
	const prov = "## Provisioning\n\nnew table\n"
	for _, tc := range []struct {
		name, doc, title, body, want string
	}{
		{"empty", "", "Provisioning", prov, prov},
		{"append", "# Results\n\nintro\n", "Provisioning", prov, "# Results\n\nintro\n\n" + prov},
		{"append after other", "# R\n\n## Gateway\n\ng\n", "Provisioning", prov, "# R\n\n## Gateway\n\ng\n\n" + prov},
		{"replace last", "# R\n\n## Provisioning\n\nold\nold\n", "Provisioning", prov, "# R\n\n" + prov},
		{"replace middle", "# R\n\n## Provisioning\n\nold\n\n## Gateway\n\ng\n", "Provisioning", prov, "# R\n\n" + prov + "\n## Gateway\n\ng\n"},
		{"level 3 is not a section end", "## Provisioning\n\n### detail\nold\n## Proxy\np\n", "Provisioning", prov, prov + "\n## Proxy\np\n"},
		{"similar title", "## Provisioning old\n\nx\n", "Provisioning", prov, "## Provisioning old\n\nx\n\n" + prov},
		{"replace between", "# Results\n\nintro\n\n## Provisioning\n\nold p\n\n## Proxy\n\nold x\n\n## Later\n\nz\n", "Proxy", "## Proxy\n\nnew x\n",
			"# Results\n\nintro\n\n## Provisioning\n\nold p\n\n## Proxy\n\nnew x\n\n## Later\n\nz\n"},
		{"body without newline", "# Results\n\nintro\n", "Proxy", "## Proxy\n\nx", "# Results\n\nintro\n\n## Proxy\n\nx\n"},
		{"replace at end", "# R\n\n## Proxy\n\nold\n\n## Gateway\n\nold gateway\n", "Gateway", "## Gateway\n\nnew\n", "# R\n\n## Proxy\n\nold\n\n## Gateway\n\nnew\n"},
		{"append to header", "# R\n", "Gateway", "## Gateway\n\nnew\n", "# R\n\n## Gateway\n\nnew\n"},
		{"CRLF heading", "## Proxy\r\nold\r\n## Later\r\n", "Proxy", "## Proxy\n\nnew\n", "## Proxy\n\nnew\n\n## Later\r\n"},
	} {
		if got := ReplaceSection(tc.doc, tc.title, tc.body); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func FuzzReplaceSection(f *testing.F) {
	f.Add("# R\n\n## Provisioning\n\nold\n\n## Gateway\n\ng\n")
	f.Add("## Provisioning\r\nx\r\n## Provisioning\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, doc string) {
		const body = "## Provisioning\n\nfigures\n"
		once := ReplaceSection(doc, "Provisioning", body)
		if !strings.Contains(once, body) {
			t.Fatalf("section missing from %q", once)
		}
		if twice := ReplaceSection(once, "Provisioning", body); twice != once {
			t.Fatalf("not idempotent:\n%q\n%q", once, twice)
		}
	})
}

func TestUpdateResults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if err := UpdateResults(path, "Proxy", "## Proxy\n\none\n"); err != nil {
		t.Fatal(err)
	}
	if got, want := read(), ResultsHeader+"\n## Proxy\n\none\n"; got != want {
		t.Errorf("new file:\n%q\nwant\n%q", got, want)
	}
	if err := UpdateResults(path, "Gateway", "## Gateway\n\ng\n"); err != nil {
		t.Fatal(err)
	}
	if err := UpdateResults(path, "Proxy", "## Proxy\n\ntwo\n"); err != nil {
		t.Fatal(err)
	}
	if got, want := read(), ResultsHeader+"\n## Proxy\n\ntwo\n\n## Gateway\n\ng\n"; got != want {
		t.Errorf("updated file:\n%q\nwant\n%q", got, want)
	}

	// The same section again leaves the file alone.
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if err := UpdateResults(path, "Proxy", "## Proxy\n\ntwo\n"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("unchanged file rewritten: %v %v", fi.ModTime(), err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}

	if err := UpdateResults(filepath.Join(t.TempDir(), "missing", "RESULTS.md"), "Proxy", "x"); err == nil {
		t.Error("no error for a missing directory")
	}
	if err := UpdateResults(t.TempDir(), "Proxy", "x"); err == nil {
		t.Error("no error for a directory")
	}
}

func TestMedian(t *testing.T) {
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("odd: %v", got)
	}
	if got := Median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("even: %v", got)
	}
	if got := Median([]time.Duration{time.Second}); got != time.Second {
		t.Errorf("one: %v", got)
	}
	if got := Median[float64](nil); got != 0 {
		t.Errorf("none: %v", got)
	}
	v := []int64{3, 1, 2}
	Median(v)
	if v[0] != 3 || v[1] != 1 {
		t.Errorf("input sorted in place: %v", v)
	}
}

func TestRatio(t *testing.T) {
	for _, tc := range []struct {
		got, want float64
	}{
		{Ratio(960.0, 1000.0), 0.96},
		{Ratio(3*time.Second, 2*time.Second), 1.5},
		{Ratio(int64(1), int64(4)), 0.25},
		{Ratio(1.0, 0.0), 0},
		{Ratio(time.Second, 0), 0},
		{Ratio(time.Second, -time.Second), 0},
	} {
		if tc.got != tc.want {
			t.Errorf("got %v, want %v", tc.got, tc.want)
		}
	}
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		412 * time.Microsecond:  "412µs",
		1500 * time.Nanosecond:  "1.5µs",
		time.Millisecond:        "1ms",
		2310 * time.Microsecond: "2.31ms",
		1234 * time.Millisecond: "1.23s",
		90 * time.Second:        "90s",
	} {
		if got := FmtDur(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}
