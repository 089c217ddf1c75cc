package mgmt

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/modstore"
	"github.com/wharfhq/wharf/npmspec"
	"github.com/wharfhq/wharf/store"
)

// MaxWait caps ?wait=: longer waits are cut to it (a module's builds are
// bounded by the builder's timeout and attempts anyway).
const MaxWait = 10 * time.Minute

// Modules is the node's module service: the build queue in the store, and
// the node's own copy of built modules.
type Modules interface {
	// Request enqueues a build of each module not built or building yet
	// (once for the whole system) and returns each module's status.
	Request(ctx context.Context, refs []npmspec.Ref) ([]modstore.Status, error)
	// States returns each module's status.
	States(ctx context.Context, refs []npmspec.Ref) ([]modstore.Status, error)
	// Wait returns once every module is ready (and unpacked on this node) or
	// failed, or when ctx ends, with each module's status then.
	Wait(ctx context.Context, refs []npmspec.Ref) ([]modstore.Status, error)
	// Status is one module's status, attempts and result;
	// modstore.ErrNotFound when it was never asked for.
	Status(ctx context.Context, r npmspec.Ref) (modstore.Status, error)
}

// UseModules lets the API accept functions with dependencies. Without it,
// dependencies are refused with 400 dependencies_unsupported.
func (a *API) UseModules(m Modules) { a.mods = m }

// Error codes of the module routes.
const (
	codeInvalidModule  = "invalid_module"
	codeModuleNotFound = "module_not_found"
)

// moduleDetail answers GET /modules/{name}@{version}.
type moduleDetail struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
	// Log is npm's output, on failure only.
	Log          string     `json:"log,omitempty"`
	SHA256       string     `json:"sha256,omitempty"`
	Size         int64      `json:"size,omitempty"`
	UnpackedSize int64      `json:"unpacked_size,omitempty"`
	Files        int        `json:"files,omitempty"`
	Packages     int        `json:"packages,omitempty"`
	Peers        []string   `json:"peers,omitempty"`
	BuiltAt      *time.Time `json:"built_at,omitempty"`
	BuiltBy      string     `json:"built_by,omitempty"` // the builder that recorded the result
	DurationMS   int64      `json:"duration_ms,omitempty"`
}

// GET /modules/{name}@{version}, any token: a module's build status, with
// npm's log when the build failed. A scoped name may come as
// @scope/name@1.0.0 or with its '/' escaped.
func (a *API) getModule(c echo.Context) error {
	raw := c.Param("*")
	spec, err := url.PathUnescape(raw)
	if err != nil {
		spec = raw
	}
	r, ok := npmspec.ParseRef(spec)
	if !ok {
		return errs.BadRequest(codeInvalidModule,
			"Module %s is not name@version with an exact version such as ms@2.1.3.", quote(spec))
	}
	if a.mods == nil {
		return errs.NotFound(codeModuleNotFound, "This node builds no modules.")
	}
	st, err := a.mods.Status(c.Request().Context(), r)
	if errors.Is(err, modstore.ErrNotFound) {
		return errs.NotFound(codeModuleNotFound, "Module %s was never asked for by any function.", r)
	}
	if err != nil {
		return storeError(err, nil, nil)
	}
	out := moduleDetail{Name: r.Name, Version: r.Version, Status: st.Status, Attempts: st.Attempts, Error: st.Error}
	if st.Status == modstore.StatusFailed {
		out.Log = st.Log
	}
	if res := st.Result; res != nil {
		built := res.BuiltAt.UTC()
		out.BuiltAt, out.BuiltBy, out.DurationMS = &built, res.Builder, res.DurationMS
		if res.Status == modstore.StatusReady {
			out.SHA256, out.Size, out.UnpackedSize, out.Files, out.Packages, out.Peers =
				res.SHA256, res.Size, res.UnpackedSize, res.Files, res.Packages, res.Peers
		}
	}
	return c.JSON(http.StatusOK, out)
}

// requestModules enqueues a function's modules before its version is stored
// (a failure here changes nothing the client can see).
func (a *API) requestModules(ctx context.Context, deps map[string]string) ([]modstore.Status, error) {
	if len(deps) == 0 {
		return nil, nil
	}
	if a.mods == nil {
		return nil, dependenciesUnsupported()
	}
	sts, err := a.mods.Request(ctx, npmspec.Refs(deps))
	if err != nil {
		return nil, storeError(err, nil, nil)
	}
	return sts, nil
}

// buildStatus is the answer of a PUT or rollback: the stored version with
// its modules' statuses, after waiting up to wait for them to be final.
func (a *API) buildStatus(c echo.Context, fv store.FunctionVersion, sts []modstore.Status, wait time.Duration) functionStatusResponse {
	if len(fv.Dependencies) == 0 || a.mods == nil {
		return statusOf(fv.Name, fv)
	}
	if wait > 0 && !allFinal(sts) {
		ctx, cancel := context.WithTimeout(c.Request().Context(), min(wait, MaxWait))
		got, err := a.mods.Wait(ctx, npmspec.Refs(fv.Dependencies))
		cancel()
		if err == nil {
			sts = got
		} else {
			a.logger.Warn("waiting for module builds failed", "function", fv.Name, "err", err)
		}
	}
	return withModules(fv, sts)
}

// functionStatus is the status of a stored version's modules, as the
// function list shows it.
func (a *API) functionStatus(ctx context.Context, fv store.FunctionVersion) string {
	if len(fv.Dependencies) == 0 || a.mods == nil {
		return statusOf(fv.Name, fv).Status
	}
	sts, err := a.mods.States(ctx, npmspec.Refs(fv.Dependencies))
	if err != nil {
		a.logger.Warn("reading module statuses failed", "function", fv.Name, "err", err)
		return modstore.StatusBuilding
	}
	return overallStatus(sts)
}

// withModules is the status response of fv with its modules' statuses.
func withModules(fv store.FunctionVersion, sts []modstore.Status) functionStatusResponse {
	out := functionStatusResponse{Name: fv.Name, Version: fv.Version, Status: overallStatus(sts),
		Modules: make([]moduleResponse, 0, len(sts)), UpdatedAt: fv.CreatedAt.UTC()}
	for _, st := range sts {
		m := moduleResponse{Name: st.Name, Version: st.Version, Status: st.Status}
		if st.Status == modstore.StatusFailed {
			m.Error = st.Error
		}
		out.Modules = append(out.Modules, m)
	}
	return out
}

// overallStatus is a function's status from its modules': failed when any
// failed, else building when any is not ready, else ready.
func overallStatus(sts []modstore.Status) string {
	status := modstore.StatusReady
	for _, st := range sts {
		switch st.Status {
		case modstore.StatusFailed:
			return modstore.StatusFailed
		case modstore.StatusReady:
		default:
			status = modstore.StatusBuilding
		}
	}
	return status
}

func allFinal(sts []modstore.Status) bool {
	for _, st := range sts {
		if !st.Final() {
			return false
		}
	}
	return true
}
