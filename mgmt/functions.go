package mgmt

import (
	"cmp"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/store"
)

// Function and module statuses (API.md).
const (
	statusReady    = "ready"
	statusBuilding = "building"
)

type putFunctionRequest struct {
	Code         string            `json:"code"`
	Dependencies map[string]string `json:"dependencies"`
	Secrets      map[string]string `json:"secrets"`
	TimeoutMS    int               `json:"timeout_ms"`
	// 0 (or absent): the node's limit; else at most the node's limit.
	MaxRequestBytes  int64 `json:"max_request_bytes"`
	MaxResponseBytes int64 `json:"max_response_bytes"`
}

type rollbackRequest struct {
	Version *int `json:"version"`
}

type moduleResponse struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Status  string `json:"status"`
	Error   string `json:"error,omitempty"` // why a failed module failed
}

// functionStatusResponse answers PUT and rollback.
type functionStatusResponse struct {
	Name      string           `json:"name"`
	Version   int              `json:"version"`
	Status    string           `json:"status"`
	Modules   []moduleResponse `json:"modules"`
	UpdatedAt time.Time        `json:"updated_at"`
}

// functionResponse answers GET of one function: secrets by name only.
type functionResponse struct {
	Name         string            `json:"name"`
	Version      int               `json:"version"`
	Code         string            `json:"code"`
	Dependencies map[string]string `json:"dependencies"`
	Secrets      []string          `json:"secrets"`
	TimeoutMS    int               `json:"timeout_ms"`
	// 0: the node's limit.
	MaxRequestBytes  int64     `json:"max_request_bytes"`
	MaxResponseBytes int64     `json:"max_response_bytes"`
	UpdatedAt        time.Time `json:"updated_at"`
}

type functionListItem struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Status    string    `json:"status"`
	UpdatedAt time.Time `json:"updated_at"`
}

type versionResponse struct {
	Version      int               `json:"version"`
	CreatedAt    time.Time         `json:"created_at"`
	CodeSize     int               `json:"code_size"`
	Dependencies map[string]string `json:"dependencies"`
	Secrets      []string          `json:"secrets"`
	TimeoutMS    int               `json:"timeout_ms"`
	// 0: the node's limit.
	MaxRequestBytes  int64 `json:"max_request_bytes"`
	MaxResponseBytes int64 `json:"max_response_bytes"`
}

// maxFunctionBody bounds a PUT body: the code (JSON escapes may grow it) plus
// the largest allowed secrets and dependencies.
func (a *API) maxFunctionBody() int64 {
	return 4*int64(a.cfg.MaxCodeBytes) + 8<<20
}

// functionAccess returns the tenant and the :name of a route on an existing
// function's name; a name that cannot exist is not found.
func (a *API) functionAccess(c echo.Context) (tenant, name string, err error) {
	tenant, err = a.tenantAccess(c)
	if err != nil {
		return "", "", err
	}
	name = c.Param("name")
	if !functionNameRE.MatchString(name) {
		return "", "", functionNotFound(tenant, name)
	}
	return tenant, name, nil
}

// PUT /tenants/:tenant/functions/:name: create (201) or update (200).
func (a *API) putFunction(c echo.Context) error {
	tenant, err := a.tenantAccess(c)
	if err != nil {
		return err
	}
	name := c.Param("name")
	if err := validateFunctionName(name); err != nil {
		return err
	}
	wait, err := parseWait(c.QueryParam("wait"))
	if err != nil {
		return err
	}
	var req putFunctionRequest
	if err := decodeJSON(c, &req, a.maxFunctionBody(), true); err != nil {
		return err
	}
	spec, err := a.functionSpec(tenant, name, req)
	if err != nil {
		return err
	}
	sts, err := a.requestModules(c.Request().Context(), spec.Dependencies)
	if err != nil {
		return err
	}
	fv, created, err := a.st.PutFunction(c.Request().Context(), spec)
	if err != nil {
		return storeError(err, tenantNotFound(tenant), nil)
	}
	a.logger.Info("function stored", "tenant", tenant, "function", name, "version", fv.Version, "created", created)
	a.hooks.FunctionChanged(tenant, name)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, a.buildStatus(c, fv, sts, wait))
}

// functionSpec validates a PUT body into what the store keeps.
func (a *API) functionSpec(tenant, name string, req putFunctionRequest) (store.FunctionSpec, error) {
	if err := validateCode(req.Code, a.cfg.MaxCodeBytes); err != nil {
		return store.FunctionSpec{}, err
	}
	compiled, err := compileCode(req.Code)
	if err != nil {
		return store.FunctionSpec{}, err
	}
	if err := validateDependencies(req.Dependencies); err != nil {
		return store.FunctionSpec{}, err
	}
	if len(req.Dependencies) > 0 && a.mods == nil {
		return store.FunctionSpec{}, dependenciesUnsupported()
	}
	if err := validateSecrets(req.Secrets); err != nil {
		return store.FunctionSpec{}, err
	}
	timeout, err := resolveTimeout(req.TimeoutMS, a.cfg)
	if err != nil {
		return store.FunctionSpec{}, err
	}
	if err := validateBodyLimit("max_request_bytes", req.MaxRequestBytes, a.cfg.MaxRequestBytes); err != nil {
		return store.FunctionSpec{}, err
	}
	if err := validateBodyLimit("max_response_bytes", req.MaxResponseBytes, a.cfg.MaxResponseBytes); err != nil {
		return store.FunctionSpec{}, err
	}
	return store.FunctionSpec{
		Tenant:           tenant,
		Name:             name,
		Code:             req.Code,
		Compiled:         compiled,
		Dependencies:     req.Dependencies,
		Secrets:          req.Secrets,
		TimeoutMS:        timeout,
		MaxRequestBytes:  req.MaxRequestBytes,
		MaxResponseBytes: req.MaxResponseBytes,
	}, nil
}

// dependenciesUnsupported: this API runs without a module service.
func dependenciesUnsupported() *errs.Error {
	return errs.BadRequest(codeDependenciesUnsupport, "Dependencies are not supported by this node yet.")
}

// GET /tenants/:tenant/functions.
func (a *API) listFunctions(c echo.Context) error {
	tenant, err := a.tenantAccess(c)
	if err != nil {
		return err
	}
	fvs, err := a.st.ListFunctions(c.Request().Context(), tenant)
	if err != nil {
		return storeError(err, tenantNotFound(tenant), nil)
	}
	out := make([]functionListItem, 0, len(fvs))
	for _, fv := range fvs {
		if fv.Deleted {
			continue
		}
		out = append(out, functionListItem{
			Name: fv.Name, Version: fv.Version, Status: a.functionStatus(c.Request().Context(), fv), UpdatedAt: fv.CreatedAt.UTC(),
		})
	}
	slices.SortFunc(out, func(x, y functionListItem) int { return cmp.Compare(x.Name, y.Name) })
	return c.JSON(http.StatusOK, out)
}

// GET /tenants/:tenant/functions/:name: code and dependencies, secret names only.
func (a *API) getFunction(c echo.Context) error {
	tenant, name, err := a.functionAccess(c)
	if err != nil {
		return err
	}
	fv, err := a.current(c, tenant, name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, functionResponse{
		Name:             name,
		Version:          fv.Version,
		Code:             fv.Code,
		Dependencies:     nonNil(fv.Dependencies),
		Secrets:          secretNames(fv),
		TimeoutMS:        fv.TimeoutMS,
		MaxRequestBytes:  fv.MaxRequestBytes,
		MaxResponseBytes: fv.MaxResponseBytes,
		UpdatedAt:        fv.CreatedAt.UTC(),
	})
}

// DELETE /tenants/:tenant/functions/:name.
func (a *API) deleteFunction(c echo.Context) error {
	tenant, name, err := a.functionAccess(c)
	if err != nil {
		return err
	}
	if err := a.st.DeleteFunction(c.Request().Context(), tenant, name); err != nil {
		return storeError(err, functionNotFound(tenant, name), nil)
	}
	a.logger.Info("function deleted", "tenant", tenant, "function", name)
	a.hooks.FunctionChanged(tenant, name)
	return noContent(c)
}

// GET /tenants/:tenant/functions/:name/versions: every stored version of a
// live function, oldest first (delete markers are not versions one can use).
func (a *API) listVersions(c echo.Context) error {
	tenant, name, err := a.functionAccess(c)
	if err != nil {
		return err
	}
	fvs, err := a.st.ListVersions(c.Request().Context(), tenant, name)
	if err != nil {
		return storeError(err, functionNotFound(tenant, name), nil)
	}
	out := make([]versionResponse, 0, len(fvs))
	for _, fv := range fvs {
		if fv.Deleted {
			continue
		}
		out = append(out, versionResponse{
			Version:          fv.Version,
			CreatedAt:        fv.CreatedAt.UTC(),
			CodeSize:         len(fv.Code),
			Dependencies:     nonNil(fv.Dependencies),
			Secrets:          secretNames(fv),
			TimeoutMS:        fv.TimeoutMS,
			MaxRequestBytes:  fv.MaxRequestBytes,
			MaxResponseBytes: fv.MaxResponseBytes,
		})
	}
	slices.SortFunc(out, func(x, y versionResponse) int { return cmp.Compare(x.Version, y.Version) })
	return c.JSON(http.StatusOK, out)
}

// POST /tenants/:tenant/functions/:name/rollback {"version":N}: version N's
// code, dependencies, secrets and timeout become a new current version.
func (a *API) rollback(c echo.Context) error {
	tenant, name, err := a.functionAccess(c)
	if err != nil {
		return err
	}
	wait, err := parseWait(c.QueryParam("wait"))
	if err != nil {
		return err
	}
	var req rollbackRequest
	if err := decodeJSON(c, &req, smallBodyLimit, true); err != nil {
		return err
	}
	version, err := validateVersion(req.Version)
	if err != nil {
		return err
	}
	if _, err := a.current(c, tenant, name); err != nil {
		return err
	}
	ctx := c.Request().Context()
	target, err := a.st.GetVersion(ctx, tenant, name, version)
	if err != nil {
		return storeError(err, versionNotFound(name, version), nil)
	}
	// Its modules were built when it was stored; asking again is free and
	// rebuilds nothing (or enqueues them if this store never built them).
	sts, err := a.requestModules(ctx, target.Dependencies)
	if err != nil {
		return err
	}
	fv, err := a.st.Rollback(ctx, tenant, name, version)
	if err != nil {
		return storeError(err, versionNotFound(name, version), nil)
	}
	a.logger.Info("function rolled back", "tenant", tenant, "function", name, "to", version, "version", fv.Version)
	a.hooks.FunctionChanged(tenant, name)
	return c.JSON(http.StatusOK, a.buildStatus(c, fv, sts, wait))
}

// current returns the current version of an existing function, or 404.
func (a *API) current(c echo.Context, tenant, name string) (store.FunctionVersion, error) {
	fv, err := a.st.GetFunction(c.Request().Context(), tenant, name)
	if err != nil {
		return store.FunctionVersion{}, storeError(err, functionNotFound(tenant, name), nil)
	}
	if fv.Deleted {
		return store.FunctionVersion{}, functionNotFound(tenant, name)
	}
	return fv, nil
}

// statusOf is a function's build status without a module service: a version
// with dependencies (stored by another node) is reported as building.
func statusOf(name string, fv store.FunctionVersion) functionStatusResponse {
	out := functionStatusResponse{
		Name:      name,
		Version:   fv.Version,
		Status:    statusReady,
		Modules:   []moduleResponse{},
		UpdatedAt: fv.CreatedAt.UTC(),
	}
	for _, dep := range sortedKeys(fv.Dependencies) {
		out.Status = statusBuilding
		out.Modules = append(out.Modules, moduleResponse{Name: dep, Version: fv.Dependencies[dep], Status: statusBuilding})
	}
	return out
}

// secretNames lists a version's secret names, sorted, never the values.
func secretNames(fv store.FunctionVersion) []string {
	names := slices.Clone(fv.SecretNames)
	if len(names) == 0 {
		names = sortedKeys(fv.Secrets)
	}
	slices.Sort(names)
	return slices.Compact(nonNilSlice(names))
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
