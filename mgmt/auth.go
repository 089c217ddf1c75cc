package mgmt

import (
	"errors"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/store"
)

// principalKey is where authenticate leaves the store.Principal in the echo context.
const principalKey = "wharf.principal"

// maxTokenLen bounds a bearer token: longer ones are refused without asking the store.
const maxTokenLen = 512

// PrincipalFrom returns who authenticated the request, when the auth
// middleware of this package ran before.
func PrincipalFrom(c echo.Context) (store.Principal, bool) {
	p, ok := c.Get(principalKey).(store.Principal)
	return p, ok
}

// authenticate is the middleware of every management route:
// "Authorization: Bearer <token>" must name a known token.
func (a *API) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		secret, err := bearer(c.Request().Header.Get(echo.HeaderAuthorization))
		if err != nil {
			return unauthorized(c, err)
		}
		p, err := a.st.Authenticate(c.Request().Context(), secret)
		if errors.Is(err, store.ErrNotFound) {
			return unauthorized(c, errs.Unauthorized("The token is not valid."))
		}
		if err != nil {
			return storeError(err, nil, nil)
		}
		if !p.Admin && p.Tenant == "" { // a principal that is nobody: refuse rather than guess
			return unauthorized(c, errs.Unauthorized("The token is not valid."))
		}
		c.Set(principalKey, p)
		return next(c)
	}
}

// bearer extracts the token of an Authorization header.
func bearer(h string) (string, error) {
	if h == "" {
		return "", errs.Unauthorized("A bearer token is required (Authorization: Bearer <token>).")
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", errs.Unauthorized("The Authorization header must be \"Bearer <token>\".")
	}
	if len(token) > maxTokenLen {
		return "", errs.Unauthorized("The token is not valid.")
	}
	return token, nil
}

func unauthorized(c echo.Context, err error) error {
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, "Bearer")
	return err
}

func principal(c echo.Context) store.Principal {
	p, _ := PrincipalFrom(c)
	return p
}

// requireAdmin lets only the admin token through; what may be named is
// checked by the caller (a tenant token never learns whether another tenant exists).
func requireAdmin(c echo.Context, action string) error {
	if !principal(c).Admin {
		return forbidden("Only the admin token can %s.", action)
	}
	return nil
}

// tenantAccess returns the :tenant of the route when the principal may act
// on it: the admin for any existing tenant, a tenant token for its own tenant.
// Anything else answers 404 tenant_not_found with the same message as a
// tenant that does not exist, so names do not leak.
func (a *API) tenantAccess(c echo.Context) (string, error) {
	name := c.Param("tenant")
	p := principal(c)
	if !tenantNameRE.MatchString(name) {
		return "", tenantNotFound(name)
	}
	if p.Admin {
		if _, err := a.st.GetTenant(c.Request().Context(), name); err != nil {
			return "", storeError(err, tenantNotFound(name), nil)
		}
		return name, nil
	}
	if p.Tenant != name {
		return "", tenantNotFound(name)
	}
	return name, nil
}
