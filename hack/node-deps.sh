#!/usr/bin/env bash
# Installs the Debian packages the node mode needs (containerd, runc, the CNI plugins,
# busybox-static for the busybox image, gcc and libc headers for the pause image, iptables,
# nftables and iproute2), if any is missing. Kubernetes' own binaries are built from
# hack/tools/node and hack/tools/kube, not installed. Without root it says what is missing and
# exits 0: the node mode then reports why it cannot run.
set -euo pipefail

pkgs=(containerd runc containernetworking-plugins busybox-static iptables nftables iproute2 gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "node-deps: missing ${missing[*]}; installing them needs root (run: sudo $0)" >&2
	exit 0
fi
echo "node-deps: installing ${missing[*]}" >&2
# Packages must not start services (containerd's): the node mode runs its own, privately.
cleanup=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	cleanup=/usr/sbin/policy-rc.d
fi
trap '[ -z "$cleanup" ] || rm -f "$cleanup"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
