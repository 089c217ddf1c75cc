package bench

import (
	"os"
	"testing"

	"github.com/wharfhq/wharf/integration/wharftest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	wharftest.RemoveBinary()
	os.Exit(code)
}
