package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/wharfhq/wharf/builder"
	"github.com/wharfhq/wharf/config"
	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/images"
	"github.com/wharfhq/wharf/modstore"
	"github.com/wharfhq/wharf/node"
)

// builderCmd runs a module builder alone against the cluster's store: more
// build capacity, on machines of its own. It needs Docker and registry
// access, not the secrets key.
func builderCmd(args []string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(config.CmdBuilder, args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	id, err := node.LoadID(cfg)
	if err != nil {
		return err
	}
	logger = logger.With("builder", id)
	ctx, stop := signalContext()
	defer stop()
	eng, err := engine.NewDocker()
	if err != nil {
		return err
	}
	defer eng.Close()
	if err := eng.Ping(ctx); err != nil {
		return fmt.Errorf("no Docker engine answers: %w", err)
	}
	image := cfg.Image
	if image == "" {
		img, err := images.Ensure(ctx, eng, images.Options{}, logger)
		if err != nil {
			return err
		}
		image = img.Tag
	} else if ok, err := eng.ImageExists(ctx, image); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("image %s does not exist on this engine", image)
	}
	q, err := modstore.Dial(ctx, cfg.MongoURI, "", modstore.Options{MaxAttempts: cfg.Build.Attempts})
	if err != nil {
		return err
	}
	defer q.Close(context.Background())
	bn, err := node.StartBuildNet(ctx, cfg, id, eng, logger)
	if err != nil {
		return err
	}
	// After Run: its builds' containers are gone by then.
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := bn.Close(cctx); err != nil {
			logger.Warn("remove the build network", "err", err)
		}
	}()
	b, err := builder.New(node.BuilderConfig(cfg, id, image, bn), eng, q, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Wharf builder %s building modules (runtime image %s, %d at once)\n", id, image, cfg.Build.Concurrency)
	// Run returns once ctx ends and the builds under way have handed their
	// jobs back (their containers removed).
	b.Run(ctx)
	return nil
}
