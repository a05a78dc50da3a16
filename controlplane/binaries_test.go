package controlplane

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCacheDir(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"explicit cache dir wins", map[string]string{"DRPLAN_CACHE_DIR": "/c/drplan", "XDG_CACHE_HOME": "/xdg", "HOME": "/home/u"}, "/c/drplan"},
		{"XDG cache home", map[string]string{"XDG_CACHE_HOME": "/xdg", "HOME": "/home/u"}, "/xdg/drplan"},
		{"home fallback", map[string]string{"HOME": "/home/u"}, "/home/u/.cache/drplan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cacheDirFrom(func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("cacheDirFrom = %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := cacheDirFrom(func(string) string { return "" }); err == nil {
		t.Error("cacheDirFrom with no environment: want an error")
	}
}

func TestCacheKey(t *testing.T) {
	write := func(t *testing.T, mod, sum string) string {
		dir := t.TempDir()
		for name, content := range map[string]string{"go.mod": mod, "go.sum": sum} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	key := func(t *testing.T, dir, ldflags string) string {
		k, err := cacheKey(dir, ldflags)
		if err != nil {
			t.Fatal(err)
		}
		if len(k) != 12 || strings.Trim(k, "0123456789abcdef") != "" {
			t.Fatalf("cacheKey = %q, want 12 hex digits", k)
		}
		return k
	}
	base := key(t, write(t, "module a\n", "x v1 h1:abc\n"), "")
	tests := []struct {
		name     string
		mod, sum string
		ldflags  string
		same     bool
	}{
		{"same inputs", "module a\n", "x v1 h1:abc\n", "", true},
		{"go.mod changed", "module b\n", "x v1 h1:abc\n", "", false},
		{"go.sum changed", "module a\n", "x v2 h1:abc\n", "", false},
		{"content moved between files", "module a\nx v1 h1:abc\n", "", "", false},
		{"ldflags changed", "module a\n", "x v1 h1:abc\n", "-X a.b=c", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := key(t, write(t, tt.mod, tt.sum), tt.ldflags)
			if (got == base) != tt.same {
				t.Errorf("key %q vs base %q: same = %v, want %v", got, base, got == base, tt.same)
			}
		})
	}
	if _, err := cacheKey(t.TempDir(), ""); err == nil {
		t.Error("cacheKey of a dir without go.mod: want an error")
	}
}

func TestBinaryPath(t *testing.T) {
	tests := []struct {
		name, version, key, want string
	}{
		{"etcd", EtcdVersion, "0123456789ab", "/cache/bin/etcd-v3.7.3-0123456789ab/etcd"},
		{"kube-apiserver", KubeVersion, "ba9876543210", "/cache/bin/kube-apiserver-v1.37.2-ba9876543210/kube-apiserver"},
		{"kubectl", KubeVersion, "ba9876543210", "/cache/bin/kubectl-v1.37.2-ba9876543210/kubectl"},
	}
	for _, tt := range tests {
		if got := binaryPath("/cache", tt.name, tt.version, tt.key); got != tt.want {
			t.Errorf("binaryPath(%s) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range []string{etcdComponent().module, kubeComponent("kubectl").module} {
		if _, err := os.Stat(filepath.Join(root, mod, "go.mod")); err != nil {
			t.Errorf("tools module %s not found under repo root %s: %v", mod, root, err)
		}
	}
	t.Setenv("DRPLAN_REPO_ROOT", "/somewhere/else")
	if got, _ := RepoRoot(); got != "/somewhere/else" {
		t.Errorf("RepoRoot with DRPLAN_REPO_ROOT = %q", got)
	}
}

func TestGoBuildOutputName(t *testing.T) {
	tests := map[string]string{
		"go.etcd.io/etcd/server/v3":            "server",
		"k8s.io/kubernetes/cmd/kube-apiserver": "kube-apiserver",
		"k8s.io/kubernetes/cmd/kubectl":        "kubectl",
		"example.com/tools/v2tool":             "v2tool",
		"example.com/cmd/v":                    "v",
	}
	for pkg, want := range tests {
		if got := goBuildOutputName(pkg); got != want {
			t.Errorf("goBuildOutputName(%q) = %q, want %q", pkg, got, want)
		}
	}
}
