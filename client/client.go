// Package client is a Go client of Wharf's management API (API.md): what
// the `wharf` CLI uses, usable by any Go program.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to one Wharf node (or a load balancer in front of several).
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
	// stream is used for live log streams: no overall timeout.
	stream *http.Client
}

// New returns a client of the node at baseURL (e.g. http://127.0.0.1:8080)
// authenticating with token.
func New(baseURL, token string) (*Client, error) {
	u, err := ParseURL(baseURL)
	if err != nil {
		return nil, err
	}
	return &Client{base: u, token: token, http: &http.Client{Timeout: 5 * time.Minute}, stream: &http.Client{}}, nil
}

// ParseURL checks a node URL: http or https, a host, nothing after the path.
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(strings.TrimSpace(s), "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q is not a Wharf URL such as http://127.0.0.1:8080", s)
	}
	return u, nil
}

// URL is the node's base URL.
func (c *Client) URL() string { return c.base.String() }

// Error is an error answer of the API: its status and its JSON body.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// IsCode tells whether err is an API error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// path joins escaped path segments under the base URL.
func (c *Client) path(segments ...string) string {
	var b strings.Builder
	b.WriteString(strings.TrimRight(c.base.String(), "/"))
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

func (c *Client) api(segments ...string) string {
	return c.path(append([]string{"api", "v1"}, segments...)...)
}

// do sends a request with an optional JSON body and decodes a JSON answer
// into out (when not nil). A non-2xx answer is an *Error.
func (c *Client) do(ctx context.Context, method, target string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	c.auth(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return c.unreachable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return readError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("the node at %s answered something that is not the expected JSON: %w", c.base, err)
	}
	return nil
}

func (c *Client) auth(req *http.Request) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// unreachable phrases a transport error as one sentence naming the node.
func (c *Client) unreachable(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("cannot reach the Wharf node at %s: %w", c.base, err)
}

// readError turns an error answer into an *Error: the API's JSON shape, or
// the status text for anything else (a proxy's HTML page, say).
func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(b, &body) == nil && body.Error != "" {
		return &Error{Status: resp.StatusCode, Code: body.Code, Message: body.Error}
	}
	return &Error{Status: resp.StatusCode, Code: "http_" + fmt.Sprint(resp.StatusCode),
		Message: fmt.Sprintf("The node answered %d %s.", resp.StatusCode, http.StatusText(resp.StatusCode))}
}

// Whoami is who a token is.
type Whoami struct {
	Admin   bool   `json:"admin"`
	Tenant  string `json:"tenant,omitempty"`
	TokenID string `json:"token_id,omitempty"`
}

// Whoami asks the node who the client's token is.
func (c *Client) Whoami(ctx context.Context) (Whoami, error) {
	var w Whoami
	return w, c.do(ctx, http.MethodGet, c.api("whoami"), nil, &w)
}

// Tenant is a tenant as listed.
type Tenant struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// TenantCreated is a new tenant with its first token (shown once).
type TenantCreated struct {
	Name  string `json:"name"`
	Token string `json:"token"`
}

func (c *Client) CreateTenant(ctx context.Context, name string) (TenantCreated, error) {
	var out TenantCreated
	return out, c.do(ctx, http.MethodPost, c.api("tenants"), map[string]string{"name": name}, &out)
}

func (c *Client) ListTenants(ctx context.Context) ([]Tenant, error) {
	var out []Tenant
	return out, c.do(ctx, http.MethodGet, c.api("tenants"), nil, &out)
}

func (c *Client) DeleteTenant(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, c.api("tenants", name), nil, nil)
}

// Token is a tenant token as listed (never its secret).
type Token struct {
	ID          string    `json:"id"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
}

// TokenCreated is a new token with its secret (shown once).
type TokenCreated struct {
	ID          string    `json:"id"`
	Token       string    `json:"token"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
}

func (c *Client) CreateToken(ctx context.Context, tenant, description string) (TokenCreated, error) {
	var out TokenCreated
	return out, c.do(ctx, http.MethodPost, c.api("tenants", tenant, "tokens"), map[string]string{"description": description}, &out)
}

func (c *Client) ListTokens(ctx context.Context, tenant string) ([]Token, error) {
	var out []Token
	return out, c.do(ctx, http.MethodGet, c.api("tenants", tenant, "tokens"), nil, &out)
}

func (c *Client) RevokeToken(ctx context.Context, tenant, id string) error {
	return c.do(ctx, http.MethodDelete, c.api("tenants", tenant, "tokens", id), nil, nil)
}

// FunctionSpec is the body of a deploy.
type FunctionSpec struct {
	Code         string            `json:"code"`
	Dependencies map[string]string `json:"dependencies,omitempty"`
	Secrets      map[string]string `json:"secrets,omitempty"`
	TimeoutMS    int               `json:"timeout_ms,omitempty"`
}

// Module is one dependency's build status.
type Module struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Status  string `json:"status"`
}

// FunctionStatus answers a deploy or a rollback.
type FunctionStatus struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Status    string    `json:"status"`
	Modules   []Module  `json:"modules"`
	UpdatedAt time.Time `json:"updated_at"`
}

// PutFunction creates or updates a function; wait > 0 asks the node to wait
// that long for module builds. created tells a create (201) from an update.
func (c *Client) PutFunction(ctx context.Context, tenant, name string, spec FunctionSpec, wait time.Duration) (FunctionStatus, error) {
	target := c.api("tenants", tenant, "functions", name)
	if wait > 0 {
		target += "?wait=" + url.QueryEscape(wait.String())
	}
	var out FunctionStatus
	return out, c.do(ctx, http.MethodPut, target, spec, &out)
}

// Function is a function's current version: code, dependencies, secret names.
type Function struct {
	Name         string            `json:"name"`
	Version      int               `json:"version"`
	Code         string            `json:"code"`
	Dependencies map[string]string `json:"dependencies"`
	Secrets      []string          `json:"secrets"`
	TimeoutMS    int               `json:"timeout_ms"`
	UpdatedAt    time.Time         `json:"updated_at"`
}

func (c *Client) GetFunction(ctx context.Context, tenant, name string) (Function, error) {
	var out Function
	return out, c.do(ctx, http.MethodGet, c.api("tenants", tenant, "functions", name), nil, &out)
}

// FunctionItem is a function as listed.
type FunctionItem struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	Status    string    `json:"status"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (c *Client) ListFunctions(ctx context.Context, tenant string) ([]FunctionItem, error) {
	var out []FunctionItem
	return out, c.do(ctx, http.MethodGet, c.api("tenants", tenant, "functions"), nil, &out)
}

func (c *Client) DeleteFunction(ctx context.Context, tenant, name string) error {
	return c.do(ctx, http.MethodDelete, c.api("tenants", tenant, "functions", name), nil, nil)
}

// Version is one stored version of a function.
type Version struct {
	Version      int               `json:"version"`
	CreatedAt    time.Time         `json:"created_at"`
	CodeSize     int               `json:"code_size"`
	Dependencies map[string]string `json:"dependencies"`
	Secrets      []string          `json:"secrets"`
	TimeoutMS    int               `json:"timeout_ms"`
}

func (c *Client) ListVersions(ctx context.Context, tenant, name string) ([]Version, error) {
	var out []Version
	return out, c.do(ctx, http.MethodGet, c.api("tenants", tenant, "functions", name, "versions"), nil, &out)
}

func (c *Client) Rollback(ctx context.Context, tenant, name string, version int) (FunctionStatus, error) {
	var out FunctionStatus
	return out, c.do(ctx, http.MethodPost, c.api("tenants", tenant, "functions", name, "rollback"), map[string]int{"version": version}, &out)
}

// ModuleBuild is a module's build status (GET /api/v1/modules/name@version).
type ModuleBuild struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Status  string `json:"status"`
	Log     string `json:"log"`
	Error   string `json:"error"`
}

// GetModule asks for one module's build status.
func (c *Client) GetModule(ctx context.Context, name, version string) (ModuleBuild, error) {
	var raw map[string]any
	if err := c.do(ctx, http.MethodGet, c.api("modules", name+"@"+version), nil, &raw); err != nil {
		return ModuleBuild{}, err
	}
	str := func(keys ...string) string {
		for _, k := range keys {
			if s, ok := raw[k].(string); ok && s != "" {
				return s
			}
		}
		return ""
	}
	return ModuleBuild{Name: name, Version: version, Status: str("status"),
		Log: str("log", "build_log"), Error: str("error")}, nil
}

// Response is a function's answer to an invocation.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Invoke calls a function as a webhook caller would: method and body as
// given, path appended to /run/tenant/name.
func (c *Client) Invoke(ctx context.Context, tenant, name, method, path string, body []byte, header http.Header) (Response, error) {
	target := c.path("run", tenant, name)
	if path != "" {
		target += "/" + strings.TrimLeft(path, "/")
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return Response{}, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Response{}, c.unreachable(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("reading the function's answer: %w", err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}
