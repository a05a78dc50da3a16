// Package crds holds the API types (apis/), the CustomResourceDefinitions generated from them
// (yaml/) and the generated typed clientset, listers and informers (generated/).
package crds

import (
	"embed"
	"io/fs"
	"path"
)

//go:embed yaml/*.yaml
var yamlFS embed.FS

// YAML returns the generated CustomResourceDefinition documents, one per file, in a stable order.
func YAML() [][]byte {
	entries, err := fs.ReadDir(yamlFS, "yaml")
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	out := make([][]byte, 0, len(entries))
	for _, e := range entries {
		b, err := yamlFS.ReadFile(path.Join("yaml", e.Name()))
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}
