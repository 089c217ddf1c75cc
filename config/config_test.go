package config

import (
	"io"
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
