package mgmt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/store"
)

func TestStoreError(t *testing.T) {
	given := errs.BadRequest("given", "Given.")
	for _, tc := range []struct {
		name     string
		err      error
		notFound bool
		exists   bool
		status   int
		code     string
		retry    bool
	}{
		{"not found", fmt.Errorf("x: %w", store.ErrNotFound), true, false, 404, codeTenantNotFound, false},
		{"not found unmapped", store.ErrNotFound, false, false, 500, codeInternal, false},
		{"exists", fmt.Errorf("x: %w", store.ErrExists), false, true, 409, codeTenantExists, false},
		{"conflict", fmt.Errorf("x: %w", store.ErrConflict), true, true, 503, codeStoreBusy, true},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true, true, 503, codeStoreUnavailable, true},
		{"net timeout", &net.OpError{Op: "dial", Err: timeoutErr{}}, true, true, 503, codeStoreUnavailable, true},
		{"other", errors.New("boom"), true, true, 500, codeInternal, false},
		{"already mapped", given, true, true, 400, "given", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nf, ex *errs.Error
			if tc.notFound {
				nf = tenantNotFound("acme")
			}
			if tc.exists {
				ex = errs.Conflict(codeTenantExists, "Tenant %q already exists.", "acme")
			}
			got := storeError(tc.err, nf, ex)
			wantCode(t, got, tc.status, tc.code)
			if e := errs.As(got); (e.RetryAfter > 0) != tc.retry {
				t.Errorf("RetryAfter %d", e.RetryAfter)
			}
			if tc.name != "already mapped" && !errors.Is(got, tc.err) {
				t.Errorf("the cause is not kept: %v", got)
			}
		})
	}
	if storeError(nil, nil, nil) != nil {
		t.Fatal("nil error mapped to an error")
	}
	if got := errs.StatusOf(storeError(errors.New("x"), nil, nil)); got != http.StatusInternalServerError {
		t.Fatalf("status %d", got)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
