package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/wharfhq/wharf/config"
	"github.com/wharfhq/wharf/engine"
	"github.com/wharfhq/wharf/node"
)

func serve(args []string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(config.CmdServe, args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	eng, err := engine.NewDocker()
	if err != nil {
		return err
	}
	defer eng.Close()
	ctx, stop := signalContext()
	defer stop()
	n, err := node.Start(ctx, cfg, eng, logger)
	if err != nil {
		return err
	}
	applyGC(cfg, os.Getenv, logger)
	printBanner(stdout, n)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-n.Done():
	}
	stop() // a second signal now kills the process the default way
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		return err
	}
	return serveErr
}

func printBanner(w io.Writer, n *node.Node) {
	url := "http://" + n.Addr()
	fmt.Fprintf(w, "Wharf node %s serving on %s (runtime image %s)\n", n.ID(), url, n.Image().Tag)
	if n.GeneratedAdminToken == "" {
		fmt.Fprintln(w, "Admin token: the one printed on first start (stored hashed), or --admin-token.")
		return
	}
	tok := n.GeneratedAdminToken
	fmt.Fprintf(w, `
Admin token (shown once, stored hashed; keep it):
  %s

Try it:
  export WHARF_ADMIN_TOKEN=%s
  TENANT_TOKEN=$(curl -s -X POST %s/api/v1/tenants -H "Authorization: Bearer $WHARF_ADMIN_TOKEN" \
      -d '{"name":"acme"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
  curl -s -X PUT %s/api/v1/tenants/acme/functions/hello -H "Authorization: Bearer $TENANT_TOKEN" \
      -d '{"code":"module.exports = function (ctx, cb) { cb(null, {hello: ctx.query.name || \"world\"}) }"}'
  curl -s '%s/run/acme/hello?name=wharf'
`, tok, tok, url, url, url)
}
