package images

import "github.com/wharfhq/wharf/images/runner"

// defaultRunner is the runner source used when Options.RunnerJS is nil.
func defaultRunner() []byte { return runner.Source }
