package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-units"
)

// Docker implements Engine with the Docker Engine API.
type Docker struct {
	cli *client.Client
}

var _ Engine = (*Docker)(nil)

// NewDocker connects to the engine named by the usual DOCKER_* environment
// (the local socket by default), negotiating the API version down as needed.
func NewDocker() (*Docker, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Docker{cli: cli}, nil
}

// Client exposes the underlying client for tests and tools outside the hot path.
func (d *Docker) Client() *client.Client { return d.cli }

func (d *Docker) Close() error { return d.cli.Close() }

func (d *Docker) Ping(ctx context.Context) error {
	if _, err := d.cli.Ping(ctx); err != nil {
		return fmt.Errorf("docker ping: %w", err)
	}
	return nil
}

func (d *Docker) CreateContainer(ctx context.Context, s ContainerSpec) (string, error) {
	cfg := &container.Config{
		Image:      s.Image,
		Entrypoint: s.Entrypoint,
		Cmd:        s.Cmd,
		Env:        s.Env,
		User:       s.User,
		WorkingDir: s.WorkingDir,
		Labels:     s.Labels,
	}
	hc := &container.HostConfig{
		ReadonlyRootfs: s.ReadOnlyRoot,
		CapDrop:        s.CapDrop,
		SecurityOpt:    s.SecurityOpt,
		Tmpfs:          s.Tmpfs,
		Runtime:        s.Runtime,
		Resources: container.Resources{
			Memory:     s.MemoryBytes,
			MemorySwap: s.MemoryBytes, // equal to Memory: no swap
			NanoCPUs:   s.NanoCPUs,
		},
	}
	if s.Init {
		hc.Init = &s.Init // unset keeps the daemon's default
	}
	if s.LogConfig.Driver != "" {
		hc.LogConfig = container.LogConfig{Type: s.LogConfig.Driver, Config: s.LogConfig.Options}
	}
	if s.PidsLimit > 0 {
		pl := s.PidsLimit
		hc.Resources.PidsLimit = &pl
	}
	if s.NoFile > 0 {
		hc.Resources.Ulimits = []*units.Ulimit{{Name: "nofile", Soft: s.NoFile, Hard: s.NoFile}}
	}
	for _, m := range s.Mounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		hc.Binds = append(hc.Binds, fmt.Sprintf("%s:%s:%s", m.Source, m.Target, mode))
	}
	if s.Network != "" {
		hc.NetworkMode = container.NetworkMode(s.Network)
	}
	if s.NetworkDisabled {
		cfg.NetworkDisabled = true
		hc.NetworkMode = "none"
	}
	resp, err := d.cli.ContainerCreate(ctx, cfg, hc, nil, nil, s.Name)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", s.Name, err)
	}
	return resp.ID, nil
}

func (d *Docker) StartContainer(ctx context.Context, id string) error {
	if err := d.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", short(id), mapNotFound(err))
	}
	return nil
}

func (d *Docker) InspectContainer(ctx context.Context, id string) (ContainerInfo, error) {
	r, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return ContainerInfo{}, fmt.Errorf("inspect container %s: %w", short(id), mapNotFound(err))
	}
	info := ContainerInfo{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/")}
	if r.Config != nil {
		info.Labels = r.Config.Labels
	}
	if r.State != nil {
		info.Running = r.State.Running
		info.ExitCode = r.State.ExitCode
		info.OOMKilled = r.State.OOMKilled
		info.Pid = r.State.Pid
	}
	if t, err := time.Parse(time.RFC3339Nano, r.Created); err == nil {
		info.Created = t
	}
	if r.NetworkSettings != nil {
		for _, ep := range r.NetworkSettings.Networks {
			if ep != nil && ep.IPAddress != "" {
				info.IP = ep.IPAddress
				break
			}
		}
	}
	return info, nil
}

func (d *Docker) WaitContainer(ctx context.Context, id string) (int, error) {
	okc, errc := d.cli.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case r := <-okc:
		if r.Error != nil {
			return int(r.StatusCode), fmt.Errorf("wait container %s: %s", short(id), r.Error.Message)
		}
		return int(r.StatusCode), nil
	case err := <-errc:
		return -1, fmt.Errorf("wait container %s: %w", short(id), mapNotFound(err))
	}
}

func (d *Docker) RemoveContainer(ctx context.Context, id string) error {
	err := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !client.IsErrNotFound(err) && !isRemovalInProgress(err) {
		return fmt.Errorf("remove container %s: %w", short(id), err)
	}
	return nil
}

func (d *Docker) ListContainers(ctx context.Context, labels map[string]string) ([]ContainerInfo, error) {
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: labelFilter(labels)})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]ContainerInfo, 0, len(list))
	for _, c := range list {
		info := ContainerInfo{ID: c.ID, Labels: c.Labels, Running: c.State == "running", Created: time.Unix(c.Created, 0)}
		if len(c.Names) > 0 {
			info.Name = strings.TrimPrefix(c.Names[0], "/")
		}
		if c.NetworkSettings != nil {
			for _, ep := range c.NetworkSettings.Networks {
				if ep != nil && ep.IPAddress != "" {
					info.IP = ep.IPAddress
					break
				}
			}
		}
		out = append(out, info)
	}
	return out, nil
}

func (d *Docker) ContainerLogs(ctx context.Context, id string) ([]byte, []byte, error) {
	rc, err := d.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return nil, nil, fmt.Errorf("logs of container %s: %w", short(id), mapNotFound(err))
	}
	defer rc.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, rc); err != nil {
		return stdout.Bytes(), stderr.Bytes(), fmt.Errorf("logs of container %s: %w", short(id), err)
	}
	return stdout.Bytes(), stderr.Bytes(), nil
}

// Bridge driver options Wharf sets.
const (
	optICC        = "com.docker.network.bridge.enable_icc"
	optBridgeName = "com.docker.network.bridge.name"
)

func (d *Docker) ContainerStats(ctx context.Context, id string) (ContainerStats, error) {
	r, err := d.cli.ContainerStatsOneShot(ctx, id)
	if err != nil {
		return ContainerStats{}, fmt.Errorf("stats of container %s: %w", short(id), mapNotFound(err))
	}
	defer r.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
		return ContainerStats{}, fmt.Errorf("stats of container %s: %w", short(id), err)
	}
	return ContainerStats{
		Pids: int64(s.PidsStats.Current), PidsLimit: int64(s.PidsStats.Limit),
		MemoryBytes: int64(s.MemoryStats.Usage), MemoryLimit: int64(s.MemoryStats.Limit),
	}, nil
}

func (d *Docker) FollowLogs(ctx context.Context, id string, since time.Time, stdout, stderr io.Writer) error {
	opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true}
	if !since.IsZero() {
		// "seconds.nanoseconds": the engine keeps sub-second precision this way.
		opts.Since = fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond())
	}
	rc, err := d.cli.ContainerLogs(ctx, id, opts)
	if err != nil {
		return fmt.Errorf("follow logs of container %s: %w", short(id), mapNotFound(err))
	}
	defer rc.Close()
	// Closing the body is what unblocks a read when ctx ends.
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	if _, err := stdcopy.StdCopy(stdout, stderr, rc); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("follow logs of container %s: %w", short(id), err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

func (d *Docker) EnsureNetwork(ctx context.Context, s NetworkSpec) (string, error) {
	if n, err := d.cli.NetworkInspect(ctx, s.Name, network.InspectOptions{}); err == nil {
		return n.ID, networkMatches(s, n.Internal, n.Options)
	} else if !client.IsErrNotFound(err) {
		return "", fmt.Errorf("inspect network %s: %w", s.Name, err)
	}
	opts := network.CreateOptions{Driver: "bridge", Labels: s.Labels, Options: map[string]string{}, Internal: s.Internal}
	if s.Isolated {
		opts.Options[optICC] = "false"
	}
	if s.BridgeName != "" {
		opts.Options[optBridgeName] = s.BridgeName
	}
	resp, err := d.cli.NetworkCreate(ctx, s.Name, opts)
	if err != nil {
		// Another process may have created it between inspect and create.
		if n, ierr := d.cli.NetworkInspect(ctx, s.Name, network.InspectOptions{}); ierr == nil {
			return n.ID, networkMatches(s, n.Internal, n.Options)
		}
		return "", fmt.Errorf("create network %s: %w", s.Name, err)
	}
	return resp.ID, nil
}

// networkMatches checks that an existing network has the isolation, the
// internal flag and the bridge name asked for: firewall rules match the
// bridge by name, so a network left by an older Wharf must not be silently
// reused.
func networkMatches(s NetworkSpec, internal bool, opts map[string]string) error {
	if s.Internal != internal {
		return fmt.Errorf("network %s has internal=%v, want %v: %w", s.Name, internal, s.Internal, ErrNetworkMismatch)
	}
	if s.Isolated && opts[optICC] != "false" {
		return fmt.Errorf("network %s allows traffic between containers: %w", s.Name, ErrNetworkMismatch)
	}
	if s.BridgeName != "" && opts[optBridgeName] != s.BridgeName {
		return fmt.Errorf("network %s has bridge %q, want %q: %w", s.Name, opts[optBridgeName], s.BridgeName, ErrNetworkMismatch)
	}
	return nil
}

func (d *Docker) RemoveNetwork(ctx context.Context, name string) error {
	if err := d.cli.NetworkRemove(ctx, name); err != nil && !client.IsErrNotFound(err) {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	return nil
}

func (d *Docker) InspectNetwork(ctx context.Context, name string) (NetworkInfo, error) {
	n, err := d.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if err != nil {
		return NetworkInfo{}, fmt.Errorf("inspect network %s: %w", name, mapNotFound(err))
	}
	info := NetworkInfo{ID: n.ID, Bridge: n.Options[optBridgeName]}
	if info.Bridge == "" && len(n.ID) >= 12 {
		info.Bridge = "br-" + n.ID[:12] // the bridge driver's default name
	}
	for _, c := range n.IPAM.Config {
		if c.Gateway != "" && info.Gateway == "" {
			info.Gateway, info.Subnet = c.Gateway, c.Subnet
		}
	}
	if info.Gateway == "" {
		return info, fmt.Errorf("network %s has no gateway", name)
	}
	return info, nil
}

func (d *Docker) ImageExists(ctx context.Context, ref string) (bool, error) {
	if _, err := d.cli.ImageInspect(ctx, ref); err != nil {
		if client.IsErrNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return true, nil
}

func (d *Docker) BuildImage(ctx context.Context, tag string, buildContext io.Reader, labels map[string]string) error {
	resp, err := d.cli.ImageBuild(ctx, buildContext, build.ImageBuildOptions{
		Tags: []string{tag}, Labels: labels, Remove: true, ForceRemove: true,
	})
	if err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	defer resp.Body.Close()
	// The build's outcome is only in the JSON stream: an errorDetail message fails it.
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, io.Discard, 0, false, nil); err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	return nil
}

func (d *Docker) PruneImages(ctx context.Context, labels map[string]string, createdBefore time.Time) (int, error) {
	if len(labels) == 0 {
		return 0, errors.New("prune images: no labels (they tell our images from anyone else's)")
	}
	f := labelFilter(labels)
	f.Add("dangling", "true")
	imgs, err := d.cli.ImageList(ctx, image.ListOptions{Filters: f})
	if err != nil {
		return 0, fmt.Errorf("prune images: %w", err)
	}
	removed := 0
	for _, img := range imgs {
		if !time.Unix(img.Created, 0).Before(createdBefore) {
			continue
		}
		// No force: an image a container still uses stays (a conflict).
		if _, err := d.cli.ImageRemove(ctx, img.ID, image.RemoveOptions{PruneChildren: true}); err != nil {
			if cerrdefs.IsNotFound(err) || cerrdefs.IsConflict(err) {
				continue // another node pruned it first, or a container uses it
			}
			return removed, fmt.Errorf("prune images: remove %s: %w", img.ID, err)
		}
		removed++
	}
	return removed, nil
}

func (d *Docker) Events(ctx context.Context, labels map[string]string) (<-chan Event, <-chan error) {
	f := labelFilter(labels)
	f.Add("type", "container")
	msgs, errs := d.cli.Events(ctx, events.ListOptions{Filters: f})
	out := make(chan Event, 64)
	outErr := make(chan error, 1)
	go func() {
		defer close(out)
		for {
			select {
			case m := <-msgs:
				ev := Event{ContainerID: m.Actor.ID, Action: string(m.Action), Labels: m.Actor.Attributes, ExitCode: m.Actor.Attributes["exitCode"]}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case err := <-errs:
				if ctx.Err() == nil && err != nil && !errors.Is(err, io.EOF) {
					outErr <- fmt.Errorf("docker events: %w", err)
				} else if ctx.Err() == nil {
					outErr <- errors.New("docker events: stream ended")
				}
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, outErr
}

func labelFilter(labels map[string]string) filters.Args {
	f := filters.NewArgs()
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	return f
}

func mapNotFound(err error) error {
	if client.IsErrNotFound(err) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}

// isRemovalInProgress: a concurrent remove of the same container (the event
// watcher and a request both reacting to one death) is success, not failure.
func isRemovalInProgress(err error) bool {
	return strings.Contains(err.Error(), "is already in progress")
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
