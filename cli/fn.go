package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wharfhq/wharf/client"
)

// deployOptions are fn deploy's own flags.
type deployOptions struct {
	deps, secrets multi
	secretsFile   string
	registry      string
	timeout, wait time.Duration
}

// wharf fn deploy NAME FILE: resolve dependencies, gather secrets, store a
// new version, and show module builds until they are done.
func (r *runner) fnDeploy(args []string) error {
	var c common
	var o deployOptions
	f := newFlags("fn deploy")
	c.register(f)
	f.Var(&o.deps, "dep", "a dependency, name@version or name@range (repeatable; wins over package.json)")
	f.Var(&o.secrets, "secret", "a secret, KEY=VALUE (repeatable; wins over --secrets-file)")
	f.StringVar(&o.secretsFile, "secrets-file", "", "a .env file of secrets")
	f.StringVar(&o.registry, "registry", "", "npm registry for resolving ranges (default: $WHARF_NPM_REGISTRY, $npm_config_registry, "+DefaultRegistry+")")
	f.DurationVar(&o.timeout, "timeout", 0, "the function's timeout, e.g. 10s (default: the node's)")
	f.DurationVar(&o.wait, "wait", 5*time.Minute, "how long to show module builds before giving up")
	pos, err := parse(f, args)
	if err != nil {
		return err
	}
	asJSON, err := c.json()
	if err != nil {
		return err
	}
	if err := want("fn deploy", pos, "name", "file"); err != nil {
		return err
	}
	name, file := pos[0], pos[1]
	if o.timeout < 0 || o.timeout%time.Millisecond != 0 {
		return usagef("--timeout must be a positive duration in whole milliseconds, such as 10s")
	}
	code, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", file, errors.Unwrap(err))
	}
	specs, err := dependencySpecs(file, o.deps)
	if err != nil {
		return err
	}
	secrets, err := gatherSecrets(o.secretsFile, o.secrets)
	if err != nil {
		return err
	}
	s, err := r.connect(c)
	if err != nil {
		return err
	}
	tenant, err := r.tenant(c, s)
	if err != nil {
		return err
	}
	deps, err := r.resolve(specs, o.registry)
	if err != nil {
		return err
	}
	st, err := s.PutFunction(r.ctx, tenant, name, client.FunctionSpec{
		Code: string(code), Dependencies: deps, Secrets: secrets, TimeoutMS: int(o.timeout / time.Millisecond),
	}, 0)
	if err != nil {
		return err
	}
	st, err = r.waitForModules(s, tenant, st, o.wait)
	if err != nil {
		return err
	}
	if asJSON {
		return r.printJSON(st)
	}
	r.printf("Deployed %s version %d (%s): %s/run/%s/%s\n", st.Name, st.Version, st.Status, s.URL(), tenant, st.Name)
	return nil
}

// dependencySpecs are the dependencies of the package.json beside file (if
// there is one), overridden by --dep arguments.
func dependencySpecs(file string, deps multi) (map[string]string, error) {
	specs := map[string]string{}
	pj := filepath.Join(filepath.Dir(file), "package.json")
	b, err := os.ReadFile(pj)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("cannot read %s: %w", pj, errors.Unwrap(err))
	default:
		var doc struct {
			Dependencies map[string]any `json:"dependencies"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("%s is not valid JSON: %w", pj, err)
		}
		for name, v := range doc.Dependencies {
			spec, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("%s: the version of dependency %s is not a string", pj, name)
			}
			specs[name] = spec
		}
	}
	for _, d := range deps {
		name, spec, err := splitDep(d)
		if err != nil {
			return nil, usagef("%s", err)
		}
		specs[name] = spec
	}
	return specs, nil
}

// resolve turns every spec into an exact version through the npm registry.
func (r *runner) resolve(specs map[string]string, flagRegistry string) (map[string]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	base := first(flagRegistry, r.env.Getenv("WHARF_NPM_REGISTRY"), r.env.Getenv("npm_config_registry"), DefaultRegistry)
	reg := newRegistry(base, r.env.HTTP)
	out := map[string]string{}
	for _, name := range keys(specs) {
		v, err := reg.Resolve(r.ctx, name, specs[name])
		if err != nil {
			return nil, err
		}
		if v != specs[name] {
			r.progress("Resolved %s@%s to %s\n", name, specs[name], v)
		}
		out[name] = v
	}
	return out, nil
}

// gatherSecrets reads --secrets-file, then applies --secret KEY=VALUE.
func gatherSecrets(file string, flags multi) (map[string]string, error) {
	secrets := map[string]string{}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %w", file, errors.Unwrap(err))
		}
		parsed, err := parseDotenv(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		for k, v := range parsed {
			secrets[k] = v
		}
	}
	for _, kv := range flags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !envKeyRE.MatchString(k) {
			// Never echo the argument: it may hold the secret.
			return nil, usagef("--secret needs KEY=VALUE with a KEY of letters, digits and _")
		}
		secrets[k] = v
	}
	if len(secrets) == 0 {
		return nil, nil
	}
	return secrets, nil
}

// waitForModules shows module builds until each is ready, one fails, or
// wait passes; then follows the function's own status until it is no longer
// building. Without a module endpoint (GET /api/v1/modules) only the
// function's status is followed.
func (r *runner) waitForModules(s *session, tenant string, st client.FunctionStatus, wait time.Duration) (client.FunctionStatus, error) {
	var pending []client.Module
	for _, m := range st.Modules {
		if m.Status != "ready" {
			pending = append(pending, m)
		}
	}
	if len(pending) == 0 && st.Status != "building" {
		return st, nil
	}
	names := make([]string, len(pending))
	for i, m := range pending {
		names[i] = m.Name + "@" + m.Version
	}
	r.progress("Building %d module(s): %s\n", len(pending), strings.Join(names, ", "))
	start := time.Now()
	tick := func() error {
		if time.Since(start) > wait {
			return fmt.Errorf("modules of %s are still building after %s; `wharf fn ls` shows when they are ready", st.Name, wait)
		}
		select {
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-time.After(time.Second):
			return nil
		}
	}
	for len(pending) > 0 {
		if err := tick(); err != nil {
			return st, err
		}
		var still []client.Module
		for _, m := range pending {
			b, err := s.GetModule(r.ctx, m.Name, m.Version)
			var apiErr *client.Error
			if errors.As(err, &apiErr) && (apiErr.Status == http.StatusNotFound || apiErr.Status == http.StatusMethodNotAllowed) {
				pending = nil // no module endpoint: the function's status says it all
				break
			}
			if err != nil {
				return st, err
			}
			switch b.Status {
			case "ready":
				r.progress("  %s@%s ready (%s)\n", m.Name, m.Version, time.Since(start).Round(time.Second))
			case "failed":
				if b.Log != "" || b.Error != "" {
					r.progress("Build log of %s@%s:\n%s%s\n", m.Name, m.Version, b.Error, b.Log)
				}
				return st, fmt.Errorf("module %s@%s failed to build", m.Name, m.Version)
			default:
				still = append(still, m)
			}
		}
		if pending == nil {
			break
		}
		pending = still
	}
	for {
		item, err := r.functionItem(s, tenant, st.Name)
		if err != nil {
			return st, err
		}
		switch item.Status {
		case "building":
		case "failed":
			return st, fmt.Errorf("modules of %s failed to build; `wharf fn get %s` shows them", st.Name, st.Name)
		default:
			st.Status = item.Status
			return st, nil
		}
		if err := tick(); err != nil {
			return st, err
		}
	}
}

func (r *runner) functionItem(s *session, tenant, name string) (client.FunctionItem, error) {
	list, err := s.ListFunctions(r.ctx, tenant)
	if err != nil {
		return client.FunctionItem{}, err
	}
	for _, f := range list {
		if f.Name == name {
			return f, nil
		}
	}
	return client.FunctionItem{}, fmt.Errorf("function %s is gone", name)
}

// command parses a command's flags (the common ones plus extra), checks its
// positional arguments and connects.
func (r *runner) command(name string, args []string, extra func(*flagSet), wantArgs ...string) (*session, common, []string, bool, error) {
	var c common
	f := newFlags(name)
	c.register(f)
	if extra != nil {
		extra(f)
	}
	pos, err := parse(f, args)
	if err != nil {
		return nil, c, nil, false, err
	}
	asJSON, err := c.json()
	if err != nil {
		return nil, c, nil, false, err
	}
	if err := want(name, pos, wantArgs...); err != nil {
		return nil, c, nil, false, err
	}
	s, err := r.connect(c)
	if err != nil {
		return nil, c, nil, false, err
	}
	return s, c, pos, asJSON, nil
}

// fnCommand is command for a tenant's resources: it also finds the tenant.
func (r *runner) fnCommand(name string, args []string, extra func(*flagSet), wantArgs ...string) (*session, string, []string, bool, error) {
	s, c, pos, asJSON, err := r.command(name, args, extra, wantArgs...)
	if err != nil {
		return nil, "", nil, false, err
	}
	tenant, err := r.tenant(c, s)
	if err != nil {
		return nil, "", nil, false, err
	}
	return s, tenant, pos, asJSON, nil
}

func (r *runner) fnList(args []string) error {
	s, tenant, _, asJSON, err := r.fnCommand("fn ls", args, nil)
	if err != nil {
		return err
	}
	list, err := s.ListFunctions(r.ctx, tenant)
	if err != nil {
		return err
	}
	if asJSON {
		return r.printJSON(list)
	}
	rows := [][]string{}
	for _, f := range list {
		rows = append(rows, []string{f.Name, strconv.Itoa(f.Version), f.Status, when(f.UpdatedAt)})
	}
	return r.table([]string{"NAME", "VERSION", "STATUS", "UPDATED"}, rows)
}

func (r *runner) fnGet(args []string) error {
	s, tenant, pos, asJSON, err := r.fnCommand("fn get", args, nil, "name")
	if err != nil {
		return err
	}
	f, err := s.GetFunction(r.ctx, tenant, pos[0])
	if err != nil {
		return err
	}
	if asJSON {
		return r.printJSON(f)
	}
	var deps []string
	for _, n := range keys(f.Dependencies) {
		deps = append(deps, n+"@"+f.Dependencies[n])
	}
	secrets := "-"
	if len(f.Secrets) > 0 {
		secrets = strings.Join(f.Secrets, ", ") + " (values are never shown)"
	}
	r.printf("Name:          %s\nVersion:       %d\nUpdated:       %s\nTimeout:       %d ms\nDependencies:  %s\nSecrets:       %s\n\n%s",
		f.Name, f.Version, when(f.UpdatedAt), f.TimeoutMS, orDash(strings.Join(deps, ", ")), secrets, f.Code)
	if !strings.HasSuffix(f.Code, "\n") {
		r.printf("\n")
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (r *runner) fnRemove(args []string) error {
	s, tenant, pos, _, err := r.fnCommand("fn rm", args, nil, "name")
	if err != nil {
		return err
	}
	if err := s.DeleteFunction(r.ctx, tenant, pos[0]); err != nil {
		return err
	}
	r.printf("Deleted function %s.\n", pos[0])
	return nil
}

func (r *runner) fnVersions(args []string) error {
	s, tenant, pos, asJSON, err := r.fnCommand("fn versions", args, nil, "name")
	if err != nil {
		return err
	}
	vs, err := s.ListVersions(r.ctx, tenant, pos[0])
	if err != nil {
		return err
	}
	if asJSON {
		return r.printJSON(vs)
	}
	rows := [][]string{}
	for _, v := range vs {
		var deps []string
		for _, n := range keys(v.Dependencies) {
			deps = append(deps, n+"@"+v.Dependencies[n])
		}
		rows = append(rows, []string{strconv.Itoa(v.Version), when(v.CreatedAt), strconv.Itoa(v.CodeSize),
			strconv.Itoa(v.TimeoutMS), orDash(strings.Join(deps, ",")), orDash(strings.Join(v.Secrets, ","))})
	}
	return r.table([]string{"VERSION", "CREATED", "CODE BYTES", "TIMEOUT MS", "DEPENDENCIES", "SECRETS"}, rows)
}

func (r *runner) fnRollback(args []string) error {
	s, tenant, pos, asJSON, err := r.fnCommand("fn rollback", args, nil, "name", "version")
	if err != nil {
		return err
	}
	v, err := strconv.Atoi(strings.TrimPrefix(pos[1], "v"))
	if err != nil || v < 1 {
		return usagef("VERSION must be a version number such as 3, not %q", pos[1])
	}
	st, err := s.Rollback(r.ctx, tenant, pos[0], v)
	if err != nil {
		return err
	}
	if asJSON {
		return r.printJSON(st)
	}
	r.printf("Rolled %s back to version %d: it is now version %d.\n", pos[0], v, st.Version)
	return nil
}

// wharf fn invoke NAME: call the function as its webhook caller would and
// print what it answered; a non-2xx answer fails the command.
func (r *runner) fnInvoke(args []string) error {
	var data, method, path string
	var headers multi
	s, tenant, pos, asJSON, err := r.fnCommand("fn invoke", args, func(f *flagSet) {
		f.StringVar(&data, "data", "", "a JSON body to send (the method becomes POST)")
		f.StringVar(&method, "X", "", "the HTTP method (default GET, or POST with --data)")
		f.StringVar(&path, "path", "", "a path after the function's URL")
		f.Var(&headers, "H", "a request header, 'Name: value' (repeatable)")
	}, "name")
	if err != nil {
		return err
	}
	h := http.Header{}
	var body []byte
	if data != "" {
		if !json.Valid([]byte(data)) {
			return usagef("--data must be JSON")
		}
		body = []byte(data)
		h.Set("Content-Type", "application/json")
		if method == "" {
			method = http.MethodPost
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	for _, kv := range headers {
		k, v, ok := strings.Cut(kv, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return usagef("-H needs 'Name: value', not %q", kv)
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := s.Invoke(r.ctx, tenant, pos[0], strings.ToUpper(method), path, body, h)
	if err != nil {
		return err
	}
	if asJSON {
		var parsed any = string(resp.Body)
		if json.Valid(resp.Body) {
			parsed = json.RawMessage(resp.Body)
		}
		if err := r.printJSON(map[string]any{"status": resp.Status, "body": parsed}); err != nil {
			return err
		}
	} else if resp.Status < 300 {
		r.printf("%s", resp.Body)
		if len(resp.Body) > 0 && resp.Body[len(resp.Body)-1] != '\n' {
			r.printf("\n")
		}
	}
	if resp.Status >= 300 {
		return invokeError(resp)
	}
	return nil
}

// invokeError phrases a failed invocation: the status, the error sentence of
// the runner's or the node's JSON, and the function's own details.
func invokeError(resp client.Response) error {
	var b struct {
		Error   string `json:"error"`
		Details string `json:"details"`
	}
	msg := ""
	if json.Unmarshal(resp.Body, &b) == nil && b.Error != "" {
		msg = strings.TrimSuffix(b.Error, ".")
		if b.Details != "" && b.Details != b.Error {
			msg += " (" + strings.TrimSuffix(b.Details, ".") + ")"
		}
	} else if t := strings.TrimSpace(string(resp.Body)); t != "" && len(t) < 200 {
		msg = t
	}
	if msg == "" {
		return fmt.Errorf("the function answered %d %s", resp.Status, http.StatusText(resp.Status))
	}
	return fmt.Errorf("the function answered %d: %s", resp.Status, msg)
}
