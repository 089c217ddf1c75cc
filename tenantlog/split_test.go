package tenantlog

import (
	"slices"
	"testing"
)

func TestLineWriter(t *testing.T) {
	cases := []struct {
		name   string
		writes []string
		flush  bool
		want   []string
	}{
		{"one line", []string{"a\n"}, false, []string{"a"}},
		{"split across writes", []string{"he", "llo\nwor", "ld\n"}, false, []string{"hello", "world"}},
		{"several in one write", []string{"a\nb\n\nc\n"}, false, []string{"a", "b", "", "c"}},
		{"no newline: held until flush", []string{"tail"}, false, nil},
		{"flush emits the tail", []string{"x\ntail"}, true, []string{"x", "tail"}},
		{"flush with nothing held", []string{"x\n"}, true, []string{"x"}},
		{"long line cut, rest dropped", []string{"0123456789abc\nok\n"}, false, []string{"01234567", "ok"}},
		{"long line across writes", []string{"01234", "56789", "abc\n", "ok\n"}, false, []string{"01234567", "ok"}},
		{"exactly the max", []string{"01234567\n"}, false, []string{"01234567"}},
		{"overlong tail flushed cut", []string{"0123456789"}, true, []string{"01234567"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			w := newLineWriter(8, func(b []byte) { got = append(got, string(b)) })
			for _, s := range c.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if c.flush {
				w.Flush()
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}
