package mgmt

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

type createTokenRequest struct {
	Description string `json:"description"`
}

type createTokenResponse struct {
	ID          string    `json:"id"`
	Token       string    `json:"token"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
}

type tokenResponse struct {
	ID          string    `json:"id"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
}

// POST /tenants/:tenant/tokens (admin or tenant): a new token, shown once.
// The body is optional.
func (a *API) createToken(c echo.Context) error {
	tenant, err := a.tenantAccess(c)
	if err != nil {
		return err
	}
	var req createTokenRequest
	if err := decodeJSON(c, &req, smallBodyLimit, false); err != nil {
		return err
	}
	if err := validateDescription(req.Description); err != nil {
		return err
	}
	tok, secret, err := a.st.CreateToken(c.Request().Context(), tenant, req.Description)
	if err != nil {
		return storeError(err, tenantNotFound(tenant), nil)
	}
	a.logger.Info("token created", "tenant", tenant, "token_id", tok.ID)
	return c.JSON(http.StatusCreated, createTokenResponse{
		ID: tok.ID, Token: secret, Description: tok.Description, CreatedAt: tok.CreatedAt.UTC(),
	})
}

// GET /tenants/:tenant/tokens (admin or tenant): never the secrets.
func (a *API) listTokens(c echo.Context) error {
	tenant, err := a.tenantAccess(c)
	if err != nil {
		return err
	}
	toks, err := a.st.ListTokens(c.Request().Context(), tenant)
	if err != nil {
		return storeError(err, tenantNotFound(tenant), nil)
	}
	out := make([]tokenResponse, 0, len(toks))
	for _, t := range toks {
		out = append(out, tokenResponse{ID: t.ID, Description: t.Description, CreatedAt: t.CreatedAt.UTC()})
	}
	return c.JSON(http.StatusOK, out)
}

// DELETE /tenants/:tenant/tokens/:id (admin or tenant).
func (a *API) revokeToken(c echo.Context) error {
	tenant, err := a.tenantAccess(c)
	if err != nil {
		return err
	}
	id := c.Param("id")
	if !tokenIDRE.MatchString(id) {
		return tokenNotFound(id)
	}
	if err := a.st.RevokeToken(c.Request().Context(), tenant, id); err != nil {
		return storeError(err, tokenNotFound(id), nil)
	}
	a.logger.Info("token revoked", "tenant", tenant, "token_id", id)
	return noContent(c)
}
