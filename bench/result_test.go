package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewFigureTargets(t *testing.T) {
	for _, c := range []struct {
		name      string
		wharf     float64
		base      *float64
		target    *Target
		wantRatio *float64
		wantPass  *bool
		wantText  string
	}{
		{"no target", 3, nil, nil, nil, nil, ""},
		{"at most, met", 15, nil, atMost(15), nil, boolPtr(true), "≤ 15 ms"},
		{"at most, missed", 15.01, nil, atMost(15), nil, boolPtr(false), "≤ 15 ms"},
		{"ratio at least, met", 500, ptr(1000), ratioAtLeast(0.5), ptr(0.5), boolPtr(true), "≥ 0.5 ratio"},
		{"ratio at least, missed", 499, ptr(1000), ratioAtLeast(0.5), ptr(0.499), boolPtr(false), "≥ 0.5 ratio"},
		{"ratio with a zero baseline fails", 1, ptr(0), ratioAtLeast(0.5), nil, boolPtr(false), "≥ 0.5 ratio"},
		{"NaN fails", math.NaN(), nil, atMost(1), nil, boolPtr(false), "≤ 1 ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFigure("g", "n", "ms", c.wharf, c.base, "b", c.target)
			if (f.Ratio == nil) != (c.wantRatio == nil) || (f.Ratio != nil && *f.Ratio != *c.wantRatio) {
				t.Errorf("ratio %v, want %v", deref(f.Ratio), deref(c.wantRatio))
			}
			if (f.Pass == nil) != (c.wantPass == nil) || (f.Pass != nil && *f.Pass != *c.wantPass) {
				t.Errorf("pass %v, want %v", f.Pass, c.wantPass)
			}
			if f.Target != c.wantText {
				t.Errorf("target %q, want %q", f.Target, c.wantText)
			}
		})
	}
}

func boolPtr(b bool) *bool { return &b }

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestRound(t *testing.T) {
	for in, want := range map[float64]float64{0: 0, 1234567: 1235000, 0.123456: 0.1235, -2.34567: -2.346, 15: 15} {
		if got := round(in); got != want {
			t.Errorf("round(%v) = %v, want %v", in, got, want)
		}
	}
	if !math.IsNaN(round(math.NaN())) {
		t.Error("round(NaN) is not NaN")
	}
}

func TestParseOnly(t *testing.T) {
	got, err := ParseOnly(" warm,cold ")
	if err != nil || strings.Join(got, ",") != "warm,cold" {
		t.Errorf("ParseOnly: %v %v", got, err)
	}
	if got, err := ParseOnly(""); err != nil || got != nil {
		t.Errorf("empty: %v %v", got, err)
	}
	if _, err := ParseOnly("warm,latency"); err == nil || !strings.Contains(err.Error(), `"latency"`) {
		t.Errorf("unknown group: %v", err)
	}
}

func TestParseEnv(t *testing.T) {
	got, err := ParseEnv(" GOGC=400, GOMAXPROCS=1 ,GODEBUG=a=1")
	if err != nil || !slices.Equal(got, []string{"GOGC=400", "GOMAXPROCS=1", "GODEBUG=a=1"}) {
		t.Fatalf("%q %v", got, err)
	}
	if got, err := ParseEnv(""); got != nil || err != nil {
		t.Fatalf("empty: %q %v", got, err)
	}
	for _, bad := range []string{"GOGC", "=1", "A B=1", "GOGC=1,"} {
		if _, err := ParseEnv(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDist(t *testing.T) {
	var d dist
	if d.q(0.5) != 0 || d.max() != 0 {
		t.Error("empty dist is not zero")
	}
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	// Nearest rank: of 1..100 ms, p50 is 50 ms and p99 is 99 ms, not the largest.
	if d.q(0.5) != 50*time.Millisecond || d.q(0.99) != 99*time.Millisecond || d.max() != 100*time.Millisecond {
		t.Errorf("q50 %v q99 %v max %v", d.q(0.5), d.q(0.99), d.max())
	}
	// Of 30, p99 is the largest; of 3, p50 is the middle one.
	if got := d[70:].q(0.99); got != 30*time.Millisecond {
		t.Errorf("q99 of 30 = %v", got)
	}
	if got := (dist{3, 1, 2}).q(0.5); got != 2 {
		t.Errorf("q50 of 3 = %v", got)
	}
	if median([]float64{3, 1, 2}) != 2 || median(nil) != 0 {
		t.Error("median")
	}
}

// The overhead is the median of each round's difference, not the difference
// of the medians: a round the whole machine was slow in cancels out.
func TestMedianDiff(t *testing.T) {
	l := loadResults{
		"wharf": {1: {{P50ms: 0.30}, {P50ms: 0.90}, {P50ms: 0.20}}},
		"bare":  {1: {{P50ms: 0.10}, {P50ms: 0.80}, {P50ms: 0.15}}},
	}
	if got := l.medianDiff(p50of, "wharf", "bare", 1); math.Abs(got-0.1) > 1e-9 {
		t.Errorf("median of the differences = %v, want 0.1", got)
	}
	if got := l.median(p50of, "wharf", 1) - l.median(p50of, "bare", 1); math.Abs(got-0.1) < 1e-9 {
		t.Errorf("the difference of the medians (%v) should differ here", got)
	}
	if got := l.medianDiff(p50of, "wharf", "none", 1); got != 0 {
		t.Errorf("no rounds: %v", got)
	}
}

func TestResultsOutput(t *testing.T) {
	r := Results{Machine: Machine{Cores: 2}, Figures: []Figure{
		newFigure("warm", "16 conns throughput", "req/s", 400, ptr(1000), "bare", ratioAtLeast(0.5)),
		newFigure("cold", "p50", "ms", 5, nil, "", atMost(15)),
	}, Failed: []string{"burst: engine gone"}}
	var buf bytes.Buffer
	r.PrintTable(&buf)
	out := buf.String()
	for _, want := range []string{"figure", "warm: 16 conns throughput", "1000 (bare)", "0.4", "FAIL", "pass", "not measured: burst: engine gone"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if got := r.Failures(); len(got) != 1 || got[0] != "warm: 16 conns throughput" {
		t.Errorf("failures %v", got)
	}
	path := filepath.Join(t.TempDir(), "results.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var back Results
	if err := json.Unmarshal(b, &back); err != nil || len(back.Figures) != 2 || *back.Figures[0].Ratio != 0.4 {
		t.Errorf("round trip: %v %s", err, b)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestRequiringCode(t *testing.T) {
	got := requiringCode([]string{"ms", "debug"})
	want := "const m0 = require(\"ms\");\nconst m1 = require(\"debug\");\n" +
		"module.exports = function (ctx, cb) { cb(null, {host: require('os').hostname(), n: [typeof m0, typeof m1]}) }"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
