#!/usr/bin/env bash
# Checks that no tracked file is build output (over 1 MiB or a compiled binary), that the imports
# follow docs/architecture.md (hack/check-imports.sh), that no function is over 80 lines
# (hack/funclen), that generated
# code is current (regenerating into a scratch copy of the repository and comparing), that every
# Go file is gofmt'ed, that go vet is clean and that go.mod files are tidy.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

./hack/check-files.sh
./hack/check-imports.sh
go run ./hack/funclen -max 80 .

unformatted=$(gofmt -l $(git ls-files --cached --others --exclude-standard '*.go'))
if [ -n "$unformatted" ]; then
	echo "verify: not gofmt'ed (run gofmt -w):" >&2
	echo "$unformatted" >&2
	exit 1
fi

go vet ./...

# Every module's go.mod and go.sum are tidy.
for mod in . hack/tools/kube hack/tools/node hack/tools/etcd hack/tools/codegen hack/tools/image; do
	if ! (cd "$mod" && go mod tidy -diff >/dev/null); then
		echo "verify: $mod/go.mod or go.sum is not tidy: run 'go mod tidy' there" >&2
		exit 1
	fi
done

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Copy what git would see (tracked and untracked-but-not-ignored files), then regenerate there.
git ls-files --cached --others --exclude-standard -z | xargs -0 cp --parents -t "$scratch" 2>/dev/null || true
TOOLS_BIN="$root/bin" "$scratch/hack/update-codegen.sh"
for dir in crds deploy; do
	if ! diff -r "$root/$dir" "$scratch/$dir" >"$scratch.diff"; then
		cat "$scratch.diff" >&2
		rm -f "$scratch.diff"
		echo "verify: generated code under $dir/ is stale: run 'make generate' and commit the result" >&2
		exit 1
	fi
done
rm -f "$scratch.diff"
echo "verify: generated code is current, gofmt and go vet are clean"
