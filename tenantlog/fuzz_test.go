package tenantlog

import (
	"bytes"
	"testing"
	"time"
	"unicode/utf8"
)

// Whatever a container prints, parsing never panics and yields a line that
// is safe to store and stream: valid UTF-8, bounded, a known level, and a
// function tag only when it is a valid function name.
func FuzzParseOutput(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw []byte, stderr bool) {
		l := ParseStdout(raw, now)
		if stderr {
			l = ParseStderr(raw, now)
		}
		if !utf8.ValidString(l.Message) || len(l.Message) > MaxMessageBytes+len("... [cut at 16 KiB]") {
			t.Fatalf("message of %d bytes, valid UTF-8 %v", len(l.Message), utf8.ValidString(l.Message))
		}
		if l.Function != "" && !functionNameRE.MatchString(l.Function) {
			t.Fatalf("function tag %q", l.Function)
		}
		if !runnerLevels[l.Level] && l.Level != LevelStdout && l.Level != LevelStderr {
			t.Fatalf("level %q", l.Level)
		}
		if d := l.Time.Sub(now); d > maxSkew || d < -maxSkew {
			t.Fatalf("time %v is %v from the node's", l.Time, d)
		}
	})
}

// Splitting never loses or invents bytes of lines that fit, and never emits
// a line longer than the maximum, however the stream is cut into writes.
func FuzzLineWriter(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		const max = 16
		var got [][]byte
		w := newLineWriter(max, func(b []byte) { got = append(got, append([]byte(nil), b...)) })
		step := int(cut)%7 + 1
		for i := 0; i < len(data); i += step {
			w.Write(data[i:min(i+step, len(data))])
		}
		w.Flush()
		want := bytes.Split(data, []byte("\n"))
		if len(data) > 0 && data[len(data)-1] == '\n' {
			want = want[:len(want)-1]
		}
		if len(data) == 0 {
			want = nil
		}
		if len(got) != len(want) {
			t.Fatalf("%d lines, want %d", len(got), len(want))
		}
		for i := range want {
			exp := want[i]
			if len(exp) > max {
				exp = exp[:max]
			}
			if !bytes.Equal(got[i], exp) {
				t.Fatalf("line %d = %q, want %q", i, got[i], exp)
			}
		}
	})
}
