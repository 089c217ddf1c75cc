package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/wharfhq/wharf/config"
	"github.com/wharfhq/wharf/store"
)

// storeCmd runs the embedded MongoDB-wire store (FerretDB on SQLite) alone,
// for a local multi-node setup and tests; production clusters use MongoDB.
func storeCmd(args []string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(config.CmdStore, args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	ctx, stop := signalContext()
	defer stop()
	emb, err := store.StartEmbedded(ctx, filepath.Join(cfg.DataDir, "db"), cfg.StoreListen, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Wharf store serving %s (data in %s)\n", emb.URI(), cfg.DataDir)
	<-ctx.Done()
	emb.Close()
	return nil
}
