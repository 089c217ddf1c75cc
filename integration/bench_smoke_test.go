package integration

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/bench"
	"github.com/wharfhq/wharf/engine"
)

// TestBenchSmoke runs `wharfbench -quick`: every figure group is measured
// (small counts) and written with its unit, and the run leaves no container
// behind. It checks the harness, not the performance targets.
func TestBenchSmoke(t *testing.T) {
	t.Parallel()
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..")
	dir := t.TempDir()
	bin := filepath.Join(dir, "wharfbench")
	build := exec.Command("go", "build", "-o", bin, "./bench/cmd/wharfbench")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build wharfbench: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "results.json")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-quick", "-out", out)
	cmd.Dir = repo
	stdout, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("wharfbench -quick: %v\n%s\n%s", err, stdout, stderr)
	}
	if !strings.HasPrefix(string(stdout), "figure") || !strings.Contains(string(stdout), "wrote "+out) {
		t.Fatalf("no table printed:\n%s", stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res bench.Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Machine.Cores < 1 || res.Machine.Go == "" || res.Machine.Node == "" || res.Machine.Docker == "" || res.Machine.Commit == "" {
		t.Errorf("machine info incomplete: %+v", res.Machine)
	}
	seen := map[string]int{}
	for _, f := range res.Figures {
		seen[f.Group]++
		if f.Unit == "" || math.IsNaN(f.Wharf) || math.IsInf(f.Wharf, 0) {
			t.Errorf("figure %s: %s: bad value %v %q", f.Group, f.Name, f.Wharf, f.Unit)
		}
		if f.Baseline != nil && *f.Baseline <= 0 {
			t.Errorf("figure %s: %s: baseline %v not measured", f.Group, f.Name, *f.Baseline)
		}
	}
	for _, g := range bench.Groups {
		if seen[g] == 0 {
			t.Errorf("no figure of group %s in %s", g, b)
		}
	}
	eng, err := engine.NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	for _, id := range strings.Split(res.Settings["node_labels"], ",") {
		if id == "" {
			t.Fatalf("results name no node labels: %v", res.Settings)
		}
		left, err := eng.ListContainers(context.Background(), map[string]string{engine.LabelNode: id})
		if err != nil || len(left) > 0 {
			t.Errorf("wharfbench left %d containers of %s (%v)", len(left), id, err)
		}
	}
}
