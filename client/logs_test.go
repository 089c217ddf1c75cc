package client

import (
	"errors"
	"strings"
	"testing"
)

type ev struct{ event, data string }

func TestReadEvents(t *testing.T) {
	cases := []struct {
		name, in string
		want     []ev
	}{
		{"one event", "event: log\ndata: {\"a\":1}\n\n", []ev{{"log", `{"a":1}`}}},
		{"comments and retry skipped", "retry: 3000\n\n: ping\n\nevent: log\ndata: x\n\n", []ev{{"log", "x"}}},
		{"default name", "data: hello\n\n", []ev{{"message", "hello"}}},
		{"multi-line data", "data: a\ndata: b\n\n", []ev{{"message", "a\nb"}}},
		{"CRLF", "event: log\r\ndata: x\r\n\r\n", []ev{{"log", "x"}}},
		{"no space after colon", "event:end\ndata:{}\n\n", []ev{{"end", "{}"}}},
		{"unterminated last event dropped", "data: a\n\ndata: b\n", []ev{{"message", "a"}}},
		{"event without data dropped", "event: log\n\n", nil},
		{"unknown fields ignored", "id: 7\nfoo: bar\ndata: x\n\n", []ev{{"message", "x"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []ev
			err := ReadEvents(strings.NewReader(c.in), func(e, d string) error { got = append(got, ev{e, d}); return nil })
			if err != nil || len(got) != len(c.want) {
				t.Fatalf("got %v %v, want %v", got, err, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("event %d = %v, want %v", i, got[i], c.want[i])
				}
			}
		})
	}
	stop := errors.New("stop")
	n := 0
	err := ReadEvents(strings.NewReader("data: 1\n\ndata: 2\n\n"), func(string, string) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("emit error: %v after %d events", err, n)
	}
}

func FuzzReadEvents(f *testing.F) {
	f.Fuzz(func(t *testing.T, in string) {
		_ = ReadEvents(strings.NewReader(in), func(e, d string) error {
			if e == "" {
				t.Fatal("event without a name")
			}
			return nil
		})
	})
}

func TestParseURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080":  "http://127.0.0.1:8080",
		"https://wharf.example/": "https://wharf.example",
		" http://h:1/prefix// ":  "http://h:1/prefix",
	} {
		u, err := ParseURL(in)
		if err != nil || u.String() != want {
			t.Errorf("%q: %v %v, want %s", in, u, err, want)
		}
	}
	for _, bad := range []string{"", "127.0.0.1:8080", "ftp://h", "http://", "http://h/?q=1", "http://h/#f", "::"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
