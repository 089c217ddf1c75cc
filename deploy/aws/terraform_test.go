// Package aws holds the Terraform of Wharf's AWS deployment; its tests check
// the configuration offline (there is no AWS account or provider download
// here): every .tf file is formatted as `terraform fmt` writes it, parses,
// and refers only to things it declares; the user data template gets exactly
// the variables Terraform passes and renders to valid bash for every role.
package aws

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

func tfFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.tf")
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files: %v", err)
	}
	return files
}

// Every file is byte for byte what `terraform fmt` (hclwrite) would write.
func TestTerraformFormatted(t *testing.T) {
	for _, f := range tfFiles(t) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := hclwrite.Format(src); string(got) != string(src) {
			t.Errorf("%s is not formatted: run `terraform fmt deploy/aws`", f)
		}
	}
	tf, err := exec.LookPath("terraform")
	if err != nil {
		t.Log("terraform is not installed: checked with hclwrite.Format only")
		return
	}
	cmd := exec.Command(tf, "fmt", "-check", "-diff", "-recursive", ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("terraform fmt -check: %v\n%s", err, out)
	}
}

// config is the parsed module: what it declares and every reference it makes.
type config struct {
	files     map[string]*hcl.File
	variables map[string]*hclsyntax.Block
	locals    map[string]*hclsyntax.Attribute
	resources map[string]bool // "aws_lb.this"
	data      map[string]bool // "aws_vpc.this"
	dynamic   map[string]bool // dynamic block labels (their iterators)
	refs      []hcl.Traversal
}

func parse(t *testing.T) *config {
	t.Helper()
	c := &config{files: map[string]*hcl.File{}, variables: map[string]*hclsyntax.Block{}, locals: map[string]*hclsyntax.Attribute{},
		resources: map[string]bool{}, data: map[string]bool{}, dynamic: map[string]bool{}}
	for _, name := range tfFiles(t) {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", name, diags.Error())
		}
		c.files[name] = f
		body := f.Body.(*hclsyntax.Body)
		for _, b := range body.Blocks {
			switch b.Type {
			case "variable":
				c.variables[b.Labels[0]] = b
			case "locals":
				for n, a := range b.Body.Attributes {
					if c.locals[n] != nil {
						t.Errorf("local.%s declared twice", n)
					}
					c.locals[n] = a
				}
			case "resource":
				c.resources[b.Labels[0]+"."+b.Labels[1]] = true
			case "data":
				c.data[b.Labels[0]+"."+b.Labels[1]] = true
			}
		}
		c.walk(body, "")
	}
	return c
}

// walk collects the references of every expression under body (in a block
// of type blockType). A variable's type and a lifecycle's ignore_changes
// are written as expressions but name types and attributes, not values.
func (c *config) walk(body *hclsyntax.Body, blockType string) {
	for name, a := range body.Attributes {
		if (blockType == "variable" && name == "type") || (blockType == "lifecycle" && name == "ignore_changes") {
			continue
		}
		c.refs = append(c.refs, a.Expr.Variables()...)
	}
	for _, b := range body.Blocks {
		if b.Type == "dynamic" {
			c.dynamic[b.Labels[0]] = true
		}
		c.walk(b.Body, b.Type)
	}
}

func attrName(tr hcl.Traverser) string {
	if a, ok := tr.(hcl.TraverseAttr); ok {
		return a.Name
	}
	return ""
}

// Every reference resolves to something declared; every variable and local is
// used; every variable and output is described.
func TestTerraformReferences(t *testing.T) {
	c := parse(t)
	usedVars, usedLocals := map[string]bool{}, map[string]bool{}
	for _, ref := range c.refs {
		root := ref.RootName()
		at := func(i int) string {
			if i < len(ref) {
				return attrName(ref[i])
			}
			return ""
		}
		where := ref.SourceRange().String()
		switch {
		case root == "var":
			if c.variables[at(1)] == nil {
				t.Errorf("%s: undeclared var.%s", where, at(1))
			}
			usedVars[at(1)] = true
		case root == "local":
			if c.locals[at(1)] == nil {
				t.Errorf("%s: undeclared local.%s", where, at(1))
			}
			usedLocals[at(1)] = true
		case root == "data":
			if !c.data[at(1)+"."+at(2)] {
				t.Errorf("%s: undeclared data.%s.%s", where, at(1), at(2))
			}
		case root == "path" || root == "count" || root == "each" || root == "self" || root == "terraform" || c.dynamic[root]:
		default:
			if !c.resources[root+"."+at(1)] {
				t.Errorf("%s: undeclared resource %s.%s", where, root, at(1))
			}
		}
	}
	for name, b := range c.variables {
		if !usedVars[name] {
			t.Errorf("variable %s is never used", name)
		}
		if _, ok := b.Body.Attributes["description"]; !ok {
			t.Errorf("variable %s has no description", name)
		}
	}
	for name := range c.locals {
		if !usedLocals[name] {
			t.Errorf("local.%s is never used", name)
		}
	}
	for _, f := range c.files {
		for _, b := range f.Body.(*hclsyntax.Body).Blocks {
			if b.Type == "output" {
				if _, ok := b.Body.Attributes["description"]; !ok {
					t.Errorf("output %s has no description", b.Labels[0])
				}
			}
		}
	}
	// The parts the deployment is about are all there.
	for _, r := range []string{"aws_launch_template.node", "aws_autoscaling_group.nodes", "aws_lb.this",
		"aws_lb_target_group.nodes", "aws_autoscaling_policy.cpu", "aws_autoscaling_policy.requests",
		"aws_ssm_parameter.mongo_uri", "aws_ssm_parameter.secrets_key", "aws_iam_role_policy.node",
		"aws_autoscaling_group.builders"} {
		if !c.resources[r] {
			t.Errorf("missing resource %s", r)
		}
	}
}

// objectKeys lists the keys of an object expression built from object
// literals, merge() and references to locals.
func (c *config) objectKeys(t *testing.T, e hclsyntax.Expression) []string {
	t.Helper()
	switch e := e.(type) {
	case *hclsyntax.ObjectConsExpr:
		var keys []string
		for _, item := range e.Items {
			k := hcl.ExprAsKeyword(item.KeyExpr)
			if k == "" {
				t.Fatalf("%s: non-literal key", item.KeyExpr.Range())
			}
			keys = append(keys, k)
		}
		return keys
	case *hclsyntax.FunctionCallExpr:
		if e.Name != "merge" {
			t.Fatalf("%s: %s() where an object is expected", e.Range(), e.Name)
		}
		var keys []string
		for _, a := range e.Args {
			keys = append(keys, c.objectKeys(t, a)...)
		}
		return keys
	case *hclsyntax.ScopeTraversalExpr:
		if e.Traversal.RootName() == "local" {
			if a := c.locals[attrName(e.Traversal[1])]; a != nil {
				return c.objectKeys(t, a.Expr)
			}
		}
	}
	t.Fatalf("%s: cannot list the keys of %T", e.Range(), e)
	return nil
}

// templatefileCalls finds templatefile(path, vars) calls in the module.
func (c *config) templatefileCalls() []*hclsyntax.FunctionCallExpr {
	var calls []*hclsyntax.FunctionCallExpr
	for _, f := range c.files {
		_ = hclsyntax.VisitAll(f.Body.(*hclsyntax.Body), func(n hclsyntax.Node) hcl.Diagnostics {
			if fc, ok := n.(*hclsyntax.FunctionCallExpr); ok && fc.Name == "templatefile" {
				calls = append(calls, fc)
			}
			return nil
		})
	}
	return calls
}

const userDataTemplate = "templates/user-data.sh.tftpl"

func parseTemplate(t *testing.T) hclsyntax.Expression {
	t.Helper()
	src, err := os.ReadFile(userDataTemplate)
	if err != nil {
		t.Fatal(err)
	}
	expr, diags := hclsyntax.ParseTemplate(src, userDataTemplate, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return expr
}

// The template uses exactly the variables every templatefile() call passes.
func TestUserDataVariables(t *testing.T) {
	c := parse(t)
	used := map[string]bool{}
	for _, tr := range parseTemplate(t).Variables() {
		used[tr.RootName()] = true
	}
	calls := c.templatefileCalls()
	if len(calls) != 2 {
		t.Fatalf("%d templatefile calls, want 2 (nodes and builders)", len(calls))
	}
	for _, call := range calls {
		keys := c.objectKeys(t, call.Args[1])
		given := map[string]bool{}
		for _, k := range keys {
			given[k] = true
		}
		for name := range used {
			if !given[name] {
				t.Errorf("%s: the template uses %s, which this call does not pass", call.Range(), name)
			}
		}
		for name := range given {
			if !used[name] {
				t.Errorf("%s: passes %s, which the template never uses", call.Range(), name)
			}
		}
	}
}

// renderUserData renders the template as Terraform would, with the files
// base64gzip'ed as placeholders and the given variables.
func renderUserData(t *testing.T, vars map[string]cty.Value) string {
	t.Helper()
	for _, k := range []string{"start_wharf", "lifecycle_agent", "egress_firewall", "wharf_service", "lifecycle_service", "egress_service"} {
		vars[k] = cty.StringVal("H4sIAAAAAAAA/w==")
	}
	out, diags := parseTemplate(t).Value(&hcl.EvalContext{Variables: vars})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return out.AsString()
}

func baseVars(role string) map[string]cty.Value {
	return map[string]cty.Value{
		"role": cty.StringVal(role), "region": cty.StringVal("eu-west-1"), "ssm_prefix": cty.StringVal("/wharf"),
		"node_version": cty.StringVal("20.20.2"), "wharf_binary_url": cty.StringVal("https://example.com/wharf"),
		"wharf_binary_s3_uri": cty.StringVal(""), "wharf_binary_sha256": cty.StringVal(strings.Repeat("ab", 32)),
		"listen_port": cty.NumberIntVal(8080), "shutdown_timeout": cty.NumberIntVal(30),
		"blocked_cidrs":       cty.StringVal("169.254.169.254/32 10.0.0.0/16"),
		"egress_deny":         cty.StringVal("169.254.169.254/32,10.0.0.0/16"),
		"asg_name":            cty.StringVal("wharf-nodes"),
		"hook_name":           cty.StringVal("wharf-drain"),
		"target_group_arn":    cty.StringVal("arn:aws:elasticloadbalancing:eu-west-1:123:targetgroup/wharf-nodes/abc"),
		"deregistration_wait": cty.NumberIntVal(60),
		"settings": cty.MapVal(map[string]cty.Value{"WHARF_POOL_SIZE": cty.StringVal("8"),
			"WHARF_IDLE_TIMEOUT": cty.StringVal("30m")}),
	}
}

// The rendered user data is valid bash for nodes and builders, from a URL or
// S3, and carries the settings; only nodes run the drain agent.
func TestUserDataRenders(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	for _, tc := range []struct {
		role string
		s3   bool
	}{{"serve", false}, {"serve", true}, {"builder", false}} {
		vars := baseVars(tc.role)
		if tc.s3 {
			vars["wharf_binary_url"] = cty.StringVal("")
			vars["wharf_binary_s3_uri"] = cty.StringVal("s3://bucket/releases/wharf")
		}
		out := renderUserData(t, vars)
		cmd := exec.Command(bash, "-n")
		cmd.Stdin = strings.NewReader(out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%+v: bash -n: %v\n%s\n%s", tc, err, b, out)
		}
		mustContain := []string{"ROLE='" + tc.role + "'", "WHARF_POOL_SIZE='8'", "WHARF_IDLE_TIMEOUT='30m'",
			"WHARF_LISTEN='0.0.0.0:8080'", "WHARF_EGRESS_DENY='169.254.169.254/32,10.0.0.0/16'", "sha256sum -c -", "systemctl enable --now wharf.service"}
		if tc.s3 {
			mustContain = append(mustContain, "aws s3 cp --region 'eu-west-1' 's3://bucket/releases/wharf'")
		} else {
			mustContain = append(mustContain, "curl -fsSL --retry 5 'https://example.com/wharf'")
		}
		for _, want := range mustContain {
			if !strings.Contains(out, want) {
				t.Errorf("%+v: user data lacks %q", tc, want)
			}
		}
		if got := strings.Contains(out, "enable --now wharf-lifecycle"); got != (tc.role == "serve") {
			t.Errorf("%+v: drain agent enabled = %v", tc, got)
		}
		if len(out) > 12<<10 {
			t.Errorf("%+v: user data is %d bytes before the files; EC2 takes 16 KiB in all", tc, len(out))
		}
	}
}

// The files shipped in the user data fit EC2's 16 KiB limit together.
func TestUserDataSize(t *testing.T) {
	total := len(renderUserData(t, baseVars("serve")))
	files, _ := filepath.Glob("files/*")
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		total += gzipBase64Len(t, b)
	}
	if total > 16<<10 {
		t.Fatalf("user data would be %d bytes (limit 16384)", total)
	}
	t.Logf("user data: about %d bytes of 16384", total)
}
