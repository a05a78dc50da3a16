// Command image builds a container image from one static binary without Docker and without
// pulling a base image: one layer holding the binary (and the CA certificates of this machine,
// for HTTPS actions), a config with the entrypoint and the user, written as a tarball that
// `docker load`, `kind load image-archive` and `ctr images import` all accept. It makes the
// controller's image, and the node mode's pause and busybox images.
//
//	go run . -binary ../../../bin/linux/drplan-controller -tag drplan-controller:0.1.0 -o ../../../bin/drplan-controller-image.tar
//	go run . -binary pause -path pause -user 65535:65535 -ca-certificates= -tag registry.k8s.io/pause:3.10 -o pause.tar
//	go run . -binary /bin/busybox -path bin/busybox -applets -user 0:0 -ca-certificates= -tag drplan.local/busybox:1 -o busybox.tar
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// options are the command's flags.
type options struct {
	binary, path, user, tag, out, caCerts string
	applets                               bool
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "", "The static binary.")
	flag.StringVar(&o.path, "path", "drplan-controller", "Where the binary goes in the image; the entrypoint is /<path>.")
	flag.StringVar(&o.user, "user", "65532:65532", "The user the image runs as.")
	flag.BoolVar(&o.applets, "applets", false, "The binary is busybox: link each of its applets into /bin, make /tmp, and run sh.")
	flag.StringVar(&o.tag, "tag", "drplan-controller:0.1.0", "Image name and tag (the chart's default).")
	flag.StringVar(&o.out, "o", "drplan-controller-image.tar", "Output tarball.")
	flag.StringVar(&o.caCerts, "ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to include; empty for none.")
	flag.Parse()
	if err := build(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Println("image: wrote", o.out, "as", o.tag)
}

func build(o options) error {
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return err
	}
	files := []file{{path: o.path, data: bin, mode: 0o755}}
	if o.caCerts != "" {
		if ca, err := os.ReadFile(o.caCerts); err == nil {
			files = append(files, file{path: "etc/ssl/certs/ca-certificates.crt", data: ca, mode: 0o644})
		}
	}
	cfg := v1.Config{Entrypoint: []string{"/" + o.path}, User: o.user,
		Labels: map[string]string{"org.opencontainers.image.title": path.Base(o.path)}}
	if o.applets {
		out, err := exec.Command(o.binary, "--list").Output()
		if err != nil {
			return fmt.Errorf("list the applets of %s: %w", o.binary, err)
		}
		for _, applet := range strings.Fields(string(out)) {
			if applet != path.Base(o.path) {
				files = append(files, file{path: path.Join(path.Dir(o.path), applet), link: path.Base(o.path)})
			}
		}
		files = append(files, file{path: "tmp/", mode: 0o1777})
		cfg.Entrypoint, cfg.Cmd = nil, []string{"sh"}
		cfg.Env = []string{"PATH=/" + path.Dir(o.path)}
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return layerTar(files) })
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: runtime.GOARCH, OS: "linux", Created: v1.Time{Time: time.Unix(0, 0)},
		RootFS: mustRootFS(img), Config: cfg,
	})
	if err != nil {
		return err
	}
	ref, err := name.NewTag(o.tag)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(o.out, ref, img)
}

// file is a regular file, a symlink (link set) or a directory (path ending in /).
type file struct {
	path string
	data []byte
	mode int64
	link string
}

// layerTar is the layer's content, with fixed times so that the same binary gives the same image.
func layerTar(files []file) (io.ReadCloser, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	made := map[string]bool{}
	for _, f := range files {
		dir := ""
		for _, part := range strings.Split(path.Dir(strings.TrimSuffix(f.path, "/")), "/") {
			if part == "." {
				break
			}
			dir += part + "/"
			if !made[dir] {
				made[dir] = true
				if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
					return nil, err
				}
			}
		}
		switch {
		case strings.HasSuffix(f.path, "/"):
			made[f.path] = true
			if err := tw.WriteHeader(&tar.Header{Name: f.path, Typeflag: tar.TypeDir, Mode: f.mode, ModTime: epoch}); err != nil {
				return nil, err
			}
			continue
		case f.link != "":
			if err := tw.WriteHeader(&tar.Header{Name: f.path, Typeflag: tar.TypeSymlink, Linkname: f.link, Mode: 0o777, ModTime: epoch}); err != nil {
				return nil, err
			}
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.path, Typeflag: tar.TypeReg, Mode: f.mode, Size: int64(len(f.data)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
}

func mustRootFS(img v1.Image) v1.RootFS {
	cfg, err := img.ConfigFile()
	if err != nil {
		panic(err) // an image built in memory just now
	}
	return cfg.RootFS
}
