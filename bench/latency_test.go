// Package bench measures Wharf against baselines taken in the same run.
// Run with `make bench`; benchmarks are not part of `make test`.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/integration/wharftest"
)

const fn = `module.exports = function (ctx, cb) { cb(null, {host: require('os').hostname()}) }`

type node struct {
	*wharftest.Node
	t testing.TB
}

func (n node) must(method, path, token string, body any, want int) []byte {
	r, err := n.Do(method, path, token, body)
	if err != nil || r.Status != want {
		n.t.Fatalf("%s %s: %v %d %s", method, path, err, r.Status, r.Body)
	}
	return r.Body
}

func (n node) tenant(name string) {
	var out struct{ Token string }
	_ = json.Unmarshal(n.must("POST", "/api/v1/tenants", n.AdminToken, map[string]string{"name": name}, 201), &out)
	n.must("PUT", "/api/v1/tenants/"+name+"/functions/f", out.Token, map[string]string{"code": fn}, 201)
}

// poolFull waits until every pooled container is ready, so a cold start
// measures a claim from a warm pool, not a creation.
func (n node) poolFull() {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		r, err := n.Do("GET", "/readyz", "", nil)
		var rz struct {
			Checks map[string]struct{ Ready, Size *int }
		}
		if err == nil && json.Unmarshal(r.Body, &rz) == nil {
			if p := rz.Checks["pool"]; p.Ready != nil && *p.Ready >= *p.Size {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatal("pool never refilled")
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}

func timeGet(t testing.TB, url string, hdr http.Header) time.Duration {
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return d
}

type dist []time.Duration

func (d dist) q(p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkLatency reports, from one run: warm request latency through Wharf
// and straight to the same runner on its bridge IP (the baseline), and the
// first-request latency of new tenants with a warm pool. Run with -benchtime 1x.
func BenchmarkLatency(b *testing.B) {
	ctx := context.Background()
	wn, err := wharftest.Run(ctx, wharftest.WithArgs("--pool-size", "4", "--log-level", "warn"))
	wharftest.CleanupNode(b, wn)
	if err != nil {
		b.Fatal(err)
	}
	n := node{wn, b}
	const warmN, coldN = 2000, 30
	for i := 0; i < b.N; i++ {
		n.tenant(fmt.Sprintf("warm%d", i))
		url := n.URL + fmt.Sprintf("/run/warm%d/f", i)
		var out struct{ Host string }
		_ = json.Unmarshal(n.must("GET", fmt.Sprintf("/run/warm%d/f", i), "", nil, 200), &out)
		eng, err := engine.NewDocker()
		if err != nil {
			b.Fatal(err)
		}
		info, err := eng.InspectContainer(ctx, out.Host)
		eng.Close()
		if err != nil {
			b.Fatal(err)
		}
		direct := fmt.Sprintf("http://%s:8080/api/run/warm%d/f", info.IP, i)
		hdr := http.Header{"X-Wharf-Function": {"f"}, "X-Wharf-Version": {"1"}, "X-Wharf-Request-Id": {"bench"}}

		var viaWharf, viaDirect dist
		for j := 0; j < 200; j++ { // warm both paths' connections and JIT
			timeGet(b, url, nil)
			timeGet(b, direct, hdr)
		}
		for j := 0; j < warmN; j++ { // interleaved, so drift hits both alike
			viaWharf = append(viaWharf, timeGet(b, url, nil))
			viaDirect = append(viaDirect, timeGet(b, direct, hdr))
		}

		var cold dist
		for j := 0; j < coldN; j++ {
			name := fmt.Sprintf("cold%d-%d", i, j)
			n.tenant(name)
			n.poolFull()
			cold = append(cold, timeGet(b, n.URL+"/run/"+name+"/f", nil))
		}
		b.ReportMetric(ms(viaDirect.q(0.5)), "direct-p50-ms")
		b.ReportMetric(ms(viaWharf.q(0.5)), "warm-p50-ms")
		b.ReportMetric(ms(viaWharf.q(0.99)), "warm-p99-ms")
		b.ReportMetric(ms(viaWharf.q(0.5)-viaDirect.q(0.5)), "warm-overhead-p50-ms")
		b.ReportMetric(ms(cold.q(0.5)), "cold-p50-ms")
		b.ReportMetric(ms(cold.q(0.99)), "cold-p99-ms")
		b.ReportMetric(ms(cold[slices.Index(cold, slices.Max(cold))]), "cold-max-ms")
		b.ReportMetric(float64(cold.q(0.5))/float64(viaWharf.q(0.5)), "cold/warm-p50")
	}
	b.Log(strings.TrimSpace("warm and direct: 2000 sequential requests each, interleaved; cold: 30 new tenants, pool full before each"))
}
