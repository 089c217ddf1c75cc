package handler

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/wharfhq/wharf/catalog"
	"github.com/wharfhq/wharf/npmspec"
)

// runnerConfig is config.json beside a version's code, read by the runner.
type runnerConfig struct {
	Tenant    string            `json:"tenant"`
	Name      string            `json:"name"`
	Version   int               `json:"version"`
	TimeoutMS int               `json:"timeout_ms"`
	Secrets   map[string]string `json:"secrets"`
	Meta      map[string]string `json:"meta"`
	// Dependencies (name -> exact version) let the runner explain a
	// require('name@version') of a version the function does not declare.
	Dependencies map[string]string `json:"dependencies,omitempty"`
}

// writeFunction writes fn into appDir/functions/<name>/<version>/ so that the
// version directory appears complete or not at all: it is assembled under a
// temporary name and renamed into place. links (dependency name -> path in
// the container) become the version's node_modules: symlinks only, into the
// read-only module store, so each version has its own set and nothing is
// copied; the /app mount is read-only, so the function cannot change them.
func writeFunction(appDir string, fn *catalog.Function, links map[string]string) error {
	parent := filepath.Join(appDir, "functions", fn.Name)
	final := filepath.Join(parent, strconv.Itoa(fn.Version))
	if _, err := os.Stat(final); err == nil {
		return nil // written before (e.g. by a request that lost the race)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // no-op after a successful rename
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	cfg, err := json.Marshal(runnerConfig{Tenant: fn.Tenant, Name: fn.Name, Version: fn.Version,
		TimeoutMS: fn.TimeoutMS, Secrets: fn.Secrets, Meta: map[string]string{}, Dependencies: fn.Dependencies})
	if err != nil {
		return err
	}
	// 0644: the runner runs as an unprivileged uid and must read these; the
	// node's data directory above is private to root.
	if err := os.WriteFile(filepath.Join(tmp, "function.js"), []byte(fn.Code), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), cfg, 0o644); err != nil {
		return err
	}
	if err := writeLinks(filepath.Join(tmp, "node_modules"), withVersionAliases(links, fn.Dependencies)); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, serr := os.Stat(final); serr == nil {
			return nil
		}
		return fmt.Errorf("publish version dir: %w", err)
	}
	return nil
}

// withVersionAliases adds, beside each dependency's link, "name@version" to
// the same target: webtask code may require('lodash@4.17.21') a declared
// version by its full name, and Node, which finds it in node_modules like any
// other name and caches modules by real path, loads the very same instance
// as require('lodash'). An undeclared version has no link, so its require
// fails (the runner explains it).
func withVersionAliases(links, deps map[string]string) map[string]string {
	if len(links) == 0 {
		return links
	}
	out := maps.Clone(links)
	for name, target := range links {
		if v, ok := deps[name]; ok {
			out[name+"@"+v] = target
		}
	}
	return out
}

// writeLinks creates dir with one symlink per dependency ("@scope/name"
// gets its scope directory), or per "name@version" alias of one.
func writeLinks(dir string, links map[string]string) error {
	if len(links) == 0 {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(links)) {
		if !npmspec.ValidName(name) {
			if _, ok := npmspec.ParseRef(name); !ok {
				return fmt.Errorf("dependency name %q", name)
			}
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(links[name], p); err != nil {
			return err
		}
	}
	return nil
}
