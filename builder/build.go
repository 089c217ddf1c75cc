package builder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	units "github.com/docker/go-units"

	"github.com/wharfhq/wharf/closure"
	"github.com/wharfhq/wharf/images"
	"github.com/wharfhq/wharf/npmspec"
)

// watchInterval is how often a running build's output size is checked.
const watchInterval = time.Second

// buildOutput is what one npm run produced.
type buildOutput struct {
	dir     string // the build's directory; removed by cleanup
	archive string // the packed closure, when the build succeeded
	stats   closure.Stats
	log     string
	fail    *failure
}

func (o *buildOutput) cleanup() {
	if o.dir != "" {
		_ = os.RemoveAll(o.dir)
	}
}

// build runs npm for r in a throwaway container and packs the result. The
// container is removed whatever happens; a cancelled ctx (shutdown, lease
// lost) kills it.
func (b *Builder) build(ctx context.Context, r npmspec.Ref, log *slog.Logger) *buildOutput {
	out := &buildOutput{}
	transient := func(format string, args ...any) *buildOutput {
		out.fail = &failure{Message: fmt.Sprintf(format, args...)}
		return out
	}
	dir, err := os.MkdirTemp(b.cfg.WorkDir, "build-")
	if err != nil {
		return transient("creating the build directory: %v", err)
	}
	out.dir = dir
	outDir := filepath.Join(dir, "out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		return transient("creating the output directory: %v", err)
	}
	// npm runs as the image's unprivileged user and writes only here.
	if err := os.Chown(outDir, images.UID, images.UID); err != nil {
		return transient("handing the output directory to uid %d: %v", images.UID, err)
	}

	name := "wharf-build-" + b.cfg.ID + "-" + randHex(4)
	spec := Spec(b.cfg, name, r, outDir)
	id, err := b.eng.CreateContainer(ctx, spec)
	defer func() {
		// Detached: a cancelled build must still lose its container. By name
		// when the create call failed, since the engine may have created it.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		ref := id
		if ref == "" {
			ref = name
		}
		if err := b.eng.RemoveContainer(rctx, ref); err != nil {
			log.Warn("removing the build container failed", "container", name, "err", err)
		}
	}()
	if err != nil {
		return transient("creating the build container: %v", err)
	}
	b.mu.Lock()
	b.builds++
	b.mu.Unlock()
	log.Info("building", "container", name)
	if err := b.eng.StartContainer(ctx, id); err != nil {
		return transient("starting the build container: %v", err)
	}

	tctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	var tooLarge atomic.Bool
	go func() { // a module that would fill the disk is stopped early
		t := time.NewTicker(watchInterval)
		defer t.Stop()
		for {
			select {
			case <-tctx.Done():
				return
			case <-t.C:
			}
			if dirSize(outDir) > b.cfg.MaxClosure {
				tooLarge.Store(true)
				cancel()
				return
			}
		}
	}()
	code, waitErr := b.eng.WaitContainer(tctx, id)

	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	stdout, stderr, _ := b.eng.ContainerLogs(lctx, id)
	lcancel()
	out.log = tail(string(stdout)+string(stderr), maxLogBytes)

	switch {
	case ctx.Err() != nil:
		return out // the caller knows why
	case tooLarge.Load():
		return tooLargeFailure(out, b.cfg.MaxClosure)
	case errors.Is(tctx.Err(), context.DeadlineExceeded):
		return transient("npm install did not finish within %v", b.cfg.Timeout)
	case waitErr != nil:
		return transient("waiting for the build container: %v", waitErr)
	case code != 0:
		ictx, icancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		info, _ := b.eng.InspectContainer(ictx, id)
		icancel()
		f := classifyNPM(code, info.OOMKilled, out.log)
		out.fail = &f
		return out
	}

	archive := filepath.Join(dir, "closure.tar.gz")
	f, err := os.OpenFile(archive, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return transient("creating the closure file: %v", err)
	}
	stats, err := closure.Pack(outDir, f, b.cfg.MaxClosure)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case errors.Is(err, closure.ErrTooLarge):
		return tooLargeFailure(out, b.cfg.MaxClosure)
	case err != nil:
		return transient("packing the closure: %v", err)
	}
	out.archive, out.stats = archive, stats
	return out
}

// tooLargeFailure fails a build whose closure exceeds the limit, whether the
// watchdog stopped npm or packing found it.
func tooLargeFailure(out *buildOutput, limit int64) *buildOutput {
	out.fail = &failure{Message: fmt.Sprintf("the module's closure is larger than the limit of %s (--max-closure)", mb(limit)), Permanent: true}
	return out
}

// dirSize is the bytes of the regular files under dir (best effort).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// tail keeps the last max bytes of s (npm's error is at the end).
func tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return "…" + s[len(s)-max:]
}

func mb(n int64) string { return units.BytesSize(float64(n)) }
