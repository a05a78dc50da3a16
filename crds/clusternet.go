package crds

import (
	"embed"

	clusternetapps "github.com/clusternet/clusternet/pkg/apis/apps/v1alpha1"
)

//go:embed clusternet/*.yaml
var clusternetFS embed.FS

// ClusternetGroupVersion is the Clusternet API that Localization and Subscription actions use.
var ClusternetGroupVersion = clusternetapps.SchemeGroupVersion

// ClusternetYAML returns Clusternet's Localization and Subscription CRDs, copied by `make generate`
// from the pinned clusternet module.
func ClusternetYAML() [][]byte {
	var out [][]byte
	for _, name := range []string{"apps.clusternet.io_localizations.yaml", "apps.clusternet.io_subscriptions.yaml"} {
		b, err := clusternetFS.ReadFile("clusternet/" + name)
		if err != nil {
			panic(err) // embedded at build time: cannot fail
		}
		out = append(out, b)
	}
	return out
}
