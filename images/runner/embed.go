// Package runner holds the Node.js program that runs a tenant's functions inside its container.
//
// The image builder copies Source to /wharf/runner.js; the container starts it as `node /wharf/runner.js`. The wire
// protocol (WHARF_* environment, x-wharf-* request headers, the functions/<name>/<version>/ layout under the app
// directory and the /_wharf/ready probe) is described at the top of runner.js.
package runner

import _ "embed"

// Source is the runner program, a single dependency-free CommonJS file.
//
//go:embed runner.js
var Source []byte
