package aws

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// These tests run the instance scripts for real with bash, with the AWS CLI,
// systemctl and the metadata service replaced by local stand-ins that record
// what they were asked (there is no AWS here).

func gzipBase64Len(t *testing.T, b []byte) int {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return base64.StdEncoding.EncodedLen(buf.Len())
}

// stub writes an executable shell script into dir.
func stub(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/bash\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func scriptPath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("files", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startWharfEnv prepares a configuration and a PATH whose `aws` answers
// get-parameter from dir/params/<name> (failing when the file is missing).
func startWharfEnv(t *testing.T, role string) (dir string, env []string) {
	t.Helper()
	dir = t.TempDir()
	for _, d := range []string{"bin", "conf", "run", "params"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "conf", "instance.env"), "ROLE='"+role+"'\nAWS_REGION='eu-west-1'\nSSM_PREFIX='/wharf/prod'\n")
	writeFile(t, filepath.Join(dir, "conf", "wharf.env"), "WHARF_LISTEN='0.0.0.0:8080'\nWHARF_NODE_ID='i-0abc'\n")
	stub(t, filepath.Join(dir, "bin"), "aws", `
echo "aws $*" >> "$STUB_LOG"
name=""
while [ $# -gt 0 ]; do [ "$1" = --name ] && name=$2; shift; done
f="$PARAMS/$(basename "$name")"
[ -f "$f" ] || { echo "ParameterNotFound: $name" >&2; exit 254; }
cat "$f"; echo
`)
	// The fake wharf prints its argument and its WHARF_* environment.
	stub(t, filepath.Join(dir, "bin"), "wharf", `echo "cmd=$1"; env | grep '^WHARF_' | sort`)
	env = append(os.Environ(), "PATH="+filepath.Join(dir, "bin")+":"+os.Getenv("PATH"),
		"WHARF_CONF_DIR="+filepath.Join(dir, "conf"), "WHARF_RUN_DIR="+filepath.Join(dir, "run"),
		"WHARF_BIN="+filepath.Join(dir, "bin", "wharf"), "PARAMS="+filepath.Join(dir, "params"),
		"STUB_LOG="+filepath.Join(dir, "calls.log"))
	return dir, env
}

func runScript(t *testing.T, script string, env []string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", scriptPath(t, script))
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// start-wharf hands wharf the SSM values byte for byte, whatever shell
// characters they hold; falls back to the previous fetch when SSM fails;
// refuses to start with none; refuses a value it cannot carry safely.
func TestStartWharf(t *testing.T) {
	dir, env := startWharfEnv(t, "serve")
	params := filepath.Join(dir, "params")
	uri := `mongodb://wharf:p%40ss$HOME\x@h1:27017,h2:27017/wharf?replicaSet=rs0&tls=true&w=majority`
	writeFile(t, filepath.Join(params, "mongo-uri"), uri)
	writeFile(t, filepath.Join(params, "secrets-key"), strings.Repeat("0f", 32))
	writeFile(t, filepath.Join(params, "admin-token"), "wha_`id` $(id) ; rm -rf /")

	out, err := runScript(t, "start-wharf.sh", env)
	if err != nil {
		t.Fatalf("start-wharf: %v\n%s", err, out)
	}
	for _, want := range []string{"cmd=serve", "WHARF_MONGO_URI=" + uri, "WHARF_SECRETS_KEY=" + strings.Repeat("0f", 32),
		"WHARF_ADMIN_TOKEN=wha_`id` $(id) ; rm -rf /", "WHARF_LISTEN=0.0.0.0:8080", "WHARF_NODE_ID=i-0abc"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("wharf did not get %q:\n%s", want, out)
		}
	}
	st, err := os.Stat(filepath.Join(dir, "run", "secrets.env"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file: %v %v", err, st)
	}

	// SSM fails: the previous fetch is used.
	os.Remove(filepath.Join(params, "admin-token"))
	out, err = runScript(t, "start-wharf.sh", env)
	if err != nil || !strings.Contains(out, "WHARF_ADMIN_TOKEN=wha_`id`") || !strings.Contains(out, "previous start") {
		t.Fatalf("fallback: %v\n%s", err, out)
	}

	// A value with a quote is refused, and with no previous fetch nothing starts.
	os.Remove(filepath.Join(dir, "run", "secrets.env"))
	writeFile(t, filepath.Join(params, "admin-token"), "wha_it's")
	out, err = runScript(t, "start-wharf.sh", env)
	if err == nil || strings.Contains(out, "cmd=") || !strings.Contains(out, "quote") {
		t.Fatalf("a quoted value started wharf: %v\n%s", err, out)
	}
}

// A builder reads only the MongoDB URI and runs `wharf builder`.
func TestStartWharfBuilder(t *testing.T) {
	dir, env := startWharfEnv(t, "builder")
	writeFile(t, filepath.Join(dir, "params", "mongo-uri"), "mongodb://db:27017/wharf")
	out, err := runScript(t, "start-wharf.sh", env)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "cmd=builder\n") || !strings.Contains(out, "WHARF_MONGO_URI=mongodb://db:27017/wharf\n") ||
		strings.Contains(out, "WHARF_SECRETS_KEY") || strings.Contains(out, "WHARF_ADMIN_TOKEN") {
		t.Fatalf("builder got:\n%s", out)
	}
}

// fakeIMDS serves IMDSv2: a token, the instance id, and a target lifecycle
// state that turns to Terminated after terminateAfter reads.
func fakeIMDS(t *testing.T, terminateAfter int64) (*httptest.Server, *atomic.Int64) {
	var reads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/latest/api/token" {
			if r.Method != http.MethodPut || r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
				http.Error(w, "bad token request", http.StatusBadRequest)
				return
			}
			w.Write([]byte("tok123"))
			return
		}
		if r.Header.Get("X-aws-ec2-metadata-token") != "tok123" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/latest/meta-data/instance-id":
			w.Write([]byte("i-0abc"))
		case "/latest/meta-data/autoscaling/target-lifecycle-state":
			if reads.Add(1) > terminateAfter {
				w.Write([]byte("Terminated"))
			} else {
				w.Write([]byte("InService"))
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &reads
}

func lifecycleEnv(t *testing.T, imds string, failCompletes int) (dir string, env []string) {
	t.Helper()
	dir = t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "instance.env"), `ROLE='serve'
AWS_REGION='eu-west-1'
ASG_NAME='wharf-nodes'
HOOK_NAME='wharf-drain'
TARGET_GROUP_ARN='arn:aws:elasticloadbalancing:eu-west-1:123:targetgroup/wharf-nodes/abc'
LISTEN_PORT='8080'
DEREGISTRATION_WAIT='5'
`)
	// complete-lifecycle-action fails the first failCompletes times.
	stub(t, bin, "aws", `
echo "aws $*" >> "$STUB_LOG"
if [ "$2" = complete-lifecycle-action ]; then
  n=$(cat "$STUB_DIR/completes" 2>/dev/null || echo 0); echo $((n+1)) > "$STUB_DIR/completes"
  [ "$n" -ge "$FAIL_COMPLETES" ] || exit 1
fi
exit 0
`)
	stub(t, bin, "systemctl", `echo "systemctl $*" >> "$STUB_LOG"`)
	env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "WHARF_CONF_DIR="+dir, "IMDS_URL="+imds,
		"POLL_SECONDS=0.05", "HEARTBEAT_SECONDS=300", "STUB_LOG="+filepath.Join(dir, "calls.log"), "STUB_DIR="+dir,
		"FAIL_COMPLETES="+strconv.Itoa(failCompletes))
	return dir, env
}

// On termination, in this order: leave the target group, wait for the
// deregistration, stop wharf (its drain), complete the lifecycle action with
// CONTINUE; nothing of it while the instance is in service.
func TestLifecycleAgentDrainsInOrder(t *testing.T) {
	srv, reads := fakeIMDS(t, 3)
	dir, env := lifecycleEnv(t, srv.URL, 0)
	start := time.Now()
	out, err := runScript(t, "lifecycle-agent.sh", env)
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	if reads.Load() < 4 {
		t.Fatalf("the agent acted after %d state reads (the first 3 said InService)", reads.Load())
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls.log"))
	lines := strings.Split(strings.TrimSpace(string(calls)), "\n")
	want := []string{
		"aws elbv2 deregister-targets --region eu-west-1 --target-group-arn arn:aws:elasticloadbalancing:eu-west-1:123:targetgroup/wharf-nodes/abc --targets Id=i-0abc,Port=8080",
		"aws elbv2 wait target-deregistered --region eu-west-1 --target-group-arn arn:aws:elasticloadbalancing:eu-west-1:123:targetgroup/wharf-nodes/abc --targets Id=i-0abc,Port=8080",
		"systemctl stop wharf.service",
		"aws autoscaling complete-lifecycle-action --region eu-west-1 --auto-scaling-group-name wharf-nodes --lifecycle-hook-name wharf-drain --instance-id i-0abc --lifecycle-action-result CONTINUE",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", calls, strings.Join(want, "\n"))
	}
	t.Logf("drained in %v after %d state reads", time.Since(start).Round(time.Millisecond), reads.Load())
}

// A failing complete-lifecycle-action is retried.
func TestLifecycleAgentRetriesCompletion(t *testing.T) {
	srv, _ := fakeIMDS(t, 0)
	dir, env := lifecycleEnv(t, srv.URL, 2)
	out, err := runScript(t, "lifecycle-agent.sh", env)
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls.log"))
	if n := strings.Count(string(calls), "complete-lifecycle-action"); n != 3 {
		t.Fatalf("%d completion attempts, want 3:\n%s", n, calls)
	}
}

// egress-firewall adds one REJECT rule per blocked CIDR to DOCKER-USER, and
// running it again adds nothing. It runs in a network namespace of its own,
// so the host's firewall is never touched.
func TestEgressFirewall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, tool := range []string{"unshare", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "instance.env"), "BLOCKED_CIDRS='169.254.169.254/32 10.0.0.0/16'\n")
	script := scriptPath(t, "egress-firewall.sh")
	cmd := exec.Command("unshare", "--net", "bash", "-c",
		`set -e; bash "$1"; bash "$1"; iptables -w -S DOCKER-USER`, "sh", script)
	cmd.Env = append(os.Environ(), "WHARF_CONF_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	rules := string(out)
	for _, cidr := range []string{"169.254.169.254/32", "10.0.0.0/16"} {
		want := "-A DOCKER-USER -d " + cidr + " -m conntrack --ctstate NEW -j REJECT --reject-with icmp-net-prohibited"
		if strings.Count(rules, want) != 1 {
			t.Errorf("want exactly one %q in:\n%s", want, rules)
		}
	}
}
