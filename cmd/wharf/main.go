// Command wharf is Wharf's one binary: the node (serve), the standalone
// embedded store (store), and the client commands of package cli.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/wharfhq/wharf/cli"
	"github.com/wharfhq/wharf/config"
)

const usage = `wharf — self-hosted serverless webhooks

Usage:
  wharf serve [flags]    run a node: proxy, management API, containers (wharf serve --help)
  wharf store [flags]    run the embedded MongoDB-wire store alone (wharf store --help)
  wharf builder [flags]  run a module builder alone against --mongo-uri (wharf builder --help)
  wharf version          print the version

Every flag also has a WHARF_* environment variable.

` + cli.Usage

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	if slices.Contains(cli.Commands, cmd) {
		ctx, stop := signalContext()
		defer stop()
		return cli.Run(ctx, args, cli.Env{Stdin: os.Stdin, Stdout: stdout, Stderr: stderr, Getenv: os.Getenv})
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(rest, stdout, stderr)
	case "store":
		err = storeCmd(rest, stdout, stderr)
	case "builder":
		err = builderCmd(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "wharf", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "wharf: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "wharf %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.LogFormat
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
