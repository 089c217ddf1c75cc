package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/wharfhq/wharf/integration/wharftest"
)

// BenchmarkIsolationCost measures what Wharf's seccomp profile, firewall
// rules and watchdog cost, against a node in the same run that uses Docker's
// default profile and neither rules nor watchdog. Requests alternate between
// the two nodes, so load on the machine hits both alike. Run with -benchtime 1x.
func BenchmarkIsolationCost(b *testing.B) {
	ctx := context.Background()
	start := func(args ...string) node {
		wn, err := wharftest.Run(ctx, wharftest.WithArgs(append([]string{"--pool-size", "4", "--log-level", "warn"}, args...)...))
		wharftest.CleanupNode(b, wn)
		if err != nil {
			b.Fatal(err)
		}
		return node{wn, b}
	}
	hard := start()
	base := start("--seccomp-profile", "engine-default", "--firewall=false", "--health-interval", "0")
	const warmN, coldN = 1000, 20
	for i := 0; i < b.N; i++ {
		for _, n := range []node{hard, base} {
			n.tenant(fmt.Sprintf("warm%d", i))
			n.must("GET", fmt.Sprintf("/run/warm%d/f", i), "", nil, 200)
		}
		hardURL, baseURL := hard.URL+fmt.Sprintf("/run/warm%d/f", i), base.URL+fmt.Sprintf("/run/warm%d/f", i)
		var hw, bw dist
		for j := 0; j < 200; j++ {
			timeGet(b, hardURL, nil)
			timeGet(b, baseURL, nil)
		}
		for j := 0; j < warmN; j++ {
			hw = append(hw, timeGet(b, hardURL, nil))
			bw = append(bw, timeGet(b, baseURL, nil))
		}
		var hc, bc dist
		for j := 0; j < coldN; j++ {
			name := fmt.Sprintf("cold%d-%d", i, j)
			for _, n := range []node{hard, base} {
				n.tenant(name)
				n.poolFull()
			}
			hc = append(hc, timeGet(b, hard.URL+"/run/"+name+"/f", nil))
			bc = append(bc, timeGet(b, base.URL+"/run/"+name+"/f", nil))
		}
		b.ReportMetric(ms(hw.q(0.5)), "hardened-warm-p50-ms")
		b.ReportMetric(ms(bw.q(0.5)), "baseline-warm-p50-ms")
		b.ReportMetric(float64(hw.q(0.5))/float64(bw.q(0.5)), "warm-p50-ratio")
		b.ReportMetric(float64(hw.q(0.99))/float64(bw.q(0.99)), "warm-p99-ratio")
		b.ReportMetric(ms(hc.q(0.5)), "hardened-cold-p50-ms")
		b.ReportMetric(ms(bc.q(0.5)), "baseline-cold-p50-ms")
		b.ReportMetric(float64(hc.q(0.5))/float64(bc.q(0.5)), "cold-p50-ratio")
	}
	b.Log("warm: 1000 sequential requests per node, alternating; cold: 20 new tenants per node, alternating, pools full before each")
}
