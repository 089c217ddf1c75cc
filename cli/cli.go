// Package cli is the `wharf` command-line client of the management API:
// login, tenants, tokens, functions (deploy with npm range resolution,
// versions, rollback, invoke) and logs. cmd/wharf dispatches to Run.
//
// Output is a human table by default and JSON with -o json; a failure exits
// with 1 (2 for a usage mistake) after one sentence on stderr.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/wharfhq/wharf/client"
)

// Commands are the first words Run handles.
var Commands = []string{"login", "logout", "tenant", "token", "fn", "logs"}

// Usage describes the client commands.
const Usage = `Client commands (WHARF_URL, WHARF_TOKEN and WHARF_TENANT override the saved profile):
  wharf login URL TOKEN                      save the node and token (profile: $WHARF_CONFIG or ~/.config/wharf/profile.json)
  wharf logout                               forget them
  wharf tenant create|ls|rm [NAME]           manage tenants (admin token)
  wharf token create|ls|rm [ID]              a tenant's tokens [--description D]
  wharf fn deploy NAME FILE                  create or update a function; dependencies come from a package.json
        [--dep name@version]... [--secret K=V]... [--secrets-file .env] [--timeout 10s] [--wait 5m]
  wharf fn ls | get NAME | rm NAME | versions NAME | rollback NAME VERSION
  wharf fn invoke NAME [--data JSON] [-X METHOD] [--path /rest] [-H 'Name: value']...
  wharf logs [-f] [--function NAME] [--tail N]
Every command takes --url, --token, --tenant and -o table|json.
`

// Env is the world a command runs in.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// HTTP is used for the npm registry; nil: a client with a 30 s timeout.
	HTTP *http.Client
}

// Run runs one client command and returns the process's exit status.
func Run(ctx context.Context, args []string, env Env) int {
	if env.HTTP == nil {
		env.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	r := &runner{env: env, ctx: ctx}
	err := r.dispatch(args)
	var u errUsage
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(env.Stdout, Usage)
		return 0
	case errors.As(err, &u):
		fmt.Fprintf(env.Stderr, "wharf: %s\n", sentence(u.msg))
		return 2
	}
	fmt.Fprintf(env.Stderr, "wharf: %s\n", sentence(err.Error()))
	return 1
}

type runner struct {
	env Env
	ctx context.Context
}

func (r *runner) dispatch(args []string) error {
	if len(args) == 0 {
		return usagef("a command is needed")
	}
	cmd, rest := args[0], args[1:]
	sub := func(name string, table map[string]func([]string) error) error {
		if len(rest) == 0 {
			return usagef("usage: wharf %s %s", name, strings.Join(keys(table), "|"))
		}
		f, ok := table[rest[0]]
		if !ok {
			return usagef("unknown command \"wharf %s %s\" (try %s)", name, rest[0], strings.Join(keys(table), ", "))
		}
		return f(rest[1:])
	}
	switch cmd {
	case "login":
		return r.login(rest)
	case "logout":
		return r.logout(rest)
	case "tenant":
		return sub("tenant", map[string]func([]string) error{"create": r.tenantCreate, "ls": r.tenantList, "rm": r.tenantRemove})
	case "token":
		return sub("token", map[string]func([]string) error{"create": r.tokenCreate, "ls": r.tokenList, "rm": r.tokenRemove})
	case "fn":
		return sub("fn", map[string]func([]string) error{
			"deploy": r.fnDeploy, "ls": r.fnList, "get": r.fnGet, "rm": r.fnRemove,
			"versions": r.fnVersions, "rollback": r.fnRollback, "invoke": r.fnInvoke,
		})
	case "logs":
		return r.logs(rest)
	}
	return usagef("unknown command %q", cmd)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

// common are the options every command takes.
type common struct {
	url, token, tenant, output string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "", "node URL (default: $WHARF_URL, then the profile)")
	fs.StringVar(&c.token, "token", "", "API token (default: $WHARF_TOKEN, then the profile)")
	fs.StringVar(&c.tenant, "tenant", "", "tenant (default: $WHARF_TENANT, then the token's own)")
	fs.StringVar(&c.output, "o", "table", "output: table or json")
}

func (c *common) json() (bool, error) {
	switch c.output {
	case "table", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usagef("-o must be table or json, not %q", c.output)
}

// session is a connected client with the profile it came from.
type session struct {
	*client.Client
	profile Profile
	fromEnv bool // the token is not the profile's
}

// connect builds a client from flags, environment and profile, in that order.
func (r *runner) connect(c common) (*session, error) {
	path, err := profilePath(r.env.Getenv)
	if err != nil {
		return nil, err
	}
	prof, err := loadProfile(path)
	if err != nil {
		return nil, err
	}
	url := first(c.url, r.env.Getenv("WHARF_URL"), prof.URL)
	token := first(c.token, r.env.Getenv("WHARF_TOKEN"), prof.Token)
	if url == "" || token == "" {
		return nil, errors.New("not logged in: run `wharf login URL TOKEN`, or set WHARF_URL and WHARF_TOKEN")
	}
	cl, err := client.New(url, token)
	if err != nil {
		return nil, err
	}
	return &session{Client: cl, profile: prof, fromEnv: token != prof.Token}, nil
}

// tenant is the tenant a command acts on: --tenant, $WHARF_TENANT, the
// profile's (when its token is in use), or the token's own as the node says.
func (r *runner) tenant(c common, s *session) (string, error) {
	if t := first(c.tenant, r.env.Getenv("WHARF_TENANT")); t != "" {
		return t, nil
	}
	admin := usagef("the admin token manages every tenant: name one with --tenant or WHARF_TENANT")
	if !s.fromEnv && s.profile.Tenant != "" {
		return s.profile.Tenant, nil
	}
	if !s.fromEnv && s.profile.Admin {
		return "", admin
	}
	w, err := s.Whoami(r.ctx)
	if err != nil {
		return "", err
	}
	if w.Admin {
		return "", admin
	}
	return w.Tenant, nil
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// printJSON writes v as indented JSON.
func (r *runner) printJSON(v any) error {
	enc := json.NewEncoder(r.env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes rows under a header, aligned.
func (r *runner) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(r.env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func (r *runner) printf(format string, args ...any) { fmt.Fprintf(r.env.Stdout, format, args...) }

// progress writes to stderr, so that stdout stays the command's result.
func (r *runner) progress(format string, args ...any) { fmt.Fprintf(r.env.Stderr, format, args...) }

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// sentence makes a message one sentence: capitalised, ending with a period.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "Failed."
	}
	r := []rune(s)
	r[0] = unicode.ToUpper(r[0])
	s = string(r)
	if !strings.HasSuffix(s, ".") && !strings.HasSuffix(s, "?") && !strings.HasSuffix(s, "!") {
		s += "."
	}
	return strings.ReplaceAll(s, "\n", " ")
}
