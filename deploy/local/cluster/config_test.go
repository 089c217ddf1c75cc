package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidNameAndNodeID(t *testing.T) {
	for name, ok := range map[string]bool{
		"local": true, "wc1a2b3c": true, "a": true, "x-1": true,
		"": false, "-x": false, "Local": false, "a_b": false, strings.Repeat("a", 25): false,
	} {
		if err := ValidName(name); (err == nil) != ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
	// The longest name still gives node ids wharf serve accepts (<= 32 chars).
	if id := NodeID(strings.Repeat("a", 24), 9); len(id) > 32 {
		t.Errorf("node id %q too long", id)
	}
}

func spec() HAProxySpec {
	return HAProxySpec{Listen: "127.0.0.1:9080", StatsListen: "127.0.0.1:9081",
		Backends: []Backend{{"c-n1", "127.0.0.1:9101"}, {"c-n2", "127.0.0.1:9102"}},
		Check:    HealthCheck{Interval: 200 * time.Millisecond, Fall: 2, Rise: 3}}
}

func TestHAProxyConfig(t *testing.T) {
	cfg, err := HAProxyConfig(spec())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"bind 127.0.0.1:9080",
		"option httpchk GET /readyz",
		"http-check expect status 200",
		"default-server check inter 200ms fastinter 200ms downinter 200ms fall 2 rise 3 observe layer4 error-limit 1 on-error mark-down",
		"timeout check 2000ms", // a slow check is not a failed one, whatever the interval
		"server c-n1 127.0.0.1:9101",
		"server c-n2 127.0.0.1:9102",
		"option redispatch 1",
		"retry-on conn-failure empty-response junk-response 503",
		"http-request disable-l7-retry if !METH_GET",
		"timeout server 330000ms",
		"bind 127.0.0.1:9081",
	} {
		if !strings.Contains(cfg, want+"\n") {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	if !strings.Contains(cfg, "balance roundrobin\n") || strings.Contains(cfg, "balance hash") {
		t.Errorf("default balancing is not round robin:\n%s", cfg)
	}
	haproxyCheck(t, cfg)

	s := spec()
	s.TenantAffinity = true
	cfg, err = HAProxyConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cfg, "balance hash path,regsub(^/api/run/,/run/),field(3,/)\n    hash-type consistent\n") ||
		strings.Contains(cfg, "roundrobin") {
		t.Errorf("tenant affinity config:\n%s", cfg)
	}
	haproxyCheck(t, cfg)
}

// haproxyCheck has HAProxy itself validate cfg, when it is installed.
func haproxyCheck(t *testing.T, cfg string) {
	t.Helper()
	bin, err := findHAProxy()
	if err != nil {
		t.Log("haproxy not installed: config not checked by haproxy -c")
		return
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c rejects the config: %v\n%s", err, out)
	}
}

func TestHAProxyConfigRejects(t *testing.T) {
	cases := map[string]func(*HAProxySpec){
		"no listen":        func(s *HAProxySpec) { s.Listen = "" },
		"no stats":         func(s *HAProxySpec) { s.StatsListen = "" },
		"no backend":       func(s *HAProxySpec) { s.Backends = nil },
		"duplicate":        func(s *HAProxySpec) { s.Backends[1].Name = s.Backends[0].Name },
		"space in name":    func(s *HAProxySpec) { s.Backends[0].Name = "a b" },
		"newline in addr":  func(s *HAProxySpec) { s.Backends[0].Addr = "1.2.3.4:1\nbind :80" },
		"no interval":      func(s *HAProxySpec) { s.Check.Interval = 0 },
		"fall 0":           func(s *HAProxySpec) { s.Check.Fall = 0 },
		"rise 0":           func(s *HAProxySpec) { s.Check.Rise = 0 },
		"tiny interval":    func(s *HAProxySpec) { s.Check.Interval = time.Millisecond },
		"tiny timeout":     func(s *HAProxySpec) { s.Check.Timeout = time.Millisecond },
		"empty backend id": func(s *HAProxySpec) { s.Backends[0].Name = "" },
	}
	for name, mutate := range cases {
		s := spec()
		mutate(&s)
		if _, err := HAProxyConfig(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestNodeEnv(t *testing.T) {
	env := NodeEnv(NodeSpec{ID: "c-n1", Listen: "127.0.0.1:9101", DataDir: "/d/c-n1", MongoURI: "mongodb://127.0.0.1:1/",
		SecretsKey: "k", AdminToken: "t", Image: "wharf-runtime:abc", Extra: map[string]string{"WHARF_POOL_SIZE": "5", "WHARF_IDLE_TIMEOUT": "1m"}})
	want := map[string]string{
		"WHARF_NODE_ID": "c-n1", "WHARF_LISTEN": "127.0.0.1:9101", "WHARF_DATA_DIR": "/d/c-n1",
		"WHARF_MONGO_URI": "mongodb://127.0.0.1:1/", "WHARF_SECRETS_KEY": "k", "WHARF_ADMIN_TOKEN": "t",
		"WHARF_IMAGE": "wharf-runtime:abc", "WHARF_LOG_FORMAT": "json", "WHARF_POOL_SIZE": "5", "WHARF_IDLE_TIMEOUT": "1m",
	}
	if len(env) != len(want) {
		t.Fatalf("env %v", envList(env))
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
}

const statsCSV = `# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,
wharf,FRONTEND,,,0,2,4096,120,1,2,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,3,,
nodes,c-n1,0,0,0,1,,70,1,2,,0,,0,0,2,1,UP,1,1,0,0,0,5,0,,1,3,1,,70,,2,0,,2,L7OK,
nodes,c-n2,0,0,0,1,,50,1,2,,0,,3,1,0,0,DOWN,1,1,0,2,1,1,1,,1,3,2,,50,,2,0,,2,L4CON,
nodes,BACKEND,0,0,0,2,410,120,1,2,0,0,,3,1,2,1,UP,1,2,0,,1,5,0,,1,3,0,,120,,1,0,,3,,
stats,FRONTEND,,,1,1,4096,3,1,2,0,0,0,,,,,OPEN,,,,,,,,,1,4,0,,,,0,1,0,1,,
`

func TestParseStats(t *testing.T) {
	got, err := ParseStats(statsCSV, "nodes")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("servers %v", got)
	}
	n1, n2 := got["c-n1"], got["c-n2"]
	if !n1.Up() || n1.Retries != 2 || n1.Redispatch != 1 || n1.Sessions != 70 || n1.CheckStatus != "L7OK" {
		t.Errorf("c-n1 %+v", n1)
	}
	if n2.Up() || n2.Status != "DOWN" || n2.CheckStatus != "L4CON" || n2.Sessions != 50 {
		t.Errorf("c-n2 %+v", n2)
	}
	for name, in := range map[string]string{
		"empty":      "",
		"no header":  "nodes,c-n1,UP\n",
		"no status":  "# pxname,svname\nnodes,c-n1\n",
		"no servers": strings.Split(statsCSV, "\n")[0] + "\n",
	} {
		if _, err := ParseStats(in, "nodes"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseStats(statsCSV, "other"); err == nil {
		t.Error("unknown backend accepted")
	}
}

func TestServerStateUp(t *testing.T) {
	for status, up := range map[string]bool{"UP": true, "UP 1/2": true, "DOWN": false, "DOWN 1/2": false, "MAINT": false, "no check": false, "": false} {
		if (ServerState{Status: status}).Up() != up {
			t.Errorf("%q: up=%v", status, !up)
		}
	}
}
