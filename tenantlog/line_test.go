package tenantlog

import (
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/store"
)

func TestParseStdout(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	ok := `{"t":"2026-03-04T05:06:06.500Z","lvl":"warn","fn":"hook","rid":"req-1","msg":"hello\nworld"}`
	tagged := store.LogLine{Time: now.Add(-500 * time.Millisecond), Function: "hook", RequestID: "req-1", Level: "warn", Message: "hello\nworld"}
	raw := func(s string) store.LogLine { return store.LogLine{Time: now, Level: LevelStdout, Message: s} }
	cases := []struct {
		name string
		in   string
		want store.LogLine
	}{
		{"runner record", ok, tagged},
		{"runner record with CRLF", ok + "\r\n", tagged},
		{"system notice", `{"t":"2026-03-04T05:06:07Z","lvl":"system","fn":"","rid":"","msg":"3 dropped"}`,
			store.LogLine{Time: now, Level: "system", Message: "3 dropped"}},
		{"plain text", "just text", raw("just text")},
		{"empty line", "", raw("")},
		{"unknown level", `{"t":"2026-03-04T05:06:07Z","lvl":"fatal","fn":"f","rid":"r","msg":"m"}`,
			raw(`{"t":"2026-03-04T05:06:07Z","lvl":"fatal","fn":"f","rid":"r","msg":"m"}`)},
		{"invalid function name", `{"t":"2026-03-04T05:06:07Z","lvl":"log","fn":"../x","rid":"r","msg":"m"}`,
			raw(`{"t":"2026-03-04T05:06:07Z","lvl":"log","fn":"../x","rid":"r","msg":"m"}`)},
		{"request id with spaces", `{"t":"2026-03-04T05:06:07Z","lvl":"log","fn":"f","rid":"a b","msg":"m"}`,
			raw(`{"t":"2026-03-04T05:06:07Z","lvl":"log","fn":"f","rid":"a b","msg":"m"}`)},
		{"extra field", `{"t":"2026-03-04T05:06:07Z","lvl":"log","fn":"f","rid":"r","msg":"m","tenant":"other"}`,
			raw(`{"t":"2026-03-04T05:06:07Z","lvl":"log","fn":"f","rid":"r","msg":"m","tenant":"other"}`)},
		{"missing field", `{"t":"2026-03-04T05:06:07Z","lvl":"log","fn":"f","msg":"m"}`,
			raw(`{"t":"2026-03-04T05:06:07Z","lvl":"log","fn":"f","msg":"m"}`)},
		{"wrong type", `{"t":"2026-03-04T05:06:07Z","lvl":"log","fn":"f","rid":"r","msg":5}`,
			raw(`{"t":"2026-03-04T05:06:07Z","lvl":"log","fn":"f","rid":"r","msg":5}`)},
		{"two values", ok + ok, raw(ok + ok)},
		{"time far in the future is the node's", `{"t":"2999-01-01T00:00:00Z","lvl":"log","fn":"f","rid":"r","msg":"m"}`,
			store.LogLine{Time: now, Function: "f", RequestID: "r", Level: "log", Message: "m"}},
		{"time far in the past is the node's", `{"t":"2001-01-01T00:00:00Z","lvl":"log","fn":"f","rid":"r","msg":"m"}`,
			store.LogLine{Time: now, Function: "f", RequestID: "r", Level: "log", Message: "m"}},
		{"unparseable time is the node's", `{"t":"yesterday","lvl":"log","fn":"f","rid":"r","msg":"m"}`,
			store.LogLine{Time: now, Function: "f", RequestID: "r", Level: "log", Message: "m"}},
		{"invalid UTF-8 is replaced", "bad \xff byte", raw("bad \uFFFD byte")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ParseStdout([]byte(c.in), now)
			if got != c.want {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseStderrAndLongMessages(t *testing.T) {
	now := time.Now().UTC()
	l := ParseStderr([]byte("[wharf-runner] boom\r\n"), now)
	if l.Level != LevelStderr || l.Message != "[wharf-runner] boom" || l.Function != "" || l.Time != now {
		t.Fatalf("stderr line %+v", l)
	}
	// A message past the cap is cut on a character boundary and says so.
	long := strings.Repeat("é", MaxMessageBytes) // 2 bytes each
	l = ParseStdout([]byte(long), now)
	if !strings.HasSuffix(l.Message, "... [cut at 16 KiB]") || len(l.Message) > MaxMessageBytes+32 ||
		!strings.HasPrefix(l.Message, strings.Repeat("é", MaxMessageBytes/2)) {
		t.Fatalf("long message: %d bytes, suffix %q", len(l.Message), l.Message[len(l.Message)-30:])
	}
	exact := strings.Repeat("a", MaxMessageBytes)
	if l := ParseStdout([]byte(exact), now); l.Message != exact {
		t.Fatal("a message of exactly the cap was changed")
	}
}

func TestIsRunnerStart(t *testing.T) {
	cases := map[string]bool{
		"[wharf-runner] listening on 0.0.0.0:8080, functions in /app/functions": true,
		"[wharf-runner] warmed up in 312 ms":                                    true,
		"[wharf-runner] warm-up failed (serving anyway): EROFS":                 true,
		"[wharf-runner] unhandled asynchronous exception (uncaughtException)":   false,
		"listening on 0.0.0.0:8080":                                             false,
		"":                                                                      false,
	}
	for line, want := range cases {
		if got := IsRunnerStart([]byte(line)); got != want {
			t.Errorf("%q: %v, want %v", line, got, want)
		}
	}
}
