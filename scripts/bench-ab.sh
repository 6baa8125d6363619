#!/usr/bin/env bash
# A/B: the same ringmx-bench workload against two builds of ringmx-sink and ringmx (fsync on,
# delivery off), in alternation, server on CPU 1, generator (this tree's ringmx-bench) on CPU 0.
#   scripts/bench-ab.sh OLD_BIN_DIR NEW_BIN_DIR [--connections C] [--size S] [--messages N]
#                       [--rounds R] [--systems sink,ringmx] [--pipelining]
# Each round starts each server afresh, sends N/4 messages to warm it up (connections, caches),
# then N measured ones. Prints each round and the median msgs/s of each build, their ratio,
# and the server's minor page faults per measured message.
# Build the old side with e.g.: git worktree add /tmp/old REV && make -C /tmp/old all
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 OLD_BIN_DIR NEW_BIN_DIR [--connections C] [--size S]" \
	"[--messages N] [--rounds R] [--systems sink,ringmx] [--pipelining]" >&2; exit 2; }
OLD=$1 NEW=$2; shift 2
C=1000 SIZE=4211 N=20000 R=3 SYSTEMS=sink,ringmx PIPE=()
while [ $# -gt 0 ]; do
	case "$1" in
	--connections) C=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--messages) N=$2; shift 2 ;;
	--rounds) R=$2; shift 2 ;;
	--systems) SYSTEMS=$2; shift 2 ;;
	--pipelining) PIPE=(--pipelining); shift ;;
	*) echo "bench-ab: unknown option $1" >&2; exit 2 ;;
	esac
done
make -s bin/ringmx-bench
TMP=$(mktemp -d /tmp/bench-ab.XXXXXX)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))

start() { # start BIN_DIR SYSTEM
	port=$((port + 1))
	if [ "$2" = sink ]; then
		taskset -c 1 "$1/ringmx-sink" --listen 127.0.0.1:$port --shards 1 2>/dev/null &
	else
		rm -rf "$TMP/spool" && mkdir -p "$TMP/spool"
		printf '[server]\nlisten = 127.0.0.1:%s\nshards = 1\nmax_connections_per_ip = 0\nlog_level = warn\nbusy_poll_us = 100\n[spool]\ndir = %s\nfsync = yes\n[accept]\ndomains = localhost\n[deliver]\nenabled = no\n' \
			"$port" "$TMP/spool" >"$TMP/ringmx.conf"
		taskset -c 1 "$1/ringmx" -c "$TMP/ringmx.conf" 2>/dev/null &
	fi
	srv=$!
	sleep 0.7
	kill -0 "$srv" 2>/dev/null || { echo "bench-ab: $1's $2 did not start (port $port)" >&2; exit 1; }
}
run() { # run MESSAGES -> msgs/s; fails (and says why) unless every message was accepted
	taskset -c 0 bin/ringmx-bench --server 127.0.0.1:$port --connections "$C" --messages "$1" \
		--size "$SIZE" --threads 1 "${PIPE[@]}" --json >"$TMP/run.json" || true
	/usr/bin/python3 - "$TMP/run.json" "$1" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError as e:
    sys.exit("bench-ab: ringmx-bench gave no report: %s" % e)
if d["accepted"] != int(sys.argv[2]):
    sys.exit("bench-ab: %d of %s accepted (errored %d, rejected %r)"
             % (d["accepted"], sys.argv[2], d["errored"], d["rejected"]))
print(d["msgs_per_s"])
PY
}
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for sys in ${SYSTEMS//,/ }; do
	declare -a r_old=() r_new=() f_old=() f_new=()
	for r in $(seq "$R"); do
		for side in old new; do
			dir=$OLD; [ $side = new ] && dir=$NEW
			start "$dir" "$sys"
			run $((N / 4)) >/dev/null
			f0=$(awk '{print $10}' /proc/$srv/stat)
			rate=$(run "$N")
			f1=$(awk '{print $10}' /proc/$srv/stat)
			kill "$srv"; wait "$srv" 2>/dev/null || true; srv=
			flt=$(echo "($f1 - $f0) / $N" | bc -l)
			printf '%s round %d %s: %.0f msgs/s, %.2f page faults/msg\n' "$sys" "$r" "$side" "$rate" "$flt"
			if [ $side = old ]; then r_old+=("$rate") f_old+=("$flt"); else r_new+=("$rate") f_new+=("$flt"); fi
		done
	done
	mo=$(med "${r_old[@]}") mn=$(med "${r_new[@]}")
	printf '%s median (%d conns, size %s, %d msgs, %s): old %.0f msgs/s (%.2f faults/msg), new %.0f msgs/s (%.2f faults/msg), new/old %.2f\n' \
		"$sys" "$C" "$SIZE" "$N" "$([ ${#PIPE[@]} -gt 0 ] && echo pipelining || echo lock-step)" "$mo" "$(med "${f_old[@]}")" "$mn" "$(med "${f_new[@]}")" "$(echo "$mn / $mo" | bc -l)"
done
