// Package mgmt is Wharf's management REST API (API.md, "Management API"):
// tenants, their tokens and their functions, mounted by the node at /api/v1.
//
// Handlers return errors; errs.HTTPErrorHandler turns them into the JSON error
// body. A request that fails changes nothing: every check runs before the
// first write, and a multi-step write undoes its first step when a later one
// fails.
package mgmt

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/store"
)

// Store is the part of *store.Store the management API uses.
type Store interface {
	CreateTenant(ctx context.Context, name string) (store.Tenant, error)
	GetTenant(ctx context.Context, name string) (store.Tenant, error)
	ListTenants(ctx context.Context) ([]store.Tenant, error)
	DeleteTenant(ctx context.Context, name string) error

	CreateToken(ctx context.Context, tenant, description string) (store.Token, string, error)
	ListTokens(ctx context.Context, tenant string) ([]store.Token, error)
	RevokeToken(ctx context.Context, tenant, id string) error
	Authenticate(ctx context.Context, secret string) (store.Principal, error)

	PutFunction(ctx context.Context, spec store.FunctionSpec) (store.FunctionVersion, bool, error)
	GetFunction(ctx context.Context, tenant, name string) (store.FunctionVersion, error)
	ListFunctions(ctx context.Context, tenant string) ([]store.FunctionVersion, error)
	DeleteFunction(ctx context.Context, tenant, name string) error
	ListVersions(ctx context.Context, tenant, name string) ([]store.FunctionVersion, error)
	GetVersion(ctx context.Context, tenant, name string, version int) (store.FunctionVersion, error)
	Rollback(ctx context.Context, tenant, name string, version int) (store.FunctionVersion, error)

	GetStorage(ctx context.Context, tenant, fn string) (store.Storage, error)
}

// Hooks lets the node's caches and containers follow changes. The API calls
// them after a change succeeded, never after a failed one, synchronously on
// the request's goroutine: implementations should return quickly.
type Hooks interface {
	// FunctionChanged follows every successful put, delete and rollback.
	FunctionChanged(tenant, name string)
	// TenantDeleted follows a successful tenant delete.
	TenantDeleted(tenant string)
}

// *store.Store is the Store the node passes.
var _ Store = (*store.Store)(nil)

type noHooks struct{}

func (noHooks) FunctionChanged(string, string) {}
func (noHooks) TenantDeleted(string)           {}

// Config bounds what clients may store. Zero fields take the defaults.
type Config struct {
	MaxCodeBytes     int // default 1 MiB
	DefaultTimeoutMS int // default 30000; used when a function is stored with timeout_ms 0
	MaxTimeoutMS     int // default 300000
	// The node's body limits; a function may lower them, never raise them
	// (0: no upper bound is checked here).
	MaxRequestBytes  int64
	MaxResponseBytes int64
	// Logs serves GET /tenants/:tenant/logs; nil answers 501 logs_unavailable.
	Logs Logs
}

// Defaults of Config.
const (
	DefaultMaxCodeBytes     = 1 << 20
	DefaultDefaultTimeoutMS = 30_000
	DefaultMaxTimeoutMS     = 300_000
)

func (c Config) withDefaults() Config {
	if c.MaxCodeBytes <= 0 {
		c.MaxCodeBytes = DefaultMaxCodeBytes
	}
	if c.MaxTimeoutMS <= 0 {
		c.MaxTimeoutMS = DefaultMaxTimeoutMS
	}
	if c.DefaultTimeoutMS <= 0 {
		c.DefaultTimeoutMS = DefaultDefaultTimeoutMS
	}
	if c.DefaultTimeoutMS > c.MaxTimeoutMS {
		c.DefaultTimeoutMS = c.MaxTimeoutMS
	}
	return c
}

// API serves the management routes.
type API struct {
	st     Store
	mods   Modules // nil: dependencies are refused
	hooks  Hooks
	cfg    Config
	logger *slog.Logger
}

// New returns the management API. hooks and logger may be nil.
func New(st Store, hooks Hooks, cfg Config, logger *slog.Logger) *API {
	if hooks == nil {
		hooks = noHooks{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &API{st: st, hooks: hooks, cfg: cfg.withDefaults(), logger: logger.With("component", "mgmt")}
}

// Register adds the management routes to g, the group the node mounts at
// /api/v1. Authentication is attached per route, so routes others add to the
// same group (e.g. openapi.json) are not affected.
func (a *API) Register(g *echo.Group) {
	auth := a.authenticate

	g.POST("/tenants", a.createTenant, auth)
	g.GET("/tenants", a.listTenants, auth)
	g.DELETE("/tenants/:tenant", a.deleteTenant, auth)

	g.POST("/tenants/:tenant/tokens", a.createToken, auth)
	g.GET("/tenants/:tenant/tokens", a.listTokens, auth)
	g.DELETE("/tenants/:tenant/tokens/:id", a.revokeToken, auth)

	g.GET("/tenants/:tenant/functions", a.listFunctions, auth)
	g.PUT("/tenants/:tenant/functions/:name", a.putFunction, auth)
	g.GET("/tenants/:tenant/functions/:name", a.getFunction, auth)
	g.DELETE("/tenants/:tenant/functions/:name", a.deleteFunction, auth)
	g.GET("/tenants/:tenant/functions/:name/versions", a.listVersions, auth)
	g.GET("/tenants/:tenant/functions/:name/storage", a.getStorage, auth)
	g.POST("/tenants/:tenant/functions/:name/rollback", a.rollback, auth)

	g.GET("/modules/*", a.getModule, auth)
	g.GET("/tenants/:tenant/logs", a.tenantLogs, auth)
	g.GET("/whoami", a.whoami, auth)
	g.GET("/openapi.json", openAPI)
}

// noContent answers 204.
func noContent(c echo.Context) error { return c.NoContent(http.StatusNoContent) }
