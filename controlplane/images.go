package controlplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// The images the node mode makes offline and imports into its containerd: the pod sandbox's
// pause image (pause.c from the Kubernetes sources, built with gcc -static) and a busybox image
// (Debian's busybox-static) for Jobs and test pods. Neither tag is "latest", so pods resolve to
// imagePullPolicy IfNotPresent and never pull.
const (
	PauseImage   = "registry.k8s.io/pause:3.10"
	BusyboxImage = "drplan.local/busybox:1"
)

// nodeImages returns the pause and busybox image tarballs, building each on a cache miss. The
// cache key covers the image tool and the image's own input (pause.c, the busybox binary).
func nodeImages(ctx context.Context, progress io.Writer, root, cache string) ([]string, error) {
	tool := filepath.Join(root, "hack", "tools", "image")
	toolKey, err := fileHash(filepath.Join(tool, "main.go"), filepath.Join(tool, "go.sum"))
	if err != nil {
		return nil, err
	}
	pauseSrc, err := pauseSource(ctx, root)
	if err != nil {
		return nil, err
	}
	pauseKey, err := fileHash(pauseSrc)
	if err != nil {
		return nil, err
	}
	busyboxKey, err := fileHash(busyboxPath)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cache, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create image cache: %w", err)
	}
	pause := filepath.Join(dir, "pause-3.10-"+hash12(toolKey+pauseKey)+".tar")
	busybox := filepath.Join(dir, "busybox-"+hash12(toolKey+busyboxKey)+".tar")
	if _, err := os.Stat(pause); err != nil {
		fmt.Fprintf(progress, "controlplane: building the pause image from %s\n", pauseSrc)
		bin := filepath.Join(dir, ".pause-"+hash12(pauseKey))
		if out, err := exec.CommandContext(ctx, "gcc", "-static", "-O2", "-DVERSION=v3.10", "-o", bin, pauseSrc).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build pause (gcc -static %s): %w\n%s", pauseSrc, err, out)
		}
		defer os.Remove(bin)
		if err := runImageTool(ctx, tool, pause, "-binary", bin, "-path", "pause", "-user", "65535:65535", "-ca-certificates=", "-tag", PauseImage); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(busybox); err != nil {
		fmt.Fprintf(progress, "controlplane: building the busybox image from %s\n", busyboxPath)
		if err := runImageTool(ctx, tool, busybox, "-binary", busyboxPath, "-path", "bin/busybox", "-applets", "-user", "0:0", "-ca-certificates=", "-tag", BusyboxImage); err != nil {
			return nil, err
		}
	}
	return []string{pause, busybox}, nil
}

// runImageTool writes an image tarball to out through a temporary file and a rename.
func runImageTool(ctx context.Context, toolDir, out string, args ...string) error {
	tmp := out + ".tmp"
	cmd := exec.CommandContext(ctx, "go", append([]string{"run", "."}, append(args, "-o", tmp)...)...)
	cmd.Dir = toolDir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("make image %s: %w\n%s", filepath.Base(out), err, b)
	}
	return os.Rename(tmp, out)
}

// pauseSource is build/pause/linux/pause.c of the k8s.io/kubernetes module the node tools module
// pins, downloaded through the module proxy if it is not in the module cache yet.
func pauseSource(ctx context.Context, root string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "k8s.io/kubernetes")
	cmd.Dir = filepath.Join(root, "hack", "tools", "node")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locate the Kubernetes sources for pause.c: %w: %s", err, stderr.String())
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("locate the Kubernetes sources for pause.c: go mod download said %q", out)
	}
	return filepath.Join(mod.Dir, "build", "pause", "linux", "pause.c"), nil
}

func fileHash(paths ...string) (string, error) {
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", p, err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(p), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hash12(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:12]
}
