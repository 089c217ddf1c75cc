package cli

import (
	"errors"
	"fmt"
	"slices"

	"github.com/wharfhq/wharf/client"
)

func sortStrings(s []string) { slices.Sort(s) }

// wharf login URL TOKEN: check the token with the node, then save both.
func (r *runner) login(args []string) error {
	fs := newFlags("login")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := want("login", pos, "url", "token"); err != nil {
		return err
	}
	cl, err := client.New(pos[0], pos[1])
	if err != nil {
		return err
	}
	w, err := cl.Whoami(r.ctx)
	if err != nil {
		var apiErr *client.Error
		if errors.As(err, &apiErr) && apiErr.Status == 401 {
			return fmt.Errorf("the node at %s does not accept this token", cl.URL())
		}
		return err
	}
	path, err := profilePath(r.env.Getenv)
	if err != nil {
		return err
	}
	if err := saveProfile(path, Profile{URL: cl.URL(), Token: pos[1], Tenant: w.Tenant, Admin: w.Admin}); err != nil {
		return err
	}
	who := "the admin"
	if !w.Admin {
		who = "tenant " + w.Tenant
	}
	r.printf("Logged in to %s as %s (profile %s).\n", cl.URL(), who, path)
	return nil
}

// wharf logout: forget the saved node and token.
func (r *runner) logout(args []string) error {
	fs := newFlags("logout")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := want("logout", pos); err != nil {
		return err
	}
	path, err := profilePath(r.env.Getenv)
	if err != nil {
		return err
	}
	if err := saveProfile(path, Profile{}); err != nil {
		return err
	}
	r.printf("Logged out (profile %s emptied).\n", path)
	return nil
}

func (r *runner) tenantCreate(args []string) error {
	var c common
	fs := newFlags("tenant create")
	c.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	asJSON, err := c.json()
	if err != nil {
		return err
	}
	if err := want("tenant create", pos, "name"); err != nil {
		return err
	}
	s, err := r.connect(c)
	if err != nil {
		return err
	}
	t, err := s.CreateTenant(r.ctx, pos[0])
	if err != nil {
		return err
	}
	if asJSON {
		return r.printJSON(t)
	}
	r.printf("Created tenant %s. Its token (shown once, keep it):\n%s\n", t.Name, t.Token)
	return nil
}

func (r *runner) tenantList(args []string) error {
	s, _, _, asJSON, err := r.command("tenant ls", args, nil)
	if err != nil {
		return err
	}
	ts, err := s.ListTenants(r.ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return r.printJSON(ts)
	}
	rows := [][]string{}
	for _, t := range ts {
		rows = append(rows, []string{t.Name, when(t.CreatedAt)})
	}
	return r.table([]string{"NAME", "CREATED"}, rows)
}

func (r *runner) tenantRemove(args []string) error {
	var c common
	fs := newFlags("tenant rm")
	c.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := want("tenant rm", pos, "name"); err != nil {
		return err
	}
	s, err := r.connect(c)
	if err != nil {
		return err
	}
	if err := s.DeleteTenant(r.ctx, pos[0]); err != nil {
		return err
	}
	r.printf("Deleted tenant %s with its functions, tokens and logs.\n", pos[0])
	return nil
}

func (r *runner) tokenCreate(args []string) error {
	var c common
	var desc string
	fs := newFlags("token create")
	c.register(fs)
	fs.StringVar(&desc, "description", "", "what the token is for")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	asJSON, err := c.json()
	if err != nil {
		return err
	}
	if err := want("token create", pos); err != nil {
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
	tok, err := s.CreateToken(r.ctx, tenant, desc)
	if err != nil {
		return err
	}
	if asJSON {
		return r.printJSON(tok)
	}
	r.printf("Created token %s for tenant %s (shown once, keep it):\n%s\n", tok.ID, tenant, tok.Token)
	return nil
}

func (r *runner) tokenList(args []string) error {
	s, tenant, _, asJSON, err := r.fnCommand("token ls", args, nil)
	if err != nil {
		return err
	}
	toks, err := s.ListTokens(r.ctx, tenant)
	if err != nil {
		return err
	}
	if asJSON {
		return r.printJSON(toks)
	}
	rows := [][]string{}
	for _, t := range toks {
		rows = append(rows, []string{t.ID, when(t.CreatedAt), t.Description})
	}
	return r.table([]string{"ID", "CREATED", "DESCRIPTION"}, rows)
}

func (r *runner) tokenRemove(args []string) error {
	var c common
	fs := newFlags("token rm")
	c.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := want("token rm", pos, "id"); err != nil {
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
	if err := s.RevokeToken(r.ctx, tenant, pos[0]); err != nil {
		return err
	}
	r.printf("Revoked token %s of tenant %s.\n", pos[0], tenant)
	return nil
}
