package wtstorage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/store"
)

// The protocol the runner (images/runner/runner.js) speaks on the socket:
//
//	GET /v1/functions/{fn}/storage   200 {"rev": N, "data": <JSON>}   (no "data": nothing stored; rev 0: never)
//	PUT /v1/functions/{fn}/storage   {"rev": N, "force": bool, "data": <JSON or null>}
//	                                 200 {"rev": M}: written; null deletes
//	                                 409 {"code": "storage_conflict", "rev": N, "data": ...}: what is stored now
//	                                 413 storage_too_large, 400 bad body, 404 no such function, 503 store
//
// Errors are {"code", "error"} like every Wharf error.

// opTimeout bounds one storage call, store included.
const opTimeout = 15 * time.Second

// maxInFlight bounds one container's storage calls at once: the store is
// shared by every tenant of the node (the embedded one has one connection).
const maxInFlight = 4

// maxBody is the largest PUT body: a full document plus the envelope; the
// document itself is measured after compaction by the store.
const maxBody = store.MaxStorageBytes + 64<<10

type getAnswer struct {
	Rev  int64           `json:"rev"`
	Data json.RawMessage `json:"data,omitempty"`
}

type putBody struct {
	Rev   int64           `json:"rev"`
	Force bool            `json:"force"`
	Data  json.RawMessage `json:"data"`
}

type conflictAnswer struct {
	errs.Body
	Rev  int64           `json:"rev"`
	Data json.RawMessage `json:"data,omitempty"`
}

func (s *Server) handler(tenant string) http.Handler {
	slots := make(chan struct{}, maxInFlight)
	mux := http.NewServeMux()
	serve := func(op func(ctx context.Context, w http.ResponseWriter, r *http.Request, fn string) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
			defer cancel()
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			case <-ctx.Done():
				s.fail(w, tenant, errs.Unavailable("storage_busy", 1, ctx.Err(), "Too many storage calls at once; retry shortly."))
				return
			}
			fn := r.PathValue("fn")
			if _, err := s.fns.Get(ctx, tenant, fn); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					err = errs.NotFound("function_not_found", "Function %q not found.", fn)
				}
				s.fail(w, tenant, err)
				return
			}
			if err := op(ctx, w, r, fn); err != nil {
				s.fail(w, tenant, err)
			}
		}
	}
	mux.Handle("GET /v1/functions/{fn}/storage", serve(func(ctx context.Context, w http.ResponseWriter, _ *http.Request, fn string) error {
		st, err := s.backend.GetStorage(ctx, tenant, fn)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, getAnswer{Rev: st.Rev, Data: st.Data})
		return nil
	}))
	mux.Handle("PUT /v1/functions/{fn}/storage", serve(func(ctx context.Context, w http.ResponseWriter, r *http.Request, fn string) error {
		body, err := readPut(w, r)
		if err != nil {
			return err
		}
		st, err := s.backend.SetStorage(ctx, tenant, fn, store.StorageWrite{Expected: body.Rev, Force: body.Force, Data: body.Data})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, getAnswer{Rev: st.Rev})
		return nil
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, tenant, errs.NotFound("not_found", "No such storage call."))
	})
	return mux
}

func readPut(w http.ResponseWriter, r *http.Request) (putBody, error) {
	var b bytes.Buffer
	if _, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, maxBody)); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return putBody{}, errs.New(http.StatusRequestEntityTooLarge, "storage_too_large",
				"The storage document is larger than %d bytes.", store.MaxStorageBytes)
		}
		return putBody{}, errs.BadRequest("bad_body", "The request body could not be read.")
	}
	dec := json.NewDecoder(&b)
	dec.DisallowUnknownFields()
	var body putBody
	if err := dec.Decode(&body); err != nil || dec.More() {
		return putBody{}, errs.BadRequest("bad_body", "The body must be one JSON object {rev, force, data}.")
	}
	if body.Rev < 0 {
		return putBody{}, errs.BadRequest("bad_body", "rev must not be negative.")
	}
	return body, nil
}

// fail answers err in Wharf's error shape; store errors get their status here.
func (s *Server) fail(w http.ResponseWriter, tenant string, err error) {
	var conflict *store.StorageConflict
	switch {
	case errors.As(err, &conflict):
		writeJSON(w, http.StatusConflict, conflictAnswer{
			Body: errs.Body{Code: "storage_conflict", Error: "The storage document changed since it was read."},
			Rev:  conflict.Current.Rev, Data: conflict.Current.Data,
		})
		return
	case errors.Is(err, store.ErrStorageTooLarge):
		err = errs.New(http.StatusRequestEntityTooLarge, "storage_too_large",
			"The storage document is larger than %d bytes.", store.MaxStorageBytes)
	case errors.Is(err, store.ErrStorageInvalid):
		err = errs.BadRequest("bad_data", "The storage data must be one JSON value.")
	}
	e := errs.As(err)
	if e == nil {
		s.log.Warn("storage call failed", "tenant", tenant, "err", err)
		e = errs.Unavailable("store_unavailable", 1, err, "Storage is unavailable right now; retry shortly.")
	}
	writeJSON(w, e.Status, errs.Body{Code: e.Code, Error: e.Message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v) // plain structs of strings, numbers and valid JSON
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
