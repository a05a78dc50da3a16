package controlplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Versions of the control-plane components. They must match the tools modules under hack/tools.
const (
	EtcdVersion = "v3.7.3"
	KubeVersion = "v1.37.2"
)

// Binaries holds absolute paths to the control-plane executables.
type Binaries struct {
	Etcd                  string
	KubeAPIServer         string
	KubeControllerManager string // empty unless it was asked for
	Kubectl               string
	Kubelet               string // empty unless the node mode was asked for
	KubeScheduler         string // empty unless the node mode was asked for
}

// component is one executable built from a tools module.
type component struct {
	name    string // executable name
	pkg     string // Go package to build
	module  string // tools module directory, relative to the repo root
	version string
	ldflags string
}

// kubeLDFlags stamps the version the way Kubernetes' own build does (hack/lib/version.sh); without
// it the binaries report v0.0.0-master and kube-apiserver's compatibility version checks misfire.
var kubeLDFlags = strings.Join([]string{
	"-X k8s.io/component-base/version.gitVersion=" + KubeVersion,
	"-X k8s.io/component-base/version.gitMajor=1",
	"-X k8s.io/component-base/version.gitMinor=37",
	"-X k8s.io/client-go/pkg/version.gitVersion=" + KubeVersion,
	"-X k8s.io/client-go/pkg/version.gitMajor=1",
	"-X k8s.io/client-go/pkg/version.gitMinor=37",
}, " ")

func etcdComponent() component {
	return component{name: "etcd", pkg: "go.etcd.io/etcd/server/v3", module: "hack/tools/etcd", version: EtcdVersion}
}

func kubeComponent(name string) component {
	return component{name: name, pkg: "k8s.io/kubernetes/cmd/" + name, module: "hack/tools/kube", version: KubeVersion, ldflags: kubeLDFlags}
}

// nodeComponent is a binary of the node mode, from its own tools module (so that adding it left
// the control plane's cache key alone).
func nodeComponent(name string) component {
	c := kubeComponent(name)
	c.module = "hack/tools/node"
	return c
}

// EnsureBinaries returns etcd, kube-apiserver, kube-controller-manager and kubectl, building them
// from the tools modules on a cache miss. See ensureBinaries.
func EnsureBinaries(ctx context.Context, progress io.Writer) (Binaries, error) {
	return ensureBinaries(ctx, progress, true, false)
}

// ensureBinaries finds the binaries in the cache or builds the missing ones. A cache hit only
// stats files. Builds run under an exclusive lock on the cache directory, so concurrent processes
// build once; each binary lands in its directory by an atomic rename.
func ensureBinaries(ctx context.Context, progress io.Writer, withControllerManager, withNode bool) (Binaries, error) {
	if progress == nil {
		progress = io.Discard
	}
	root, err := RepoRoot()
	if err != nil {
		return Binaries{}, err
	}
	cache, err := CacheDir()
	if err != nil {
		return Binaries{}, err
	}
	comps := []component{etcdComponent(), kubeComponent("kube-apiserver"), kubeComponent("kubectl")}
	if withControllerManager || withNode {
		comps = append(comps, kubeComponent("kube-controller-manager"))
	}
	if withNode {
		comps = append(comps, nodeComponent("kubelet"), nodeComponent("kube-scheduler"))
	}
	paths := make(map[string]string, len(comps))
	for _, c := range comps {
		key, err := cacheKey(filepath.Join(root, c.module), c.ldflags)
		if err != nil {
			return Binaries{}, err
		}
		paths[c.name] = binaryPath(cache, c.name, c.version, key)
	}
	bins := Binaries{
		Etcd:                  paths["etcd"],
		KubeAPIServer:         paths["kube-apiserver"],
		KubeControllerManager: paths["kube-controller-manager"],
		Kubectl:               paths["kubectl"],
		Kubelet:               paths["kubelet"],
		KubeScheduler:         paths["kube-scheduler"],
	}
	if len(missing(comps, paths)) == 0 {
		return bins, nil
	}

	unlock, err := lockFile(ctx, filepath.Join(cache, "build.lock"), progress)
	if err != nil {
		return Binaries{}, err
	}
	defer unlock()
	// Group what is still missing (another process may have built it meanwhile) by module, so
	// each module is built by one `go build` invocation.
	byModule := map[string][]component{}
	var order []string
	for _, c := range missing(comps, paths) {
		if byModule[c.module] == nil {
			order = append(order, c.module)
		}
		byModule[c.module] = append(byModule[c.module], c)
	}
	for _, mod := range order {
		if err := build(ctx, progress, root, cache, byModule[mod], paths); err != nil {
			return Binaries{}, err
		}
	}
	return bins, nil
}

func missing(comps []component, paths map[string]string) []component {
	var out []component
	for _, c := range comps {
		if fi, err := os.Stat(paths[c.name]); err != nil || !fi.Mode().IsRegular() {
			out = append(out, c)
		}
	}
	return out
}

// RepoRoot is $DRPLAN_REPO_ROOT, or the repository holding this source file.
func RepoRoot() (string, error) {
	if dir := os.Getenv("DRPLAN_REPO_ROOT"); dir != "" {
		return filepath.Abs(dir)
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate repository root: runtime.Caller failed; set DRPLAN_REPO_ROOT")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("locate repository root from %s (set DRPLAN_REPO_ROOT): %w", file, err)
	}
	return root, nil
}

// CacheDir is $DRPLAN_CACHE_DIR, else $XDG_CACHE_HOME/drplan, else ~/.cache/drplan.
func CacheDir() (string, error) {
	return cacheDirFrom(os.Getenv)
}

func cacheDirFrom(getenv func(string) string) (string, error) {
	if dir := getenv("DRPLAN_CACHE_DIR"); dir != "" {
		return filepath.Abs(dir)
	}
	if dir := getenv("XDG_CACHE_HOME"); dir != "" {
		return filepath.Join(dir, "drplan"), nil
	}
	home := getenv("HOME")
	if home == "" {
		return "", errors.New("find cache dir: none of DRPLAN_CACHE_DIR, XDG_CACHE_HOME, HOME is set")
	}
	return filepath.Join(home, ".cache", "drplan"), nil
}

// cacheKey is a short hash of the tools module's go.mod and go.sum and the link flags, so any
// change to the pinned dependencies or to how the binary is stamped gives a new cache entry.
func cacheKey(moduleDir, ldflags string) (string, error) {
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(moduleDir, f))
		if err != nil {
			return "", fmt.Errorf("compute cache key: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "ldflags %s\n", ldflags)
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// binaryPath is <cache>/bin/<name>-<version>-<key>/<name>.
func binaryPath(cache, name, version, key string) string {
	return filepath.Join(cache, "bin", fmt.Sprintf("%s-%s-%s", name, version, key), name)
}

// lockFile takes an exclusive flock on path, telling progress if it has to wait.
func lockFile(ctx context.Context, path string, progress io.Writer) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create cache dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open build lock: %w", err)
	}
	fd := int(f.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		return func() { f.Close() }, nil
	}
	fmt.Fprintf(progress, "controlplane: waiting for another process building binaries (lock %s)\n", path)
	for {
		if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return func() { f.Close() }, nil
		} else if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for build lock: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// build compiles comps (all from one tools module) into a temporary directory, then moves each
// binary into its cache directory with an atomic rename.
func build(ctx context.Context, progress io.Writer, root, cache string, comps []component, paths map[string]string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("build control-plane binaries: go command not found: %w", err)
	}
	binRoot := filepath.Join(cache, "bin")
	if err := os.MkdirAll(binRoot, 0o755); err != nil {
		return fmt.Errorf("create cache dir: %w", err)
	}
	// We hold the build lock, so build and staging dirs left here are from a killed build.
	leftovers, _ := filepath.Glob(filepath.Join(binRoot, ".build-*"))
	stages, _ := filepath.Glob(filepath.Join(binRoot, ".stage-*"))
	for _, d := range append(leftovers, stages...) {
		os.RemoveAll(d)
	}
	tmp, err := os.MkdirTemp(binRoot, ".build-")
	if err != nil {
		return fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	var names, pkgs []string
	for _, c := range comps {
		names = append(names, c.name+" "+c.version)
		pkgs = append(pkgs, c.pkg)
	}
	args := []string{"build", "-o", tmp + string(filepath.Separator)}
	if comps[0].ldflags != "" {
		args = append(args, "-ldflags", comps[0].ldflags)
	}
	args = append(args, pkgs...)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = filepath.Join(root, comps[0].module)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out

	fmt.Fprintf(progress, "controlplane: building %s from %s into %s\n", strings.Join(names, ", "), comps[0].module, binRoot)
	fmt.Fprintf(progress, "controlplane: one-time build; with a cold Go build cache it takes a few minutes (etcd ~1 min, kube-apiserver ~5 min), later runs use the cache\n")
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(progress, "controlplane: still building %s (%s elapsed)\n", strings.Join(names, ", "), time.Since(start).Round(time.Second))
			}
		}
	}()
	err = cmd.Run()
	close(done)
	if err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", strings.Join(pkgs, " "), cmd.Dir, err, tail(out.Bytes(), 40))
	}
	fmt.Fprintf(progress, "controlplane: built %s in %s\n", strings.Join(names, ", "), time.Since(start).Round(time.Second))

	for _, c := range comps {
		if err := install(filepath.Join(tmp, goBuildOutputName(c.pkg)), paths[c.name]); err != nil {
			return err
		}
	}
	return nil
}

// goBuildOutputName is the file name `go build -o dir/` gives pkg's executable: the last path
// element, skipping a major-version suffix (go.etcd.io/etcd/server/v3 builds "server").
func goBuildOutputName(pkg string) string {
	elems := strings.Split(pkg, "/")
	last := elems[len(elems)-1]
	if len(elems) > 1 && len(last) > 1 && last[0] == 'v' && strings.Trim(last[1:], "0123456789") == "" {
		return elems[len(elems)-2]
	}
	return last
}

// install moves the built binary src to dst. dst's directory appears atomically: the binary is
// put in a staging directory that is then renamed to dst's directory.
func install(src, dst string) error {
	stage, err := os.MkdirTemp(filepath.Dir(filepath.Dir(dst)), ".stage-")
	if err != nil {
		return fmt.Errorf("install %s: %w", filepath.Base(dst), err)
	}
	if err := os.Chmod(stage, 0o755); err != nil {
		os.RemoveAll(stage)
		return fmt.Errorf("install %s: %w", filepath.Base(dst), err)
	}
	if err := os.Rename(src, filepath.Join(stage, filepath.Base(dst))); err != nil {
		os.RemoveAll(stage)
		return fmt.Errorf("install %s: %w", filepath.Base(dst), err)
	}
	// A leftover directory without the binary (e.g. removed by hand) would block the rename.
	os.RemoveAll(filepath.Dir(dst))
	if err := os.Rename(stage, filepath.Dir(dst)); err != nil {
		os.RemoveAll(stage)
		return fmt.Errorf("install %s: %w", filepath.Base(dst), err)
	}
	return nil
}

// tail returns at most the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
