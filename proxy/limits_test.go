package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/wharfhq/wharf/errs"
)

func TestLimitResponse(t *testing.T) {
	tests := []struct {
		name     string
		length   int64 // declared Content-Length, -1 unknown (chunked)
		body     string
		limit    int64
		refused  bool   // refused before anything is sent
		want     string // what reading delivers
		cutShort bool   // reading ends with errResponseTooLarge
	}{
		{"small, declared", 5, "hello", 10, false, "hello", false},
		{"exactly the limit, declared", 10, "0123456789", 10, false, "0123456789", false},
		{"declared over the limit", 11, "0123456789A", 10, true, "", false},
		{"small, streamed", -1, "hello", 10, false, "hello", false},
		{"exactly the limit, streamed", -1, "0123456789", 10, false, "0123456789", false},
		{"streamed past the limit", -1, "0123456789ABCDEF", 10, false, "0123456789", true},
		{"lying length, streamed past the limit", 5, "0123456789ABCDEF", 10, false, "0123456789", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte per read exercises the accounting at every offset.
			resp := &http.Response{ContentLength: tt.length, Body: io.NopCloser(iotest.OneByteReader(strings.NewReader(tt.body)))}
			err := limitResponse(resp, tt.limit, nil)
			if tt.refused {
				if !errors.Is(err, errResponseTooLarge) {
					t.Fatalf("err %v, want errResponseTooLarge", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			_, err = io.Copy(&got, resp.Body)
			if got.String() != tt.want {
				t.Errorf("delivered %q, want %q", got.String(), tt.want)
			}
			if tt.cutShort != errors.Is(err, errResponseTooLarge) {
				t.Errorf("read error %v, cut short: %v", err, tt.cutShort)
			}
		})
	}
	// Large reads too.
	resp := &http.Response{ContentLength: -1, Body: io.NopCloser(bytes.NewReader(make([]byte, 5000)))}
	if err := limitResponse(resp, 1000, nil); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if n != 1000 || !errors.Is(err, errResponseTooLarge) {
		t.Fatalf("copied %d, err %v; want 1000 and errResponseTooLarge", n, err)
	}
}

func TestResponseTooLargeIs502(t *testing.T) {
	e := errs.As(responseTooLarge(10))
	if e == nil || e.Status != http.StatusBadGateway || e.Code != "response_too_large" {
		t.Fatalf("%+v", e)
	}
}
