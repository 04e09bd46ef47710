package sandboxes

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/thon-dev/thon/sandboxes/docker"
	"github.com/thon-dev/thon/store"
)

func TestCheckPortRange(t *testing.T) {
	for i, tc := range []struct {
		first, last int
		ok          bool
	}{
		{8443, 9442, true},
		{1024, 1024, true},
		{1024, 65535, true},
		{1023, 2000, false},
		{2000, 65536, false},
		{3000, 2999, false},
		{0, 0, false},
	} {
		err := CheckPortRange(tc.first, tc.last)
		if tc.ok != (err == nil) {
			t.Errorf("case %d: %d-%d: %v", i, tc.first, tc.last, err)
		}
		var fe *store.FieldError
		if err != nil && (!errors.As(err, &fe) || fe.Field != "port_range" || err.Error() != "port_range: "+strconv.Itoa(tc.first)+"-"+strconv.Itoa(tc.last)+" is not a range within 1024-65535") {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

func TestConfigWithDefaults(t *testing.T) {
	c, err := Config{Image: "img"}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.PortStart != DefaultPortStart || c.PortEnd != DefaultPortStart+DefaultPortCount-1 || c.Workspace != WorkspaceVolume ||
		c.MemoryBytes != 4<<30 || c.NanoCPUs != 2e9 || c.PidsLimit != 2048 || c.Concurrency != 8 || c.Logger == nil {
		t.Errorf("defaults: %+v", c)
	}
	if c, err := (Config{Image: "img", PortStart: 20000}).WithDefaults(); err != nil || c.PortEnd != 20999 {
		t.Errorf("end from start: %d %v", c.PortEnd, err)
	}
	for i, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{}, "image"},
		{Config{Image: "img", PortStart: 100}, "port_range"},
		{Config{Image: "img", PortStart: 65000}, "port_range"}, // the default end passes 65535
		{Config{Image: "img", PortStart: 9000, PortEnd: 8000}, "port_range"},
		{Config{Image: "img", Workspace: WorkspaceBind}, "workspace_dir"},
		{Config{Image: "img", Workspace: "tmpfs"}, "workspace"},
	} {
		_, err := tc.cfg.WithDefaults()
		var fe *store.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("case %d: %v, want an error naming %s", i, err, tc.field)
		}
	}
}

// TestReconfigure: a refused configuration changes nothing; an accepted
// one replaces the settings and the client.
func TestReconfigure(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	first, err := docker.New("")
	if err != nil {
		t.Fatal(err)
	}
	second, err := docker.New("unix:///var/run/docker.sock")
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(st, first, Config{Image: "one", PortStart: 30000, PortEnd: 30009})
	if err != nil {
		t.Fatal(err)
	}
	before := m.Config()
	if err := m.Reconfigure(second, Config{Image: "two", PortStart: 30000, PortEnd: 20000}); err == nil {
		t.Fatal("a bad port range was accepted")
	}
	if m.Docker() != first || m.Config().Image != before.Image || m.Config().PortEnd != before.PortEnd {
		t.Errorf("a refused configuration changed the manager: %+v", m.Config())
	}
	if err := m.Reconfigure(nil, Config{Image: "two"}); err == nil {
		t.Error("no error without a client")
	}
	if err := m.Reconfigure(second, Config{Image: "two", PortStart: 31000}); err != nil {
		t.Fatal(err)
	}
	if c := m.Config(); m.Docker() != second || c.Image != "two" || c.PortStart != 31000 || c.PortEnd != 31999 {
		t.Errorf("after Reconfigure: %+v", c)
	}
}
