#!/usr/bin/env bash
# Runs a command while the machine is busy, as a shared CI machine or a developer's laptop is: a
# CPU burner on every core and a loop creating and removing a cgroup (another program changing
# the host). Everything started here stops when the command ends. Usage: hack/busy.sh make test
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }

cgroup=/sys/fs/cgroup/memory
[ -e /sys/fs/cgroup/cgroup.controllers ] && cgroup=/sys/fs/cgroup
pids=()
cleanup() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rmdir "$cgroup"/busy-$$-* 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq "$(nproc)"); do
	(while :; do :; done) &
	pids+=($!)
done

if [ -w "$cgroup" ]; then
	(
		n=0
		while :; do
			d="$cgroup/busy-$$-$((n++ % 4))"
			mkdir "$d" 2>/dev/null || true
			sleep 0.2
			rmdir "$d" 2>/dev/null || true
		done
	) &
	pids+=($!)
else
	echo "busy: $cgroup is not writable: no cgroup loop" >&2
fi

echo "busy: $(nproc) CPU burners and a cgroup loop running while: $*" >&2
"$@"
