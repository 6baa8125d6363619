#!/usr/bin/env bash
# dns-storm.sh — the DNS lookup storm: N distinct mail domains (h0..h{N-1}.storm.test, a wildcard
# MX in tests/integration/dns/test.zone) resolved through one resolver in one ringmx-resolve
# process, at most C routes at a time, against nsd on a loopback port. Prints the tool's summary
# (routes, ok, rate per second, peak RSS) and counters, and fails unless every route is ok.
#
#   scripts/dns-storm.sh                     10000 names, concurrency 64, bin/ringmx-resolve
#   scripts/dns-storm.sh --asan              the same with a sanitizer build (ASan + LSan +
#                                            UBSan) in build-asan/: any leak or error fails it
#   scripts/dns-storm.sh -n 2000 -c 16 --cache-size 1000
#
# Needs nsd (scripts/install-deps.sh --test). Takes a few seconds; docs/dns.md has the figures.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

n=10000 conc=64 cache=10000 asan=0
while [ $# -gt 0 ]; do
	case "$1" in
	-n) n=$2; shift 2 ;;
	-c) conc=$2; shift 2 ;;
	--cache-size) cache=$2; shift 2 ;;
	--asan) asan=1; shift ;;
	-h | --help) sed -n '2,13p' "$0"; exit 0 ;;
	*) echo "dns-storm.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
command -v nsd >/dev/null || { echo "dns-storm.sh: nsd is not installed" >&2; exit 1; }

if [ "$asan" = 1 ]; then
	resolve=build-asan/bin/ringmx-resolve
	make --no-print-directory BUILD=build-asan BIN=build-asan/bin JEMALLOC= \
		CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		"$resolve" >/dev/null
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1} UBSAN_OPTIONS=halt_on_error=1
else
	resolve=bin/ringmx-resolve
	make --no-print-directory "$resolve" >/dev/null
fi

dir=$(mktemp -d /tmp/ringmx-dns-storm.XXXXXX)
nsd_pid=
cleanup() {
	[ -n "$nsd_pid" ] && kill "$nsd_pid" 2>/dev/null && wait "$nsd_pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cp tests/integration/dns/test.zone tests/integration/dns/other.zone "$dir/"
cat >"$dir/nsd.conf" <<CONF
server:
  ip-address: 127.0.0.1
  port: $port
  username: ""
  chroot: ""
  zonesdir: "$dir"
  pidfile: "$dir/nsd.pid"
  database: ""
  zonelistfile: "$dir/zone.list"
  xfrdfile: "$dir/xfrd.state"
  xfrdir: "$dir"
  logfile: "$dir/nsd.log"
  server-count: 1
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: "test."
  zonefile: "test.zone"
zone:
  name: "other."
  zonefile: "other.zone"
CONF
nsd -d -c "$dir/nsd.conf" >/dev/null 2>&1 &
nsd_pid=$!
for _ in $(seq 100); do
	drill -p "$port" SOA test. @127.0.0.1 2>/dev/null | grep -q NOERROR && break
	sleep 0.1
done

seq 0 $((n - 1)) | sed 's/^/h/; s/$/.storm.test/' >"$dir/names"
cmd=("$resolve" --resolver "127.0.0.1:$port" --timeout 2000 --attempts 2 --concurrency "$conc"
     --cache-size "$cache" --summary --file "$dir/names")
echo "# ${cmd[*]}"
out=$("${cmd[@]}")
echo "$out"
grep -q "^summary routes=$n ok=$n " <<<"$out" || { echo "dns-storm.sh: not every route is ok" >&2; exit 1; }
