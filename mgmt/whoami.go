package mgmt

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

type whoamiResponse struct {
	Admin   bool   `json:"admin"`
	Tenant  string `json:"tenant,omitempty"`
	TokenID string `json:"token_id,omitempty"`
}

// GET /whoami: who the token is, so that a client holding only a token (the
// CLI after `wharf login`) knows which tenant it manages.
func (a *API) whoami(c echo.Context) error {
	p := principal(c)
	return c.JSON(http.StatusOK, whoamiResponse{Admin: p.Admin, Tenant: p.Tenant, TokenID: p.TokenID})
}
