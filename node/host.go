package node

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wharfhq/wharf/metrics"
	"github.com/wharfhq/wharf/store"
)

// MemTotal is the machine's memory in bytes from /proc/meminfo (0 if unknown).
func MemTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// timedSource measures the catalog's store reads.
type timedSource struct {
	st *store.Store
	m  *metrics.Metrics
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

func (t timedSource) GetFunction(ctx context.Context, tenant, name string) (store.FunctionVersion, error) {
	start := time.Now()
	v, err := t.st.GetFunction(ctx, tenant, name)
	outcomeErr := err
	if err != nil && isNotFound(err) {
		outcomeErr = nil // a miss is a successful read
	}
	t.m.StoreOp("get_function", time.Since(start), outcomeErr)
	return v, err
}
