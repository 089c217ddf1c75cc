package node

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// startDebug serves pprof on its own listener, off the public one, only when
// --debug-listen is set.
func (n *Node) startDebug() error {
	if n.cfg.DebugListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", n.cfg.DebugListen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn("debug listener stopped", "err", err)
		}
	}()
	n.onStop(func(ctx context.Context) { _ = srv.Shutdown(ctx) })
	n.log.Info("pprof debug listener", "addr", ln.Addr().String())
	return nil
}
