// Command image builds the controller's container image without Docker and without pulling a
// base image: one layer holding the static binary (and the CA certificates of this machine, for
// HTTPS actions), a config with the entrypoint and a non-root user, written as a tarball that
// `docker load`, `kind load image-archive` and `ctr images import` all accept.
//
//	go run . -binary ../../../bin/linux/drplan-controller -tag drplan-controller:0.1.0 -o ../../../bin/drplan-controller-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
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

func main() {
	binary := flag.String("binary", "", "The static controller binary.")
	tag := flag.String("tag", "drplan-controller:0.1.0", "Image name and tag (the chart's default).")
	out := flag.String("o", "drplan-controller-image.tar", "Output tarball.")
	caCerts := flag.String("ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to include; empty for none.")
	flag.Parse()
	if err := build(*binary, *tag, *out, *caCerts); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Println("image: wrote", *out, "as", *tag)
}

func build(binary, tag, out, caCerts string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	files := []file{{"drplan-controller", bin, 0o755}}
	if caCerts != "" {
		if ca, err := os.ReadFile(caCerts); err == nil {
			files = append(files, file{"etc/ssl/certs/ca-certificates.crt", ca, 0o644})
		}
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
		RootFS: mustRootFS(img),
		Config: v1.Config{Entrypoint: []string{"/drplan-controller"}, User: "65532:65532",
			Labels: map[string]string{"org.opencontainers.image.title": "drplan-controller"}},
	})
	if err != nil {
		return err
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, ref, img)
}

type file struct {
	path string
	data []byte
	mode int64
}

// layerTar is the layer's content, with fixed times so that the same binary gives the same image.
func layerTar(files []file) (io.ReadCloser, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	made := map[string]bool{}
	for _, f := range files {
		dir := ""
		for _, part := range strings.Split(path.Dir(f.path), "/") {
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
