#!/usr/bin/env bash
# Is ringmx-bench fast enough not to be the bottleneck? Compares its rate with Postfix's
# smtp-source against the same receiver (ringmx-sink), same message bytes, same concurrency,
# same connection reuse, in alternation, 3 rounds. smtp-source cannot pipeline: it always runs
# lock-step, and so does ringmx-bench unless --pipelining is given, which lets ringmx-bench use
# the PIPELINING the sink advertises (RFC 2920: a transaction's commands in one write, behind
# the previous message's end, so one round trip a message instead of four), the way it drives
# any server that offers it.
#   scripts/bench-generator.sh [--messages N] [--connections C] [--rounds R] [--busy-poll US]
#                              [--body BYTES] [--new-conn] [--sink-poll US] [--pipelining]
# ringmx-bench polls --busy-poll US (default 200) before sleeping: it owns its core, and on a VM
# a sleeping vCPU is slow to wake (see bench/RESULTS.md). --sink-poll US does the same for
# ringmx-sink (default 0), so that the receiver's ceiling is not what is measured. --body is
# smtp-source's -l (default 4096); ringmx-bench sends the same total size (body + 115 bytes of
# smtp-source's headers). --new-conn: a new connection per message for both (smtp-source
# without -d, ringmx-bench --per-conn 1) instead of reuse.
# Prints each round and the medians. Server on CPU 1, generators on CPU 0.
set -euo pipefail
cd "$(dirname "$0")/.."
N=20000 C=10 R=3 POLL=200 BODY=4096 NEWCONN=0 SINKPOLL=0 PIPE=() pipe_mode=lock-step
while [ $# -gt 0 ]; do
	case "$1" in
	--messages) N=$2; shift 2 ;;
	--connections) C=$2; shift 2 ;;
	--rounds) R=$2; shift 2 ;;
	--busy-poll) POLL=$2; shift 2 ;;
	--body) BODY=$2; shift 2 ;;
	--new-conn) NEWCONN=1; shift ;;
	--sink-poll) SINKPOLL=$2; shift 2 ;;
	--pipelining) PIPE=(--pipelining) pipe_mode="ringmx-bench pipelining"; shift ;;
	*) echo "usage: $0 [--messages N] [--connections C] [--rounds R] [--busy-poll US]" \
		"[--body BYTES] [--new-conn] [--sink-poll US] [--pipelining]" >&2; exit 2 ;;
	esac
done
SIZE=$((BODY + 115))
if [ "$NEWCONN" = 1 ]; then src_reuse=() rb_reuse=(--per-conn 1) mode="new connection per message"
else src_reuse=(-d) rb_reuse=() mode="reuse"; fi
sink_poll=()
[ "$SINKPOLL" != 0 ] && sink_poll=(--busy-poll "$SINKPOLL")
scripts/install-deps.sh --bench
command -v smtp-source >/dev/null || PATH=$PATH:/usr/sbin
command -v smtp-source >/dev/null || { echo "smtp-source missing: scripts/install-deps.sh --bench" >&2; exit 1; }
make -s all
port=$((20000 + RANDOM % 20000))
taskset -c 1 bin/ringmx-sink --listen 127.0.0.1:$port --shards 1 "${sink_poll[@]}" 2>/tmp/bg-sink.$$ &
sink=$!
trap 'kill $sink 2>/dev/null; wait $sink 2>/dev/null || true; rm -f /tmp/bg-sink.$$' EXIT
sleep 0.5
kill -0 "$sink" 2>/dev/null || { echo "bench-generator: ringmx-sink did not start on port $port:" \
	"$(cat /tmp/bg-sink.$$)" >&2; exit 1; }
# smtp-source -l 4096 sends a 4096-byte body plus its own headers: 4211 bytes on the wire.
# (With another -l the headers are the same 115 bytes: SIZE is BODY + 115.)
src=() rb=() csrc=() crb=()
for r in $(seq "$R"); do
	t0=$(date +%s.%N)
	/usr/bin/time -f '%U %S' -o /tmp/bg-src.$$ \
		taskset -c 0 smtp-source -l "$BODY" -m "$N" -s "$C" "${src_reuse[@]}" 127.0.0.1:$port >/dev/null
	t1=$(date +%s.%N)
	s=$(echo "$N / ($t1 - $t0)" | bc -l)
	b=$(/usr/bin/time -f '%U %S' -o /tmp/bg-rb.$$ taskset -c 0 bin/ringmx-bench \
		--server 127.0.0.1:$port --connections "$C" --messages "$N" --size "$SIZE" --threads 1 \
		"${rb_reuse[@]}" "${PIPE[@]}" \
		--busy-poll "$POLL" --json |
		/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["msgs_per_s"])')
	# CPU seconds per 1000 messages (user + system) of each generator; polling is counted.
	cs=$(awk -v n="$N" '{printf "%.3f", ($1 + $2) * 1000 / n}' /tmp/bg-src.$$)
	cb=$(awk -v n="$N" '{printf "%.3f", ($1 + $2) * 1000 / n}' /tmp/bg-rb.$$)
	printf 'round %d: smtp-source %.0f msgs/s (%s CPU-s/1000), ringmx-bench %.0f msgs/s (%s CPU-s/1000), rate ratio %.2f\n' \
		"$r" "$s" "$cs" "$b" "$cb" "$(echo "$b / $s" | bc -l)"
	src+=("$s") rb+=("$b") csrc+=("$cs") crb+=("$cb")
done
rm -f /tmp/bg-src.$$ /tmp/bg-rb.$$ /tmp/bg-sink.$$
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms=$(med "${src[@]}") mb=$(med "${rb[@]}") mcs=$(med "${csrc[@]}") mcb=$(med "${crb[@]}")
printf 'median: smtp-source %.0f msgs/s, ringmx-bench %.0f msgs/s, rate ratio %.2f; CPU-s/1000: smtp-source %s, ringmx-bench %s (%d msgs, %d connections, %s, %s, %d-byte messages, sink ringmx-sink --shards 1 %s)\n' \
	"$ms" "$mb" "$(echo "$mb / $ms" | bc -l)" "$mcs" "$mcb" "$N" "$C" "$mode" "$pipe_mode" "$SIZE" "${sink_poll[*]}"
