package httpurl

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	strict := Rules{NoQuery: true, NoUserInfo: true}
	for i, tc := range []struct {
		v     string
		rules Rules
		err   string // "" when accepted
	}{
		{"http://127.0.0.1:13305", strict, ""},
		{"https://thon.example.org/v1", strict, ""},
		{"http://[::1]:8080/api/v1/", strict, ""},
		{"http://h/x?a=1#f", Rules{}, ""},
		{"http://u:p@h/", Rules{NoQuery: true}, ""},
		{"ftp://x", Rules{}, `"ftp://x" is not an http(s) URL`},
		{"127.0.0.1:13305", Rules{}, `"127.0.0.1:13305" is not an http(s) URL`},
		{"http://", Rules{}, `"http://" is not an http(s) URL`},
		{"/v1", Rules{}, `"/v1" is not an http(s) URL`},
		{"http://h:x:y/%zz", Rules{}, `"http://h:x:y/%zz" is not an http(s) URL`},
		{"", Rules{}, `"" is not an http(s) URL`},
		{"http://h/?a=1", strict, `"http://h/?a=1" must not carry a query or fragment`},
		{"http://h/?", strict, `"http://h/?" must not carry a query or fragment`},
		{"http://h/#top", strict, `"http://h/#top" must not carry a query or fragment`},
		{"http://u:p@h/", strict, `"http://u:p@h/" must not carry user info`},
		{"https://idp.example.org/realms/x", Rules{HTTPSOrLoopback: true}, ""},
		{"http://127.0.0.1:8080/", Rules{HTTPSOrLoopback: true}, ""},
		{"http://127.9.0.1/", Rules{HTTPSOrLoopback: true}, ""},
		{"http://[::1]:8080/", Rules{HTTPSOrLoopback: true}, ""},
		{"http://LocalHost:9000", Rules{HTTPSOrLoopback: true}, ""},
		{"http://idp.example.org/", Rules{HTTPSOrLoopback: true}, `"http://idp.example.org/" must use https (plain http only for a loopback address)`},
		{"http://10.0.0.1/", Rules{HTTPSOrLoopback: true}, `"http://10.0.0.1/" must use https (plain http only for a loopback address)`},
		{"http://localhost.example.org/", Rules{HTTPSOrLoopback: true}, `"http://localhost.example.org/" must use https (plain http only for a loopback address)`},
	} {
		u, err := Parse(tc.v, tc.rules)
		if tc.err == "" {
			if err != nil || u == nil {
				t.Errorf("case %d: %q: %v", i, tc.v, err)
			}
			if Check(tc.v, tc.rules) != nil {
				t.Errorf("case %d: Check refuses what Parse accepts", i)
			}
			continue
		}
		if err == nil || err.Error() != tc.err {
			t.Errorf("case %d: %q: %v, want %s", i, tc.v, err, tc.err)
		}
		if !errors.Is(err, ErrInvalid) || !errors.Is(Check(tc.v, tc.rules), ErrInvalid) {
			t.Errorf("case %d: %v does not match ErrInvalid", i, err)
		}
	}
}
