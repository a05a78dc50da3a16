#!/usr/bin/env bash
# Checks the import rules of docs/architecture.md with go list, transitively, so that they stay
# true: decisions and planning never reach the API client, the webhook never reaches the action
# runners, the controller never reaches the webhook, and no shipped binary reaches test code.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mod=$(go list -m)
bad=0

# forbid WHAT PATTERN PACKAGE...: none of the packages may depend on an import path matching
# PATTERN (an extended regular expression).
forbid() {
	local what=$1 pattern=$2
	shift 2
	local pkg deps found
	for pkg in "$@"; do
		deps=$(go list -deps "$pkg") || { echo "check-imports: cannot list $pkg" >&2; bad=1; continue; }
		found=$(grep -E "$pattern" <<<"$deps" || true)
		if [ -n "$found" ]; then
			echo "check-imports: $pkg must not import $what, but depends on:" >&2
			sed 's/^/  /' <<<"$found" >&2
			bad=1
		fi
	done
}

forbid "k8s.io/client-go" '^k8s\.io/client-go(/|$)' ./rules ./runplan ./templates ./validation ./access
forbid "the action runners, the controller or the webhook" "^$mod/(actions|controller|admission)(/|\$)" ./access
forbid "the controller's webhook (admission)" "^$mod/admission(/|\$)" ./controller
forbid "the action runners (actions)" "^$mod/actions(/|\$)" ./admission/...
forbid "test code (test/...)" "^$mod/test(/|\$)" ./cmd/...
exit $bad
