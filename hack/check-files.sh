#!/usr/bin/env bash
# Fails when a file is over 1 MiB or is a compiled binary (ELF, Mach-O or PE, told by its magic
# bytes; scripts, executable or not, are fine). With no arguments it checks every file git tracks,
# so that build output never lands in the repository.
set -euo pipefail
limit=$((1024 * 1024))

if [ $# -eq 0 ]; then
	cd "$(dirname "${BASH_SOURCE[0]}")/.."
	mapfile -d '' files < <(git ls-files -z)
else
	files=("$@")
fi

# hexat FILE OFFSET COUNT prints COUNT bytes of FILE from OFFSET as hex, without spaces.
hexat() { od -An -tx1 -j "$2" -N "$3" -- "$1" | tr -d ' \n'; }

bad=0
for f in "${files[@]}"; do
	[ -f "$f" ] || continue # deleted in the work tree
	size=$(stat -c %s -- "$f")
	if [ "$size" -gt "$limit" ]; then
		echo "check-files: $f is $size bytes, over 1 MiB: keep large files out of git" >&2
		bad=1
	fi
	kind=
	case $(hexat "$f" 0 4) in
	7f454c46) kind=ELF ;;
	feedface | feedfacf | cefaedfe | cffaedfe | cafebabe | bebafeca) kind=Mach-O ;;
	4d5a*)
		# MZ, then the PE header's offset at 0x3c (little-endian) pointing at "PE\0\0".
		if [ "$size" -ge 64 ]; then
			off=$(od -An -tu4 -j 60 -N 4 -- "$f" | tr -d ' ')
			if [ "$off" -le $((size - 4)) ] && [ "$(hexat "$f" "$off" 4)" = 50450000 ]; then
				kind=PE
			fi
		fi
		;;
	esac
	if [ -n "$kind" ]; then
		echo "check-files: $f is a compiled binary ($kind): build output does not go into git" >&2
		bad=1
	fi
done
exit $bad
