// Package images builds Wharf's runtime image: the locked-down image every
// tenant function container runs. Because Wharf must work without any
// container registry, the image is built FROM scratch out of the host's own
// files: its node binary and the shared libraries it links, npm (the module
// builder runs npm in this image), the CA bundle, a minimal /etc and the
// runner (images/runner). The build context is deterministic, so its sha256
// names the image: the tag changes exactly when one of those files changes.
//
// Dockerfile.node in this directory builds an equivalent image on the
// upstream node image for installations that do have a registry.
package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/wharfhq/wharf/engine"
)

const (
	// RunnerPort is the TCP port the runner listens on inside the container.
	RunnerPort = 8080
	// UID is the uid and gid functions run as (user "wharf" in the image).
	UID = 10001

	// Repository is the repository part of the runtime image tag.
	Repository = "wharf-runtime"

	// Paths inside the image.
	NodePath     = "/usr/bin/node"
	NPMPath      = "/usr/bin/npm" // symlink to npm-cli.js; run it as `node /usr/bin/npm` (there is no /usr/bin/env)
	RunnerPath   = "/wharf/runner.js"
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
)

// Options selects the host files that go into the image. The zero value is
// the production configuration: every field has a default.
type Options struct {
	// NodePath is the host's node binary. Default: "node" on $PATH, symlinks resolved.
	NodePath string
	// RunnerJS is the runner source. Default: runner.Source (images/runner).
	RunnerJS []byte
	// SkipNPM leaves npm out of the image. Default false: npm is included,
	// because the module builder runs npm in this image.
	SkipNPM bool
	// CABundle is the host's CA bundle. Default: /etc/ssl/certs/ca-certificates.crt.
	CABundle string
}

// Image names a built runtime image.
type Image struct {
	Tag  string // "wharf-runtime:<first 16 hex digits of Hash>"
	Hash string // full hex sha256 of the build context
}

// TagFor returns the image tag for a build-context hash.
func TagFor(hash string) string {
	if len(hash) > 16 {
		hash = hash[:16]
	}
	return Repository + ":" + hash
}

// Ensure makes sure the runtime image for the host's current files exists in
// the engine, building it if it does not, and returns its tag and hash.
func Ensure(ctx context.Context, eng engine.Engine, opts Options, logger *slog.Logger) (Image, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	tarBytes, hash, err := Context(opts)
	if err != nil {
		return Image{}, fmt.Errorf("build runtime image: %w", err)
	}
	img := Image{Tag: TagFor(hash), Hash: hash}
	exists, err := eng.ImageExists(ctx, img.Tag)
	if err != nil {
		return Image{}, fmt.Errorf("build runtime image: check whether %s exists: %w", img.Tag, err)
	}
	labels := map[string]string{engine.LabelImage: hash}
	if exists {
		logger.Debug("runtime image present", "tag", img.Tag)
		pruneCopies(ctx, eng, labels, logger)
		return img, nil
	}
	start := time.Now()
	logger.Info("building runtime image", "tag", img.Tag, "context_bytes", len(tarBytes))
	if err := eng.BuildImage(ctx, img.Tag, bytes.NewReader(tarBytes), labels); err != nil {
		return Image{}, fmt.Errorf("build runtime image: %w", err)
	}
	logger.Info("built runtime image", "tag", img.Tag, "duration", time.Since(start).Round(time.Millisecond))
	pruneCopies(ctx, eng, labels, logger)
	return img, nil
}

// copyGrace is how old an untagged copy of the image must be before it is
// removed: far longer than a build takes from commit to tag, so a build
// racing this one never loses its image before it is tagged.
const copyGrace = time.Minute

// pruneCopies removes untagged copies of this image. Processes that start
// together (nodes, test packages) may all find the image missing and build it;
// the last build keeps the tag and each other one leaves an untagged copy of
// about 100 MB that nothing will use again. It is best effort: a copy that
// stays costs disk, not correctness.
func pruneCopies(ctx context.Context, eng engine.Engine, labels map[string]string, logger *slog.Logger) {
	n, err := eng.PruneImages(ctx, labels, time.Now().Add(-copyGrace))
	if err != nil {
		logger.Warn("could not remove untagged copies of the runtime image", "err", err)
	}
	if n > 0 {
		logger.Info("removed untagged copies of the runtime image", "count", n)
	}
}
