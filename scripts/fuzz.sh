#!/usr/bin/env bash
# Builds and runs the libFuzzer targets.
#
#   scripts/fuzz.sh SECONDS [target ...]
#
# A target is fuzz/fuzz_NAME.c (named NAME, fuzz_NAME or by its path); by
# default every fuzz/fuzz_*.c. Each target names the sources it needs in a
# line of its own:
#   // fuzz-sources: worker/ws_frame.c shared/utf8.c
# Build: build/fuzz/NAME. The committed seed corpus fuzz/corpus/NAME/ is
# copied into the work corpus build/fuzz/corpus/NAME/ (which keeps growing
# across runs and is never committed); crash, timeout and OOM inputs go to
# build/fuzz/crashes/NAME/, the log to build/fuzz/NAME.log.
#
# Prints one line per target and exits non-zero if any target failed to
# build or found something.
set -u

usage() {
	echo "usage: $0 SECONDS [target ...]" >&2
	exit 2
}

[ $# -ge 1 ] || usage
secs=$1
shift
case $secs in '' | *[!0-9]*) usage ;; esac

cd "$(dirname "$0")/.." || exit 2

CLANG=${CLANG:-clang}
PKGS=(libevent hiredis libpq jansson libcrypto)
if ! pkg_cflags=$(pkg-config --cflags "${PKGS[@]}") || ! pkg_libs=$(pkg-config --libs "${PKGS[@]}"); then
	echo "fuzz: pkg-config cannot find some of: ${PKGS[*]}" >&2
	exit 2
fi

targets=()
if [ $# -eq 0 ]; then
	for f in fuzz/fuzz_*.c; do
		[ -e "$f" ] && targets+=("$f")
	done
else
	for t in "$@"; do
		t=${t##*/}
		t=${t%.c}
		t=${t#fuzz_}
		f=fuzz/fuzz_$t.c
		if [ ! -f "$f" ]; then
			echo "fuzz: no such target: $f" >&2
			exit 2
		fi
		targets+=("$f")
	done
fi
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no targets in fuzz/" >&2
	exit 2
fi

mkdir -p build/fuzz
status=0
printf '%-16s %12s %8s  %s\n' target runs seconds result
for src in "${targets[@]}"; do
	name=$(basename "$src" .c)
	name=${name#fuzz_}
	bin=build/fuzz/$name
	log=build/fuzz/$name.log
	work=build/fuzz/corpus/$name
	crashes=build/fuzz/crashes/$name
	mkdir -p "$work" "$crashes"

	# The sources line is the target's own declaration of what it links;
	# keeping it in the file means adding a target never touches this
	# script or the Makefile.
	sources=$(sed -n 's|^[[:space:]]*//[[:space:]]*fuzz-sources:||p' "$src" | head -n 1)
	# shellcheck disable=SC2086 # word splitting of flag and file lists is intended
	if ! $CLANG -std=c17 -D_GNU_SOURCE -I. -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined $pkg_cflags \
		-o "$bin" "$src" $sources $pkg_libs -lm >"$log" 2>&1; then
		printf '%-16s %12s %8s  %s\n' "$name" - - "BUILD FAILED (see $log)"
		status=1
		continue
	fi

	if [ -d "fuzz/corpus/$name" ]; then
		cp -n "fuzz/corpus/$name"/* "$work"/ 2>/dev/null
	fi

	start=$(date +%s)
	# -max_total_time bounds the run; -timeout flags a single slow input.
	"$bin" -max_len=65536 -timeout=10 -max_total_time="$secs" -print_final_stats=1 \
		-artifact_prefix="$crashes/" "$work" >>"$log" 2>&1
	rc=$?
	elapsed=$(($(date +%s) - start))

	runs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -n 1)
	[ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
	[ -n "$runs" ] || runs='?'
	if [ $rc -eq 0 ]; then
		result=ok
	else
		artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
		result="FOUND (exit $rc${artifact:+, $artifact}; see $log)"
		status=1
	fi
	printf '%-16s %12s %8s  %s\n' "$name" "$runs" "$elapsed" "$result"
done
exit $status
