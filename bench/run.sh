#!/bin/sh
# run.sh runs every benchmark of thon in turn, each measuring thon against a
# reference in one run and writing its section of bench/RESULTS.md. It goes
# on after a failed benchmark and exits non-zero if any failed.
#
# Usage: bench/run.sh [name...]   (default: all; names below)
#
# To add a benchmark: a function bench_<name> and its name in ALL.
#
# Environment: GO (default go); BENCH_PROVISION_N (default 10,50,100) and
# BENCH_PROVISION_CONCURRENCY (default 16) for the provisioning benchmark.
set -u

cd "$(dirname "$0")/.." || exit 1
GO=${GO:-go}
ALL="provisioning proxy gateway"

# Interrupted: the running benchmark cleans up after itself; stop there.
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

bench_provisioning() {
	# The sandbox test image; make bench builds it first, this covers a
	# direct run.
	if ! docker image inspect thon/sandbox-test:latest >/dev/null 2>&1; then
		sh internal/codeservertest/build-image.sh || return 1
	fi
	$GO run ./bench/provision \
		-n "${BENCH_PROVISION_N:-10,50,100}" \
		-concurrency "${BENCH_PROVISION_CONCURRENCY:-16}"
}

bench_proxy() {
	$GO run ./bench/proxy
}

bench_gateway() {
	$GO run ./bench/gateway
}

names=${*:-$ALL}
for name in $names; do
	case " $ALL " in
	*" $name "*) ;;
	*)
		echo "bench: unknown benchmark \"$name\" (known: $ALL)" >&2
		exit 2
		;;
	esac
done

failed=""
for name in $names; do
	echo "== bench: $name"
	if ! "bench_$name"; then
		echo "bench: $name failed" >&2
		failed="$failed $name"
	fi
done
if [ -n "$failed" ]; then
	echo "bench: failed:$failed" >&2
	exit 1
fi
echo "bench: all passed ($names)"
