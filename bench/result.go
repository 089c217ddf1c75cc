package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Figure is one measured quantity beside its same-run baseline.
type Figure struct {
	Group string  `json:"group"` // warm, cold, burst, density, modules
	Name  string  `json:"name"`
	Unit  string  `json:"unit"`
	Wharf float64 `json:"wharf"`
	// Baseline is the same quantity measured without Wharf in the same run;
	// nil when the figure has none.
	Baseline     *float64 `json:"baseline,omitempty"`
	BaselineName string   `json:"baseline_name,omitempty"`
	// Ratio is Wharf / Baseline.
	Ratio  *float64 `json:"ratio,omitempty"`
	Target string   `json:"target,omitempty"`
	// Pass is nil when the figure has no target.
	Pass *bool  `json:"pass,omitempty"`
	Note string `json:"note,omitempty"`
}

// Target is a pass/fail check on a figure: on its Wharf value, or on its
// ratio to the baseline when OnRatio.
type Target struct {
	AtMost, AtLeast *float64
	OnRatio         bool
}

func atMost(v float64) *Target       { return &Target{AtMost: &v} }
func ratioAtLeast(v float64) *Target { return &Target{AtLeast: &v, OnRatio: true} }
func ptr(v float64) *float64         { return &v }
func (t *Target) value(f Figure) float64 {
	if t.OnRatio {
		if f.Ratio == nil {
			return math.NaN()
		}
		return *f.Ratio
	}
	return f.Wharf
}

// check sets f's Target text and Pass from t (a NaN value fails).
func (t *Target) check(f *Figure) {
	if t == nil {
		return
	}
	v := t.value(*f)
	subject := f.Unit
	if t.OnRatio {
		subject = "ratio"
	}
	var ok bool
	switch {
	case t.AtMost != nil:
		ok = v <= *t.AtMost
		f.Target = fmt.Sprintf("≤ %s %s", num(*t.AtMost), subject)
	case t.AtLeast != nil:
		ok = v >= *t.AtLeast
		f.Target = fmt.Sprintf("≥ %s %s", num(*t.AtLeast), subject)
	}
	f.Pass = &ok
}

// newFigure builds a figure; baseline may be nil.
func newFigure(group, name, unit string, wharf float64, baseline *float64, baselineName string, t *Target) Figure {
	f := Figure{Group: group, Name: name, Unit: unit, Wharf: round(wharf), BaselineName: baselineName}
	if baseline != nil {
		f.Baseline = ptr(round(*baseline))
		if *baseline != 0 {
			f.Ratio = ptr(round(wharf / *baseline))
		}
	}
	t.check(&f)
	return f
}

func round(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	// Four significant digits: enough for any figure here, and stable JSON.
	p := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}

func num(v float64) string { return fmt.Sprintf("%.4g", v) }

// Machine describes where and from what a run was made.
type Machine struct {
	Cores     int    `json:"cores"`
	MemoryMiB int64  `json:"memory_mib"`
	Load      string `json:"load_average"` // /proc/loadavg at the start of the run
	Go        string `json:"go"`
	Node      string `json:"node"`
	Docker    string `json:"docker"`
	Kernel    string `json:"kernel"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
}

// Results is what a run writes to results.json.
type Results struct {
	Machine  Machine           `json:"machine"`
	Settings map[string]string `json:"settings"`
	Seconds  float64           `json:"seconds"`
	Figures  []Figure          `json:"figures"`
	Failed   []string          `json:"failed_groups,omitempty"` // groups that could not be measured, with why
}

// WriteJSON writes r to path, atomically.
func (r Results) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".results-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// PrintTable writes the figures as an aligned table.
func (r Results) PrintTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tunit\twharf\tbaseline\tratio\ttarget\tresult")
	for _, f := range r.Figures {
		base, ratio, pass := "", "", ""
		if f.Baseline != nil {
			base = num(*f.Baseline) + " (" + f.BaselineName + ")"
		}
		if f.Ratio != nil {
			ratio = num(*f.Ratio)
		}
		if f.Pass != nil {
			pass = map[bool]string{true: "pass", false: "FAIL"}[*f.Pass]
		}
		fmt.Fprintf(tw, "%s: %s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Group, f.Name, f.Unit, num(f.Wharf), base, ratio, f.Target, pass)
	}
	tw.Flush()
	for _, g := range r.Failed {
		fmt.Fprintln(w, "not measured:", g)
	}
	fmt.Fprintf(w, "%d cores, %d MiB, load %s, go %s, node %s, docker %s, commit %s, %s, %s\n",
		r.Machine.Cores, r.Machine.MemoryMiB, r.Machine.Load, r.Machine.Go, r.Machine.Node, r.Machine.Docker,
		r.Machine.Commit, r.Machine.Date, (time.Duration(r.Seconds) * time.Second).String())
}

// Failures lists the names of figures whose target was missed.
func (r Results) Failures() []string {
	var out []string
	for _, f := range r.Figures {
		if f.Pass != nil && !*f.Pass {
			out = append(out, f.Group+": "+f.Name)
		}
	}
	return out
}

func trimLine(s string) string { return strings.TrimSpace(strings.SplitN(s, "\n", 2)[0]) }
