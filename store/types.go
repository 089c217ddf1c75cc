package store

import (
	"errors"
	"time"
)

// Sentinel errors; callers test with errors.Is and map them to HTTP in one place.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
)

// Tenant is a customer of the SaaS running Wharf.
type Tenant struct {
	Name      string    `bson:"_id" json:"name"`
	CreatedAt time.Time `bson:"created_at" json:"created_at"`
	// UID is random per incarnation of the name: a tenant deleted and created
	// again under the same name has a new UID, so leftovers of the old one
	// (a token minted during the delete) never apply to the new one.
	UID string `bson:"uid" json:"-"`
}

// Token is a tenant's API token. Only its hash is stored; the secret is shown once.
type Token struct {
	ID          string    `bson:"_id" json:"id"`
	Tenant      string    `bson:"tenant" json:"-"`
	Description string    `bson:"description" json:"description"`
	Hash        string    `bson:"hash" json:"-"`
	CreatedAt   time.Time `bson:"created_at" json:"created_at"`
	// TenantUID is the Tenant.UID the token was minted for; Authenticate requires it to match.
	TenantUID string `bson:"tenant_uid" json:"-"`
}

// Principal is who a token authenticates.
type Principal struct {
	Admin   bool
	Tenant  string // set for tenant tokens
	TokenID string // set for tenant tokens
}

// FunctionSpec is what a client asks to store as the next version of a function.
type FunctionSpec struct {
	Tenant       string
	Name         string
	Code         string
	Compiled     string            // what the runner runs instead of Code ('use latest', package compiler); "": Code
	Dependencies map[string]string // npm name -> exact version
	Secrets      map[string]string // plaintext; sealed before it reaches the store
	TimeoutMS    int
	// Body limits of this function's requests and responses; 0: the node's.
	MaxRequestBytes  int64
	MaxResponseBytes int64
}

// FunctionVersion is one immutable, append-only version of a function.
// The current version of a function is the one with the highest Version;
// a delete appends a version with Deleted set (a tombstone).
type FunctionVersion struct {
	Tenant       string            `bson:"tenant"`
	Name         string            `bson:"name"`
	Version      int               `bson:"version"`
	Code         string            `bson:"code,omitempty"`
	Compiled     string            `bson:"compiled,omitempty"` // Code's runnable form when it differs; the API shows Code
	Dependencies map[string]string `bson:"dependencies,omitempty"`
	SecretNames  []string          `bson:"secret_names,omitempty"`
	// SecretsSealed is the AES-GCM sealed JSON object of secrets.
	SecretsSealed []byte `bson:"secrets_sealed,omitempty"`
	TimeoutMS     int    `bson:"timeout_ms"`
	// Body limits of this function; 0 means the node's limit at invocation.
	MaxRequestBytes  int64     `bson:"max_request_bytes,omitempty"`
	MaxResponseBytes int64     `bson:"max_response_bytes,omitempty"`
	Deleted          bool      `bson:"deleted,omitempty"`
	CreatedAt        time.Time `bson:"created_at"`
	// TenantUID is the Tenant.UID the version was written under.
	TenantUID string `bson:"tenant_uid,omitempty" json:"-"`

	// Secrets is filled (opened) on read by GetFunction and GetVersion; never stored.
	Secrets map[string]string `bson:"-"`
}
