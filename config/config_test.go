package config

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaultsEnvAndFlags(t *testing.T) {
	c, err := Load(CmdServe, nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.PoolSize != 4 || c.DataDir != "./wharf-data" || c.ContainerMemory != 128<<20 {
		t.Fatalf("defaults: %+v", c)
	}
	if c.APITimeout != 30*time.Second || c.ContainerLogSize != 1<<20 || c.ContainerLogFiles != 2 ||
		c.LogHistoryLines != 1000 || c.LogHistoryAge != 7*24*time.Hour || c.LogRate != 100 {
		t.Fatalf("log and API defaults: %+v", c)
	}
	c, err = Load(CmdServe, []string{"--pool-size", "7"},
		env(map[string]string{"WHARF_POOL_SIZE": "2", "WHARF_LISTEN": "127.0.0.1:9", "WHARF_CONTAINER_MEMORY": "256m"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.PoolSize != 7 {
		t.Fatalf("flag must win over env: pool size %d", c.PoolSize)
	}
	if c.Listen != "127.0.0.1:9" || c.ContainerMemory != 256<<20 {
		t.Fatalf("env not applied: %+v", c)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad env number", nil, map[string]string{"WHARF_POOL_SIZE": "many"}, "WHARF_POOL_SIZE"},
		{"bad size", []string{"--container-memory", "lots"}, nil, "size like 128m"},
		{"negative pool", []string{"--pool-size", "-1"}, nil, "--pool-size"},
		{"bad listen", []string{"--listen", "nowhere"}, nil, "--listen"},
		{"bad node id", []string{"--node-id", "Bad_ID"}, nil, "--node-id"},
		{"tiny memory", []string{"--container-memory", "1m"}, nil, "at least 16m"},
		{"timeout above max", []string{"--function-timeout", "10m"}, nil, "exceeds"},
		{"short admin token", []string{"--admin-token", "abc"}, nil, "at least 16"},
		{"bad log level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"stray argument", []string{"extra"}, nil, "unexpected argument"},
		{"unknown flag", []string{"--nope"}, nil, "not defined"},
		{"zero log files", []string{"--container-log-files", "0"}, nil, "--container-log-files"},
		{"tiny log size", []string{"--container-log-size", "1k"}, nil, "at least 64k"},
		{"negative history", []string{"--log-history-lines", "-1"}, nil, "--log-history-lines"},
		{"zero log rate", []string{"--log-rate", "0"}, nil, "--log-rate"},
		{"zero api timeout", []string{"--api-timeout", "0s"}, nil, "--api-timeout"},
		{"zero history age", []string{"--log-history-age", "0s"}, nil, "--log-history-age"},
		{"negative refill hold", []string{"--pool-refill-hold", "-1s"}, nil, "--pool-refill-hold"},
		{"huge refill hold", []string{"--pool-refill-hold", "1m"}, nil, "--pool-refill-hold"},
		{"negative follow delay", []string{"--log-follow-delay", "-1s"}, nil, "--log-follow-delay"},
		{"huge follow delay", []string{"--log-follow-delay", "1m"}, nil, "--log-follow-delay"},
		{"unknown container network", []string{"--container-network", "bridge"}, nil, "--container-network"},
		{"gc off", []string{"--gc-percent", "-1"}, nil, "--gc-percent"},
		{"tiny gc memory limit", nil, map[string]string{"WHARF_GC_MEMORY_LIMIT": "1m"}, "--gc-memory-limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(CmdServe, c.args, env(c.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestHelpListsEveryEnvVar(t *testing.T) {
	var sb strings.Builder
	var c Config
	fs := FlagSet(CmdServe, &c, &sb)
	fs.PrintDefaults()
	for _, v := range []string{"WHARF_MONGO_URI", "WHARF_LISTEN", "WHARF_ADMIN_TOKEN", "WHARF_POOL_SIZE", "WHARF_DATA_DIR"} {
		if !strings.Contains(sb.String(), v) {
			t.Fatalf("help does not mention %s", v)
		}
	}
}

func TestStoreCommandFlags(t *testing.T) {
	c, err := Load(CmdStore, []string{"--listen", "127.0.0.1:27018"}, env(nil), io.Discard)
	if err != nil || c.StoreListen != "127.0.0.1:27018" {
		t.Fatalf("store config: %+v %v", c, err)
	}
	if c.ShutdownTimeout != 0 || time.Duration(0) != c.ClaimTimeout {
		t.Fatal("store command must not carry serve's settings")
	}
}

// Invariant: a config file sits beneath env and flags, and a bad file fails
// with the file and key named, changing nothing.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/wharf.yaml"
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("pool-size: 9\nlisten: 127.0.0.1:7000\nidle-timeout: 5m\ncontainer-memory: 256m\nmetrics-tenant-label: true\n")
	c, err := Load(CmdServe, []string{"--config", path, "--listen", "127.0.0.1:7001"},
		env(map[string]string{"WHARF_IDLE_TIMEOUT": "7m"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.PoolSize != 9 || c.ContainerMemory != 256<<20 || !c.MetricsTenantLabel {
		t.Fatalf("file values not applied: %+v", c)
	}
	if c.Listen != "127.0.0.1:7001" || c.IdleTimeout != 7*time.Minute {
		t.Fatalf("flag/env must win over the file: listen %s idle %v", c.Listen, c.IdleTimeout)
	}
	// WHARF_CONFIG names the file too.
	c, err = Load(CmdServe, nil, env(map[string]string{"WHARF_CONFIG": path}), io.Discard)
	if err != nil || c.PoolSize != 9 {
		t.Fatalf("WHARF_CONFIG: %v %+v", err, c.PoolSize)
	}
	for _, bad := range []struct{ body, want string }{
		{"pool-sise: 3\n", `unknown setting "pool-sise"`},
		{"pool-size: many\n", "pool-size"},
		{"pool-size: [1, 2\n", "wharf.yaml"},
		{"listen:\n", "has no value"},
	} {
		write(bad.body)
		if _, err := Load(CmdServe, []string{"--config", path}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("file %q: err %v, want it to mention %q", bad.body, err, bad.want)
		}
	}
	if _, err := Load(CmdServe, []string{"--config", dir + "/missing.yaml"}, env(nil), io.Discard); err == nil {
		t.Fatal("a missing config file must be an error")
	}
}

func TestEffectiveMaxContainers(t *testing.T) {
	base := Config{ContainerMemory: 128 << 20, PoolSize: 4, PoolMax: 16}
	cases := []struct {
		name string
		c    Config
		mem  int64
		want int
	}{
		{"explicit wins", Config{MaxContainers: 7, ContainerMemory: 128 << 20}, 24 << 30, 7},
		{"24 GiB at 128 MiB less the pool", base, 24 << 30, 24<<30*8/10/(128<<20) - 16},
		{"tiny machine still gets one", base, 256 << 20, 1},
		{"unknown memory", base, 0, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.c.EffectiveMaxContainers(c.mem); got != c.want {
				t.Fatalf("got %d, want %d", got, c.want)
			}
		})
	}
}

func TestBuildFlags(t *testing.T) {
	c, err := Load(CmdServe, nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := c.Build
	if b.NPMRegistry != "https://registry.npmjs.org/" || b.Timeout != 5*time.Minute || b.MaxClosure != 200<<20 ||
		b.Concurrency != 1 || b.Attempts != 3 || b.Lease != time.Minute {
		t.Fatalf("serve build defaults: %+v", b)
	}
	c, err = Load(CmdBuilder, []string{"--mongo-uri", "mongodb://127.0.0.1:27017", "--builders", "3", "--build-lease", "5s"},
		env(map[string]string{"WHARF_NPM_REGISTRY": "http://127.0.0.1:4873/"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Build.Concurrency != 3 || c.Build.Lease != 5*time.Second || c.Build.NPMRegistry != "http://127.0.0.1:4873/" {
		t.Fatalf("builder config: %+v", c.Build)
	}
	if !c.Firewall {
		t.Fatal("a builder confines its build network by default")
	}
	c, err = Load(CmdBuilder, []string{"--mongo-uri", "mongodb://127.0.0.1:27017", "--firewall=false"}, env(nil), io.Discard)
	if err != nil || c.Firewall {
		t.Fatalf("builder --firewall=false: %v %v", err, c.Firewall)
	}
	for _, tc := range []struct {
		cmd  string
		args []string
		want string
	}{
		{CmdBuilder, nil, "--mongo-uri is required"},
		{CmdBuilder, []string{"--mongo-uri", "mongodb://x", "--builders", "0"}, "--builders"},
		{CmdServe, []string{"--npm-registry", "registry.npmjs.org"}, "--npm-registry"},
		{CmdServe, []string{"--build-lease", "1s"}, "--build-lease"},
		{CmdServe, []string{"--max-closure", "10k"}, "--max-closure"},
		{CmdServe, []string{"--build-attempts", "0"}, "--build-attempts"},
	} {
		if _, err := Load(tc.cmd, tc.args, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: err = %v, want %q", tc.cmd, tc.args, err, tc.want)
		}
	}
}
