// Package tenantlog carries the output of tenants' functions from their
// containers to the people who wrote them: it follows each tenant
// container's output through the engine, parses the runner's tagged lines,
// rate-limits each tenant, fans lines out to live subscribers (the logs
// endpoint's SSE streams) and keeps a bounded recent history in the store so
// that any node of a cluster can serve it.
//
// Lines are attributed to a tenant by the container they come from, never by
// what a line says: a container serves one tenant for life, so whatever its
// code prints (including lines imitating the runner's tags) can only ever
// land in that tenant's own log.
package tenantlog

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wharfhq/wharf/store"
)

// Levels of lines. The runner writes the console levels and "system"
// (its dropped-lines notices); the node adds stdout/stderr for untagged
// output and "system" for its own notices.
const (
	LevelStdout = "stdout"
	LevelStderr = "stderr"
	LevelSystem = "system"
)

// Limits of one line.
const (
	// MaxMessageBytes caps a message kept or streamed; the runner already
	// cuts console messages at 8192 characters.
	MaxMessageBytes = 16 << 10
	// MaxRawLine caps a raw output line read from a container; the rest of a
	// longer line is discarded.
	MaxRawLine = 64 << 10
	// maxSkew bounds how far a record's own time may be from the node's clock
	// before the node's time replaces it (a forged or broken timestamp must
	// not pin a line at the top of the history).
	maxSkew      = time.Minute
	maxRequestID = 128
)

var (
	runnerLevels   = map[string]bool{"log": true, "info": true, "debug": true, "warn": true, "error": true, LevelSystem: true}
	functionNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`)
)

// runnerRecord is the JSON line the runner writes for each console call.
type runnerRecord struct {
	T   *string `json:"t"`
	Lvl *string `json:"lvl"`
	Fn  *string `json:"fn"`
	Rid *string `json:"rid"`
	Msg *string `json:"msg"`
}

// ParseStdout turns one line of a container's stdout into a log line. A
// well-formed runner record keeps its time, level, function and request id;
// anything else (code writing to process.stdout itself) becomes an untagged
// "stdout" line holding the raw text.
func ParseStdout(raw []byte, now time.Time) store.LogLine {
	raw = bytes.TrimRight(raw, "\r\n")
	if l, ok := parseRecord(raw, now); ok {
		return l
	}
	return store.LogLine{Time: now, Level: LevelStdout, Message: cleanMessage(string(raw))}
}

// runnerStartPrefixes begin the only lines the runner writes before it
// reports ready (each one line). A container is followed from the moment it
// was taken ready, but the engine timestamps output when it reads it, so
// one of these can arrive late: they are never a tenant's.
var runnerStartPrefixes = [][]byte{
	[]byte("[wharf-runner] listening on "),
	[]byte("[wharf-runner] warm-up failed"),
	[]byte("[wharf-runner] warmed up in "),
}

// IsRunnerStart tells whether a stderr line is one of the runner's own
// start-up lines.
func IsRunnerStart(raw []byte) bool {
	for _, p := range runnerStartPrefixes {
		if bytes.HasPrefix(raw, p) {
			return true
		}
	}
	return false
}

// ParseStderr turns one line of a container's stderr (the runner's own
// diagnostics, e.g. an uncaught exception's stack) into an untagged line.
func ParseStderr(raw []byte, now time.Time) store.LogLine {
	return store.LogLine{Time: now, Level: LevelStderr, Message: cleanMessage(string(bytes.TrimRight(raw, "\r\n")))}
}

func parseRecord(raw []byte, now time.Time) (store.LogLine, bool) {
	if len(raw) == 0 || raw[0] != '{' {
		return store.LogLine{}, false
	}
	var r runnerRecord
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil || dec.More() {
		return store.LogLine{}, false
	}
	if r.T == nil || r.Lvl == nil || r.Fn == nil || r.Rid == nil || r.Msg == nil {
		return store.LogLine{}, false
	}
	if !runnerLevels[*r.Lvl] || (*r.Fn != "" && !functionNameRE.MatchString(*r.Fn)) || !validRequestID(*r.Rid) {
		return store.LogLine{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, *r.T)
	if err != nil || t.Sub(now) > maxSkew || now.Sub(t) > maxSkew {
		t = now
	}
	return store.LogLine{Time: t.UTC(), Function: *r.Fn, RequestID: *r.Rid, Level: *r.Lvl, Message: cleanMessage(*r.Msg)}, true
}

// validRequestID: what the proxy sends (echo's request ids) or a runner
// generated UUID; short and printable in any case.
func validRequestID(s string) bool {
	if len(s) > maxRequestID {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

// cleanMessage makes a message safe to store and stream: valid UTF-8, at
// most MaxMessageBytes (cut on a character boundary, saying so).
func cleanMessage(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxMessageBytes {
		return s
	}
	cut := MaxMessageBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "... [cut at 16 KiB]"
}
