// Package deploy holds the Helm chart (deploy/chart/drplan-controller) and renders it: `make
// generate` writes deploy/install.yaml with the chart's defaults, and the e2e suite renders it
// with the Helm Go library to install it on the control plane it tests against.
package deploy

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
)

//go:embed all:chart/drplan-controller
var chartFiles embed.FS

const chartRoot = "chart/drplan-controller"

// Render renders the chart with values over its defaults: the CRDs first (the chart's crds/
// directory, which Helm installs before anything else), then every template in file-name order,
// as one multi-document YAML.
func Render(values map[string]any) (string, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(chartFiles, chartRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := chartFiles.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(p, chartRoot+"/"), Data: data})
		return nil
	})
	if err != nil {
		return "", err
	}
	chrt, err := loader.LoadFiles(files)
	if err != nil {
		return "", fmt.Errorf("load the chart: %w", err)
	}
	vals, err := chartutil.ToRenderValues(chrt, values, chartutil.ReleaseOptions{Name: "drplan-controller", Namespace: "drplan-system", IsInstall: true},
		chartutil.DefaultCapabilities)
	if err != nil {
		return "", fmt.Errorf("chart values: %w", err)
	}
	rendered, err := engine.Render(chrt, vals)
	if err != nil {
		return "", fmt.Errorf("render the chart: %w", err)
	}
	var docs []string
	for _, crd := range chrt.CRDObjects() {
		docs = append(docs, strings.TrimSpace(string(crd.File.Data)))
	}
	// Helm's install order: namespaces, then RBAC, services, workloads, webhooks...
	_, manifests, err := releaseutil.SortManifests(rendered, nil, releaseutil.InstallOrder)
	if err != nil {
		return "", fmt.Errorf("sort the chart's manifests: %w", err)
	}
	for _, m := range manifests {
		if doc := strings.TrimSpace(m.Content); doc != "" {
			docs = append(docs, doc)
		}
	}
	return strings.Join(docs, "\n---\n") + "\n", nil
}
