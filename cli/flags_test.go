package cli

import (
	"slices"
	"testing"
)

func TestParseInterleaved(t *testing.T) {
	cases := []struct {
		args     []string
		pos      []string
		secrets  []string
		timeout  string
		follow   bool
		usageErr bool
	}{
		{[]string{"hook", "f.js"}, []string{"hook", "f.js"}, nil, "", false, false},
		{[]string{"hook", "f.js", "--secret", "A=1", "--secret=B=2"}, []string{"hook", "f.js"}, []string{"A=1", "B=2"}, "", false, false},
		{[]string{"--timeout", "5s", "hook", "-f", "f.js"}, []string{"hook", "f.js"}, nil, "5s", true, false},
		{[]string{"hook", "--", "-f.js"}, []string{"hook", "-f.js"}, nil, "", false, false},
		{[]string{"hook", "--nope"}, nil, nil, "", false, true},
		{[]string{"hook", "--timeout"}, nil, nil, "", false, true},
	}
	for _, c := range cases {
		fs := newFlags("test")
		var secrets multi
		var timeout string
		var follow bool
		fs.Var(&secrets, "secret", "")
		fs.StringVar(&timeout, "timeout", "", "")
		fs.BoolVar(&follow, "f", false, "")
		pos, err := parse(fs, c.args)
		if c.usageErr {
			if _, ok := err.(errUsage); !ok {
				t.Errorf("%q: err %v, want a usage error", c.args, err)
			}
			continue
		}
		if err != nil || !slices.Equal(pos, c.pos) || !slices.Equal(secrets, c.secrets) || timeout != c.timeout || follow != c.follow {
			t.Errorf("%q: pos %q secrets %q timeout %q follow %v err %v", c.args, pos, secrets, timeout, follow, err)
		}
	}
}

func TestSentence(t *testing.T) {
	cases := map[string]string{
		"cannot reach x":       "Cannot reach x.",
		"Tenant \"a\" exists.": "Tenant \"a\" exists.",
		"":                     "Failed.",
		"two\nlines":           "Two lines.",
		"élan":                 "Élan.",
	}
	for in, want := range cases {
		if got := sentence(in); got != want {
			t.Errorf("sentence(%q) = %q, want %q", in, got, want)
		}
	}
}
