package mgmt

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/errs"
)

// undoTimeout bounds the clean-up of a half-done write, which runs even when
// the client has gone away.
const undoTimeout = 10 * time.Second

type createTenantRequest struct {
	Name string `json:"name"`
}

type createTenantResponse struct {
	Name  string `json:"name"`
	Token string `json:"token"`
}

type tenantResponse struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// POST /tenants (admin): the tenant and its first token, shown once.
func (a *API) createTenant(c echo.Context) error {
	if err := requireAdmin(c, "create tenants"); err != nil {
		return err
	}
	var req createTenantRequest
	if err := decodeJSON(c, &req, smallBodyLimit, true); err != nil {
		return err
	}
	if err := validateTenantName(req.Name); err != nil {
		return err
	}
	ctx := c.Request().Context()
	t, err := a.st.CreateTenant(ctx, req.Name)
	if err != nil {
		return storeError(err, nil, errs.Conflict(codeTenantExists, "Tenant %q already exists.", req.Name))
	}
	tok, secret, err := a.st.CreateToken(ctx, t.Name, "initial token")
	if err != nil {
		// Undo the tenant so that the failed request changes nothing.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		if uerr := a.st.DeleteTenant(uctx, t.Name); uerr != nil {
			a.logger.Error("undo tenant create failed", "tenant", t.Name, "err", uerr)
		}
		return storeError(err, nil, nil)
	}
	a.logger.Info("tenant created", "tenant", t.Name, "token_id", tok.ID)
	return c.JSON(http.StatusCreated, createTenantResponse{Name: t.Name, Token: secret})
}

// GET /tenants (admin).
func (a *API) listTenants(c echo.Context) error {
	if err := requireAdmin(c, "list tenants"); err != nil {
		return err
	}
	ts, err := a.st.ListTenants(c.Request().Context())
	if err != nil {
		return storeError(err, nil, nil)
	}
	out := make([]tenantResponse, 0, len(ts))
	for _, t := range ts {
		out = append(out, tenantResponse{Name: t.Name, CreatedAt: t.CreatedAt.UTC()})
	}
	return c.JSON(http.StatusOK, out)
}

// DELETE /tenants/:tenant (admin): the tenant, its tokens and functions.
func (a *API) deleteTenant(c echo.Context) error {
	name := c.Param("tenant")
	p := principal(c)
	if !p.Admin {
		if p.Tenant == name {
			return forbidden("Only the admin token can delete a tenant.")
		}
		return tenantNotFound(name)
	}
	if !tenantNameRE.MatchString(name) {
		return tenantNotFound(name)
	}
	if err := a.st.DeleteTenant(c.Request().Context(), name); err != nil {
		return storeError(err, tenantNotFound(name), nil)
	}
	a.logger.Info("tenant deleted", "tenant", name)
	a.hooks.TenantDeleted(name)
	return noContent(c)
}
