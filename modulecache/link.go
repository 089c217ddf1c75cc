package modulecache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/wharfhq/wharf/errs"
	"github.com/wharfhq/wharf/npmspec"
)

// maxLinkSets bounds the remembered Link answers; past it they are forgotten
// and recomputed (cheaply: the modules stay on disk).
const maxLinkSets = 10_000

// Link makes every dependency of a function present on this node and returns,
// for each, the container path its node_modules entry must link to. A module
// none of whose peer dependencies the function also declares links to its
// own closure. A plugin whose peer (its host) the function declares too links
// to a peer instance: a directory where the plugin and its closure are
// present (hard links, no copying) beside a link to the function's own host,
// so the plugin's require of its host, resolved from the plugin's real path,
// reaches the very copy the function requires and Node loads it once.
//
// It answers a 503 errs.Error when a module is not built yet or failed. The
// answer for a set of dependencies is remembered: a cold start of a function
// whose modules are on the node costs a map lookup here.
func (c *Cache) Link(ctx context.Context, deps map[string]string) (map[string]string, error) {
	if len(deps) == 0 {
		return nil, nil
	}
	refs := npmspec.Refs(deps)
	key := linkKey(refs)
	c.mu.RLock()
	links, ok := c.links[key]
	c.mu.RUnlock()
	if ok {
		c.hits.Add(int64(len(refs))) // every module of the set was already here
		return links, nil
	}
	metas := make([]meta, len(refs))
	failures := make([]error, len(refs))
	var wg sync.WaitGroup
	for i, r := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			metas[i], failures[i] = c.ensure(ctx, r)
		}()
	}
	wg.Wait()
	if err := firstError(failures); err != nil {
		return nil, err
	}
	peers := make(map[string][]string, len(refs))
	for i, r := range refs {
		peers[r.Name] = metas[i].Peers
	}
	p := plan(c.cfg.Mount, refs, peers)
	for _, inst := range p.Instances {
		if err := c.ensureInstance(ctx, inst); err != nil {
			return nil, fmt.Errorf("modulecache: peer instance of %s: %w", inst.Module, err)
		}
	}
	c.mu.Lock()
	if len(c.links) >= maxLinkSets {
		clear(c.links)
	}
	c.links[key] = p.Links
	c.mu.Unlock()
	return p.Links, nil
}

// firstError prefers a module that failed for good over one still building,
// so the client learns the worse news first.
func firstError(all []error) error {
	var first error
	for _, err := range all {
		if err == nil {
			continue
		}
		if e := errs.As(err); e != nil && e.Code == codeModuleFailed {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

func linkKey(refs []npmspec.Ref) string {
	var b strings.Builder
	for _, r := range refs {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// instance is a peer instance directory to create.
type instance struct {
	Key    string            // directory name under .peers
	Module npmspec.Ref       // the plugin
	Peers  map[string]string // peer name -> container path it links to
}

// linkPlan is what a function's node_modules links to, and the peer
// instances that must exist for it.
type linkPlan struct {
	Links     map[string]string
	Instances []instance
}

// plan decides, purely, every dependency's link target. peers[name] are the
// peer dependencies named inside that module's closure. A module's overridden
// peers are those the function declares too (not the module itself); each
// links to the function's own target for it, which may itself be a peer
// instance. A cycle of plugins peering on each other is cut by linking the
// module met again to its own closure.
func plan(mount string, refs []npmspec.Ref, peers map[string][]string) linkPlan {
	byName := make(map[string]npmspec.Ref, len(refs))
	for _, r := range refs {
		byName[r.Name] = r
	}
	plain := func(r npmspec.Ref) string {
		return mount + "/" + npmspec.PathName(r.Name) + "/" + r.Version + "/node_modules/" + r.Name
	}
	out := linkPlan{Links: map[string]string{}}
	seen := map[string]bool{}
	visiting := map[string]bool{}
	var target func(r npmspec.Ref) string
	target = func(r npmspec.Ref) string {
		if t, ok := out.Links[r.Name]; ok {
			return t
		}
		if visiting[r.Name] {
			return plain(r)
		}
		visiting[r.Name] = true
		defer delete(visiting, r.Name)
		var over []string
		for _, p := range peers[r.Name] {
			if _, declared := byName[p]; declared && p != r.Name {
				over = append(over, p)
			}
		}
		slices.Sort(over)
		over = slices.Compact(over)
		if len(over) == 0 {
			out.Links[r.Name] = plain(r)
			return out.Links[r.Name]
		}
		inst := instance{Module: r, Peers: map[string]string{}}
		h := sha256.New()
		io.WriteString(h, r.String()+"\n")
		for _, p := range over {
			t := target(byName[p])
			inst.Peers[p] = t
			io.WriteString(h, p+"="+t+"\n")
		}
		inst.Key = npmspec.PathName(r.Name) + "@" + r.Version + "-" + hex.EncodeToString(h.Sum(nil))[:16]
		if !seen[inst.Key] {
			seen[inst.Key] = true
			out.Instances = append(out.Instances, inst)
		}
		t := mount + "/" + peersDir + "/" + inst.Key + "/node_modules/" + r.Name
		out.Links[r.Name] = t
		return t
	}
	for _, r := range refs {
		target(r)
	}
	return out
}

// ensureInstance creates a peer instance directory once: the plugin's
// closure hard-linked under a temporary name, minus the overridden peers
// (at the top and nested in the plugin itself), plus links to the function's
// copies of them, flushed and renamed into place.
func (c *Cache) ensureInstance(ctx context.Context, inst instance) error {
	dir := filepath.Join(c.cfg.Root, peersDir, inst.Key)
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	_, err, _ := c.sf.Do(peersDir+"/"+inst.Key, func() (any, error) {
		if _, err := os.Lstat(dir); err == nil {
			return nil, nil
		}
		return nil, c.makeInstance(inst, dir)
	})
	return err
}

func (c *Cache) makeInstance(inst instance, dir string) error {
	parent := filepath.Dir(dir)
	tmp, err := os.MkdirTemp(parent, tmpPrefix+inst.Key+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	src := filepath.Join(c.moduleDir(inst.Module), "node_modules")
	dst := filepath.Join(tmp, "node_modules")
	skip := map[string]bool{}
	for p := range inst.Peers {
		skip[p] = true
		skip[inst.Module.Name+"/node_modules/"+p] = true
	}
	if err := linkTree(src, dst, skip); err != nil {
		return err
	}
	for p, target := range inst.Peers {
		link := filepath.Join(dst, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, link); err != nil {
			return err
		}
	}
	if err := syncFS(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Lstat(dir); serr == nil {
			return nil
		}
		return err
	}
	c.log.Info("peer instance created", "module", inst.Module.String(), "peers", len(inst.Peers), "dir", inst.Key)
	return nil
}

// linkTree recreates the tree at src under dst with directories (0755) and
// hard links to src's files (copies where linking fails), leaving out the
// paths in skip (slash paths relative to src). Closures hold nothing else.
func linkTree(src, dst string, skip map[string]bool) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if skip[filepath.ToSlash(rel)] {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		out := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			if err := os.Mkdir(out, 0o755); err != nil {
				return err
			}
			return os.Chmod(out, 0o755)
		case d.Type().IsRegular():
			if err := os.Link(p, out); err == nil {
				return nil
			}
			return copyFile(p, out)
		}
		return fmt.Errorf("%s: unexpected file type %v in a closure", p, d.Type())
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return errors.Join(out.Chmod(info.Mode().Perm()), out.Close())
}
