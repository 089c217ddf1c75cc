package pool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/wharfhq/wharf/engine"
)

const ownerFile = "owner"

// MarkOwner records, beside the container's app directory and out of the
// container's sight, that tenant claimed it. Reconcile never adopts a marked
// container into the pool: a container that served a tenant never serves another.
func MarkOwner(c *Container, tenant string) error {
	tmp := filepath.Join(c.Dir, ownerFile+".tmp")
	if err := os.WriteFile(tmp, []byte(tenant), 0o600); err != nil {
		return fmt.Errorf("mark owner: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(c.Dir, ownerFile)); err != nil {
		return fmt.Errorf("mark owner: %w", err)
	}
	return nil
}

// adoptable is the pure decision of whether a leftover container of this node
// may rejoin the pool: it must be a pooled one, of the current image, running,
// never claimed by a tenant, with an empty app directory.
func adoptable(info engine.ContainerInfo, imageHash string, owned, appDirClean bool) bool {
	return info.Labels[engine.LabelRole] == RolePool &&
		info.Labels[engine.LabelImage] == imageHash &&
		info.Running && info.IP != "" && !owned && appDirClean
}

// Reconcile runs once at start, before Run: it adopts this node's leftover
// pooled containers that are still clean and removes every other container of
// the node id, and any container directory no container owns.
func (p *Pool) Reconcile(ctx context.Context) (adopted, removed int, err error) {
	list, err := p.eng.ListContainers(ctx, map[string]string{engine.LabelNode: p.cfg.NodeID})
	if err != nil {
		return 0, 0, fmt.Errorf("reconcile: %w", err)
	}
	keep := map[string]bool{}
	for _, info := range list {
		c := &Container{ID: info.ID, Name: info.Name, IP: info.IP,
			Dir: containerDir(p.cfg.Root, info.Name), AppDir: hostAppDir(p.cfg.Root, info.Name), Created: info.Created}
		_, ownErr := os.Stat(filepath.Join(c.Dir, ownerFile))
		owned := !errors.Is(ownErr, fs.ErrNotExist)
		if adoptable(info, p.cfg.ImageHash, owned, dirEmpty(c.AppDir)) && info.Labels[LabelSpec] == p.specHash {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			perr := p.cfg.Probe(pctx, c.IP)
			cancel()
			if perr == nil {
				p.mu.Lock()
				p.ready = append(p.ready, c)
				p.mu.Unlock()
				keep[c.Name] = true
				adopted++
				continue
			}
		}
		p.discard(ctx, c)
		removed++
	}
	entries, err := os.ReadDir(p.cfg.Root)
	if err != nil {
		return adopted, removed, fmt.Errorf("reconcile: %w", err)
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			if err := os.RemoveAll(filepath.Join(p.cfg.Root, e.Name())); err != nil {
				p.log.Warn("remove stale container dir", "dir", e.Name(), "err", err)
			}
		}
	}
	if adopted+removed > 0 {
		p.log.Info("reconciled leftovers", "adopted", adopted, "removed", removed)
	}
	return adopted, removed, nil
}

func dirEmpty(dir string) bool {
	entries, err := os.ReadDir(dir)
	return err == nil && len(entries) == 0
}
