#!/usr/bin/env bash
# Regenerates everything generated from the API types in crds/apis: deepcopy, CRD YAML, and the
# typed clientset, listers and informers. `make generate` runs it; `make verify` checks the result
# is current. The generators are built from the pinned tools module hack/tools/codegen.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
module=github.com/bkbcs/drplan-controller
apis=$module/crds/apis/dr/v1alpha1
gen=$module/crds/generated
bin=${TOOLS_BIN:-$root/bin}

mkdir -p "$bin"
(cd hack/tools/codegen && go build -o "$bin/" \
	sigs.k8s.io/controller-tools/cmd/controller-gen \
	k8s.io/code-generator/cmd/client-gen \
	k8s.io/code-generator/cmd/lister-gen \
	k8s.io/code-generator/cmd/informer-gen)

header=hack/boilerplate.go.txt

"$bin/controller-gen" object:headerFile="$header" paths=./crds/apis/...
rm -rf crds/yaml
"$bin/controller-gen" crd:maxDescLen=400 paths=./crds/apis/... output:crd:dir=crds/yaml

rm -rf crds/generated
"$bin/client-gen" --go-header-file "$header" --clientset-name versioned \
	--input-base "" --input "$apis" \
	--output-pkg "$gen/clientset" --output-dir crds/generated/clientset
"$bin/lister-gen" --go-header-file "$header" \
	--output-pkg "$gen/listers" --output-dir crds/generated/listers "$apis"
"$bin/informer-gen" --go-header-file "$header" \
	--versioned-clientset-package "$gen/clientset/versioned" \
	--listers-package "$gen/listers" \
	--output-pkg "$gen/informers" --output-dir crds/generated/informers "$apis"

# Clusternet's Localization and Subscription CRDs, copied from the pinned clusternet module, so the
# local control plane and the tests install exactly the schema our actions must satisfy.
clusternet=$(go list -m -f '{{.Dir}}' github.com/clusternet/clusternet)
rm -rf crds/clusternet && mkdir -p crds/clusternet
for f in apps.clusternet.io_localizations.yaml apps.clusternet.io_subscriptions.yaml; do
	cp "$clusternet/manifests/crds/$f" crds/clusternet/
	chmod 0644 crds/clusternet/$f
done

# The Helm chart carries our CRDs; the plain manifest is the chart rendered with its defaults.
rm -rf deploy/chart/drplan-controller/crds && mkdir -p deploy/chart/drplan-controller/crds
cp crds/yaml/*.yaml deploy/chart/drplan-controller/crds/
go run ./hack/render-chart deploy/install.yaml
