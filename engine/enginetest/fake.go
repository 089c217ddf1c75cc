// Package enginetest provides an in-memory engine.Engine for fast unit tests
// of code that drives containers. It models only what Wharf relies on.
package enginetest

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/wharfhq/wharf/engine"
)

// Fake is an in-memory engine. Its zero value is not usable; call New.
type Fake struct {
	mu         sync.Mutex
	seq        int
	containers map[string]*FakeContainer
	networks   map[string]engine.NetworkSpec
	images     map[string]bool
	subs       []chan engine.Event

	// FailCreate, when set, is returned by CreateContainer.
	FailCreate error
	// CreateThenFail makes CreateContainer create the container and still
	// return this error, as when a cancelled request completes in the engine.
	CreateThenFail error
	// CreateDelay is slept by CreateContainer (honouring ctx).
	CreateDelay time.Duration
	// Calls counts calls by method name.
	Calls map[string]int
}

// FakeContainer is the fake's record of one container.
type FakeContainer struct {
	Spec    engine.ContainerSpec
	Info    engine.ContainerInfo
	Stats   engine.ContainerStats
	Removed bool

	logs    []fakeLog
	logsSig chan struct{} // closed and replaced when output is added or the container stops
}

// fakeLog is one write of a container's output.
type fakeLog struct {
	at     time.Time
	stderr bool
	data   []byte
}

// New returns an empty fake engine.
func New() *Fake {
	return &Fake{containers: map[string]*FakeContainer{}, networks: map[string]engine.NetworkSpec{},
		images: map[string]bool{}, Calls: map[string]int{}}
}

var _ engine.Engine = (*Fake)(nil)

func (f *Fake) call(name string) { f.Calls[name]++ }

// Count returns how many times a method was called.
func (f *Fake) Count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Calls[name]
}

func (f *Fake) Ping(context.Context) error { return nil }

func (f *Fake) CreateContainer(ctx context.Context, s engine.ContainerSpec) (string, error) {
	if f.CreateDelay > 0 {
		select {
		case <-time.After(f.CreateDelay):
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("CreateContainer")
	if f.FailCreate != nil {
		return "", f.FailCreate
	}
	for _, c := range f.containers {
		if c.Info.Name == s.Name && !c.Removed {
			return "", fmt.Errorf("fake: name %s in use", s.Name)
		}
	}
	f.seq++
	id := fmt.Sprintf("fake%060d", f.seq)
	f.containers[id] = &FakeContainer{Spec: s, Info: engine.ContainerInfo{
		ID: id, Name: s.Name, Labels: s.Labels, Created: time.Now(),
	}, logsSig: make(chan struct{})}
	if f.CreateThenFail != nil {
		return "", f.CreateThenFail
	}
	return id, nil
}

func (f *Fake) StartContainer(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("StartContainer")
	c, ok := f.containers[id]
	if !ok || c.Removed {
		return fmt.Errorf("start %s: %w", id, engine.ErrNotFound)
	}
	c.Info.Running = true
	c.Info.Pid = 100000 + f.seq
	if !c.Spec.NetworkDisabled {
		c.Info.IP = fmt.Sprintf("10.99.%d.%d", f.seq/250, f.seq%250+1)
	}
	return nil
}

func (f *Fake) InspectContainer(_ context.Context, id string) (engine.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("InspectContainer")
	c, ok := f.containers[id]
	if !ok || c.Removed {
		return engine.ContainerInfo{}, fmt.Errorf("inspect %s: %w", id, engine.ErrNotFound)
	}
	return c.Info, nil
}

func (f *Fake) WaitContainer(ctx context.Context, id string) (int, error) {
	for {
		info, err := f.InspectContainer(ctx, id)
		if err != nil {
			return -1, err
		}
		if !info.Running {
			return info.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (f *Fake) RemoveContainer(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("RemoveContainer")
	for cid, c := range f.containers {
		if cid == id || c.Info.Name == id { // Docker accepts an id or a name
			c.Removed = true
			c.Info.Running = false
			c.signalLogs()
		}
	}
	return nil
}

func (f *Fake) ListContainers(_ context.Context, labels map[string]string) ([]engine.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.ContainerInfo
	for _, c := range f.containers {
		if !c.Removed && hasLabels(c.Info.Labels, labels) {
			out = append(out, c.Info)
		}
	}
	return out, nil
}

func (f *Fake) ContainerLogs(context.Context, string) ([]byte, []byte, error) { return nil, nil, nil }

func (f *Fake) ContainerStats(_ context.Context, id string) (engine.ContainerStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("ContainerStats")
	c, ok := f.containers[id]
	if !ok || c.Removed {
		return engine.ContainerStats{}, fmt.Errorf("stats %s: %w", id, engine.ErrNotFound)
	}
	return c.Stats, nil
}

// SetStats sets what ContainerStats reports for a container.
func (f *Fake) SetStats(id string, s engine.ContainerStats) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.containers[id]; ok {
		c.Stats = s
	}
}

// FollowLogs delivers what EmitLog wrote since `since`, then follows until
// the container stops or is removed (nil) or ctx ends.
func (f *Fake) FollowLogs(ctx context.Context, id string, since time.Time, stdout, stderr io.Writer) error {
	f.mu.Lock()
	f.call("FollowLogs")
	c, ok := f.containers[id]
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("follow logs %s: %w", id, engine.ErrNotFound)
	}
	next := 0
	for {
		f.mu.Lock()
		pending := c.logs[next:]
		next = len(c.logs)
		stopped := c.Removed || !c.Info.Running
		sig := c.logsSig
		f.mu.Unlock()
		for _, l := range pending {
			if !since.IsZero() && l.at.Before(since) {
				continue
			}
			w := stdout
			if l.stderr {
				w = stderr
			}
			if _, err := w.Write(l.data); err != nil {
				return err
			}
		}
		if stopped && len(pending) == 0 {
			return nil
		}
		if len(pending) > 0 {
			continue
		}
		select {
		case <-sig:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// EmitLog appends output of a container, as its process would write it.
func (f *Fake) EmitLog(id string, stderr bool, data string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.containers[id]; ok {
		c.logs = append(c.logs, fakeLog{at: time.Now(), stderr: stderr, data: []byte(data)})
		c.signalLogs()
	}
}

// signalLogs wakes the followers; f.mu is held.
func (c *FakeContainer) signalLogs() {
	close(c.logsSig)
	c.logsSig = make(chan struct{})
}

func (f *Fake) EnsureNetwork(_ context.Context, s engine.NetworkSpec) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.networks[s.Name] = s
	return "net-" + s.Name, nil
}

func (f *Fake) RemoveNetwork(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.networks, name)
	return nil
}

func (f *Fake) InspectNetwork(_ context.Context, name string) (engine.NetworkInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.networks[name]
	if !ok {
		return engine.NetworkInfo{}, fmt.Errorf("network %s: %w", name, engine.ErrNotFound)
	}
	bridge := s.BridgeName
	if bridge == "" {
		bridge = "br-fake"
	}
	return engine.NetworkInfo{ID: "net-" + name, Subnet: "10.99.0.0/16", Gateway: "10.99.0.1", Bridge: bridge}, nil
}

func (f *Fake) ImageExists(_ context.Context, ref string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.images[ref], nil
}

func (f *Fake) BuildImage(_ context.Context, tag string, r io.Reader, _ map[string]string) error {
	_, _ = io.Copy(io.Discard, r)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("BuildImage")
	f.images[tag] = true
	return nil
}

// PruneImages removes nothing: the fake keeps no untagged images.
func (f *Fake) PruneImages(context.Context, map[string]string, time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.call("PruneImages")
	return 0, nil
}

func (f *Fake) Events(ctx context.Context, labels map[string]string) (<-chan engine.Event, <-chan error) {
	ch := make(chan engine.Event, 64)
	f.mu.Lock()
	f.subs = append(f.subs, ch)
	f.mu.Unlock()
	return ch, make(chan error)
}

func (f *Fake) Close() error { return nil }

// Kill marks a container stopped with the exit code and emits a "die" event.
func (f *Fake) Kill(id string, exitCode int) {
	f.mu.Lock()
	c, ok := f.containers[id]
	if ok {
		c.Info.Running = false
		c.Info.ExitCode = exitCode
		c.signalLogs()
	}
	subs := append([]chan engine.Event(nil), f.subs...)
	var labels map[string]string
	if ok {
		labels = c.Info.Labels
	}
	f.mu.Unlock()
	for _, s := range subs {
		s <- engine.Event{ContainerID: id, Action: "die", Labels: labels, ExitCode: fmt.Sprint(exitCode)}
	}
}

// Live returns the containers not removed.
func (f *Fake) Live() []FakeContainer {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []FakeContainer
	for _, c := range f.containers {
		if !c.Removed {
			out = append(out, *c)
		}
	}
	return out
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
