#!/usr/bin/env bash
# bench-compare.sh — ringmx against Postfix, Haraka and ringmx-sink: one command, one run.
#
#   scripts/bench-compare.sh            the full matrix (32 workloads x 4 systems, ~25 min)
#   scripts/bench-compare.sh --quick    a reduced matrix (4 workloads, under 2 minutes)
#   scripts/bench-compare.sh --help     every option
#
# It installs what it needs (scripts/install-deps.sh --bench; Haraka from npm into
# bench/.haraka), builds, and then, workload by workload, runs every system in turn: each on its
# own loopback port, started fresh for the cell, pinned to the server CPUs while ringmx-bench
# runs on the client CPUs, and stopped by PID afterwards. Each server's stored count is checked
# against what the generator says was accepted. Results: a table on stdout, and
# bench/results/bench-compare.{tsv,json,md} plus PNG charts (--quick: bench/results/quick-*).
# Every peer setting, and why it is a fair fight: bench/README.md, section "bench-compare".
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

usage() {
	cat <<'EOF'
usage: scripts/bench-compare.sh [--quick] [options]

  --quick                reduced matrix: 4k, 10 and 100 connections, reuse, pipelining off/on,
                         --duration 3 --warmup 0.5, half load for ringmx only, no drain run
                         (under 2 minutes)
  --duration S           measured seconds per cell (default 5; --quick 3)
  --warmup S             warm-up seconds per cell, a run of its own before the measured one
                         (default 1; --quick 0.5)
  --systems LIST         comma list, in this order per workload (default postfix,haraka,ringmx,sink)
  --sizes LIST           message sizes (default 4k,64k; --quick 4k)
  --connections LIST     concurrent connections (default 1,10,100,1000; --quick 10,100)
  --per-conn LIST        messages per connection: 1 = a new connection per message,
                         0 = reuse for the whole cell (default 1,0; --quick 0)
  --pipelining LIST      off, on (ringmx-bench --pipelining: the next transaction rides behind
                         the message's "."), env (--pipelining-envelope: only MAIL, RCPTs
                         and DATA share a write) (default off,on,env; --quick off,on)
  --server-cpus LIST     CPUs for the servers, a taskset list (default: the upper half)
  --client-cpus LIST     CPUs for ringmx-bench and this script (default: the lower half)
  --drain N              outbound drain (ringmx and Postfix) of N queued messages into ringmx-sink
                         (default 10000; --quick 0 = skip)
  --tag NAME             results as bench/results/NAME-bench-compare.* (a partial run that must
                         not replace the full one)
  --no-half-load         skip the open-loop runs at half of each system's peak rate
  --no-install           do not run install-deps.sh nor npm (use what is there)
  --peer-logs            keep the servers' per-message logs (Postfix maillog_file, Haraka info,
                         ringmx info) under the temp dir; for debugging, it changes the results
  --keep                 keep the temp dir (configs, logs) instead of deleting it
  -h, --help             this text

Run it as root (Postfix's master needs it) on a quiet machine. Results go to bench/results/.
EOF
}

# ---------------------------------------------------------------------------------------------
# Options
QUICK=0
DURATION="" WARMUP="" SIZES="" CONNS="" PERCONN="" PIPE="" DRAIN="" USER_TAG=""
SYSTEMS="postfix,haraka,ringmx,sink"
SERVER_CPUS="" CLIENT_CPUS=""
HALF_LOAD=1 INSTALL=1 PEER_LOGS=0 KEEP=0
ARGS_ORIG=("$@")
while [ $# -gt 0 ]; do
	opt=$1 val=""
	case "$opt" in
	--*=*) val=${opt#*=}; opt=${opt%%=*} ;;
	esac
	needval() {
		if [ -z "$val" ]; then
			[ $# -ge 2 ] || { echo "bench-compare: $opt needs a value" >&2; exit 2; }
			val=$2; SHIFT=2
		fi
	}
	SHIFT=1
	case "$opt" in
	--quick) QUICK=1 ;;
	--duration) needval "$@"; DURATION=$val ;;
	--warmup) needval "$@"; WARMUP=$val ;;
	--systems) needval "$@"; SYSTEMS=$val ;;
	--sizes) needval "$@"; SIZES=$val ;;
	--connections) needval "$@"; CONNS=$val ;;
	--per-conn) needval "$@"; PERCONN=$val ;;
	--pipelining) needval "$@"; PIPE=$val ;;
	--server-cpus) needval "$@"; SERVER_CPUS=$val ;;
	--client-cpus) needval "$@"; CLIENT_CPUS=$val ;;
	--drain) needval "$@"; DRAIN=$val ;;
	--tag) needval "$@"; USER_TAG=$val ;;
	--no-half-load) HALF_LOAD=0 ;;
	--no-install) INSTALL=0 ;;
	--peer-logs) PEER_LOGS=1 ;;
	--keep) KEEP=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench-compare: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift "$SHIFT"
done
if [ "$QUICK" = 1 ]; then
	: "${DURATION:=3}" "${WARMUP:=0.5}" "${SIZES:=4k}" "${CONNS:=10,100}" "${PERCONN:=0}"
	: "${PIPE:=off,on}" "${DRAIN:=0}"
	TAG=quick-
else
	: "${DURATION:=5}" "${WARMUP:=1}" "${SIZES:=4k,64k}" "${CONNS:=1,10,100,1000}"
	: "${PERCONN:=1,0}" "${PIPE:=off,on,env}" "${DRAIN:=10000}"
	TAG=""
fi
[ -n "$USER_TAG" ] && TAG="$USER_TAG-"
split() { tr ',' ' ' <<<"$1"; }
for s in $(split "$SYSTEMS"); do
	case "$s" in postfix | haraka | ringmx | sink) ;; *) echo "bench-compare: unknown system $s" >&2; exit 2 ;; esac
done
for p in $(split "$PIPE"); do
	case "$p" in on | off | env) ;; *) echo "bench-compare: --pipelining takes off,on,env" >&2; exit 2 ;; esac
done
num_re='^[0-9]+(\.[0-9]+)?$'
[[ $DURATION =~ $num_re && $WARMUP =~ $num_re && $DRAIN =~ ^[0-9]+$ ]] ||
	{ echo "bench-compare: --duration/--warmup take seconds, --drain a count" >&2; exit 2; }

log() { printf 'bench-compare: %s\n' "$*" >&2; }
loud() {
	printf '\n!!!!!!!! bench-compare: %s\n\n' "$*" >&2
	printf '%s\n' "$*" >>"$RAW/warnings.txt"
}
die() { printf 'bench-compare: %s\n' "$*" >&2; exit 1; }

PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)

OUT=bench/results
RAW=$OUT/raw/${TAG:-full-}
RAW=${RAW%-}
rm -rf "$RAW"
mkdir -p "$OUT" "$RAW"
: >"$RAW/cells.jsonl"
: >"$RAW/warnings.txt"

# ---------------------------------------------------------------------------------------------
# Dependencies and build
HARAKA_PREFIX=bench/.haraka
HARAKA_HOME=$HARAKA_PREFIX/node_modules/Haraka
HARAKA_OK=0
haraka_version() { node -p "require('./$HARAKA_HOME/package.json').version" 2>/dev/null; }
if [ "$INSTALL" = 1 ]; then
	scripts/install-deps.sh --bench
	if [ -z "$PY" ]; then
		apt-get install -y -qq python3-minimal >/dev/null && PY=/usr/bin/python3
	fi
	if ! command -v npm >/dev/null 2>&1; then
		loud "npm is not available: Haraka is skipped"
	else
		have=$(haraka_version || true)
		if want=$(timeout 120 npm view Haraka version 2>/dev/null | tail -n1) && [ -n "$want" ]; then
			if [ "$have" = "$want" ]; then
				HARAKA_OK=1
			else
				log "installing Haraka $want from npm into $HARAKA_PREFIX"
				if timeout 600 npm install --prefix "$HARAKA_PREFIX" --no-audit --no-fund \
					--loglevel=error "Haraka@$want" >/dev/null; then
					HARAKA_OK=1
				else
					loud "npm install Haraka@$want failed: Haraka is skipped"
				fi
			fi
		elif [ -n "$have" ]; then
			loud "npm view Haraka failed (registry unreachable?): using the installed Haraka $have"
			HARAKA_OK=1
		else
			loud "npm view Haraka failed (registry unreachable?) and Haraka is not installed: Haraka is skipped"
		fi
	fi
else
	[ -n "$(haraka_version || true)" ] && HARAKA_OK=1
fi
[ -n "$PY" ] || die "python3 is needed (for /proc sampling and the report)"
command -v gnuplot >/dev/null || die "gnuplot is missing: run scripts/install-deps.sh --bench"
# only the programs the benchmark runs (a half-finished tool elsewhere in the tree cannot stop it)
make --no-print-directory -s bin/ringmx bin/ringmx-bench bin/ringmx-sink bin/ringmx-spool >/dev/null ||
	die "make failed"

IS_ROOT=0
[ "$(id -u)" = 0 ] && IS_ROOT=1

# ---------------------------------------------------------------------------------------------
# Work area, the helper, cleanup
TMP=$(mktemp -d /tmp/ringmx-bench-compare.XXXXXX)
chmod 755 "$TMP" # postfix's daemons must reach the queue directory
STARTED_PIDS=() # every server (root) process this script started; cleanup ends them by PID

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	local pid
	[ -n "${BENCH_PID:-}" ] && kill -TERM "$BENCH_PID" 2>/dev/null && wait "$BENCH_PID" 2>/dev/null
	[ -n "${SAMPLER_PID:-}" ] && kill "$SAMPLER_PID" 2>/dev/null
	for pid in "${STARTED_PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			local tree
			tree=$("$PY" "$TMP/hp.py" tree "$pid" 2>/dev/null)
			kill -TERM "$pid" 2>/dev/null
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			# shellcheck disable=SC2086
			"$PY" "$TMP/hp.py" reap $tree
			wait "$pid" 2>/dev/null
		fi
	done
	if [ "$KEEP" = 1 ]; then
		log "temp dir kept: $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$TMP/hp.py" <<'PYEOF'
# bench-compare's helper: /proc sampling, JSON records, and the report. Stdlib only.
import json, math, os, signal, socket, statistics, subprocess, sys, time

CLK = os.sysconf('SC_CLK_TCK')
PAGE = os.sysconf('SC_PAGE_SIZE')

def cpulist(spec):
    out = []
    for part in spec.split(','):
        if '-' in part:
            a, b = part.split('-')
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out

def children(pid):
    kids = []
    try:
        for t in os.listdir(f'/proc/{pid}/task'):
            try:
                with open(f'/proc/{pid}/task/{t}/children') as f:
                    kids.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return kids

def tree(root):
    out, i = [root], 0
    while i < len(out):
        out.extend(children(out[i]))
        i += 1
    return out

def stat_fields(pid):
    with open(f'/proc/{pid}/stat', 'rb') as f:
        s = f.read()
    return s[s.rfind(b')') + 2:].split()

def tree_cpu(root):
    """utime+stime of the process tree, plus cutime+cstime (children already reaped), seconds."""
    ticks = 0
    for pid in tree(root):
        try:
            f = stat_fields(pid)
        except OSError:
            continue
        ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / CLK

def tree_rss_kib(root):
    total = 0
    for pid in tree(root):
        try:
            with open(f'/proc/{pid}/statm') as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total * PAGE // 1024

def cpustat(cpus):
    want = {f'cpu{c}' for c in cpus}
    busy = total = 0
    with open('/proc/stat') as f:
        for line in f:
            p = line.split()
            if p[0] in want:
                v = [int(x) for x in p[1:9]]
                # user nice system idle iowait irq softirq steal
                busy += v[0] + v[1] + v[2] + v[5] + v[6]
                total += v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6]
    return busy / CLK, total / CLK

def cmd_rss(root, out):
    peak, n = 0, 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        peak = max(peak, tree_rss_kib(root))
        n += 1
        end = time.monotonic() + 0.2
        while not stop and time.monotonic() < end:
            time.sleep(0.02)
    peak = max(peak, tree_rss_kib(root))
    with open(out, 'w') as f:
        json.dump({'peak_rss_kib': peak, 'samples': n + 1}, f)

def cmd_port(base):
    for p in range(int(base), 32768):
        s = socket.socket()
        try:
            s.bind(('127.0.0.1', p))
            print(p)
            return
        except OSError:
            pass
        finally:
            s.close()
    sys.exit('no free port')

def cmd_waitport(port, timeout, pid):
    end = time.monotonic() + float(timeout)
    while time.monotonic() < end:
        if pid and not os.path.exists(f'/proc/{pid}'):
            sys.exit(1)
        try:
            with socket.create_connection(('127.0.0.1', int(port)), timeout=1) as s:
                s.settimeout(5)
                if s.recv(3) == b'220':
                    s.sendall(b'QUIT\r\n')
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(1)

def others(exclude_root):
    """pid -> (start time, CPU ticks incl. reaped children) of every process that is not ours
    (not in this script's tree) and not a kernel thread: what other people run meanwhile."""
    mine = set(tree(exclude_root))
    out = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        pid = int(d)
        if pid in mine or pid == 2:
            continue
        try:
            with open(f'/proc/{pid}/stat', 'rb') as f:
                s = f.read()
        except OSError:
            continue
        r = s.rfind(b')')
        f_ = s[r + 2:].split()
        if int(f_[1]) == 2:  # a kernel thread (child of kthreadd)
            continue
        name = s[s.find(b'(') + 1:r].decode(errors='replace')
        out[pid] = (int(f_[19]), int(f_[11]) + int(f_[12]) + int(f_[13]) + int(f_[14]), name)
    return out

def others_delta(a, b):
    """CPU seconds used by other processes between snapshots a and b, and the top users."""
    per = {}
    for pid, (st, tot, name) in b.items():
        prev = a.get(pid)
        d = tot - prev[1] if prev and prev[0] == st else tot
        if d > 0:
            per[name] = per.get(name, 0) + d
    top = sorted(per.items(), key=lambda kv: -kv[1])[:3]
    return sum(per.values()) / CLK, ','.join(f'{n}:{v / CLK:.2f}s' for n, v in top) or '-'

def cmd_snap(pid, cpus, me, state, phase):
    busy, _ = cpustat(cpulist(cpus))
    now = time.time()
    cpu = tree_cpu(int(pid))
    o = others(int(me))
    if phase == 'begin':
        with open(state, 'w') as f:
            json.dump({str(k): v for k, v in o.items()}, f)
        print(f'{now:.6f} {cpu:.2f} {busy:.2f} 0 -')
    else:
        with open(state) as f:
            a = {int(k): tuple(v) for k, v in json.load(f).items()}
        other, top = others_delta(a, o)
        print(f'{now:.6f} {cpu:.2f} {busy:.2f} {other:.2f} {top}')

def cmd_quiet(me, max_wait, limit=0.05, window=3.0):
    """Wait until other processes use under 5% of a CPU over a 3 s window (at most max_wait s)."""
    end = time.monotonic() + float(max_wait)
    while True:
        a = others(int(me))
        time.sleep(window)
        other, top = others_delta(a, others(int(me)))
        if other / window < limit:
            return
        if time.monotonic() > end:
            print(f'still busy after {max_wait} s: {top}', file=sys.stderr)
            sys.exit(1)

def cmd_reap(pids, timeout=2.0):
    """Wait for these processes (a stopped server's tree) to exit, then KILL what is left."""
    def alive(p):
        try:
            return stat_fields(p)[0] != b'Z'
        except OSError:
            return False
    end = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < end:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    if left:
        print(f'killed {len(left)} leftover process(es)', file=sys.stderr)

def cmd_fsync_probe(d, n=300):
    """The disk's own durability cost: n x (append 4 KiB, fdatasync), latency percentiles."""
    path = os.path.join(d, 'fsync-probe')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    buf = b'x' * 4096
    lat = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, buf)
            os.fdatasync(fd)
            lat.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print(f'4 KiB append + fdatasync on the spool file system ({n}x): '
          f'p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, max {lat[-1]:.2f} ms')

def count_files(dirs):
    n = 0
    for d in dirs:
        for _, _, files in os.walk(d):
            n += len(files)
    return n

def coerce(v):
    if v in ('true', 'false', 'null'):
        return {'true': True, 'false': False, 'null': None}[v]
    if v.startswith('@'):
        try:
            with open(v[1:]) as f:
                return json.loads(f.read() or 'null')
        except (OSError, ValueError):
            return None
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v

def cmd_record(out, kvs):
    rec = {}
    for kv in kvs:
        k, v = kv.split('=', 1)
        rec[k] = coerce(v)
    with open(out, 'a') as f:
        f.write(json.dumps(rec) + '\n')

def cmd_jget(path, key):
    try:
        with open(path) as f:
            v = json.load(f)
        for k in key.split('.'):
            v = v[k]
        print(v)
    except Exception:
        print('')

# --------------------------------------------------------------------------- the report
SYS_NAMES = {'postfix': 'Postfix', 'haraka': 'Haraka', 'ringmx': 'ringmx', 'sink': 'ringmx-sink'}

def size_label(b):
    return f'{b // 1024}k' if b % 1024 == 0 else str(b)

def pipe_label(c):
    return 'env' if c.get('pipelining_envelope') else 'on' if c['pipelining'] else 'off'

def wl_label(c):
    return (f"{size_label(c['size_bytes'])} c={c['connections']} "
            f"{'new-conn' if c['per_conn'] == 1 else 'reuse' if c['per_conn'] == 0 else 'per-conn=%d' % c['per_conn']} "
            f"pipe={pipe_label(c)}")

def derive(c):
    b = c.get('bench') or {}
    w = c.get('warm') or {}
    acc = b.get('accepted') or 0
    wacc = w.get('accepted') or 0 if c.get('warmup_s') else 0
    el = b.get('elapsed_s') or 0
    stored = c.get('stored')
    d = dict(c)
    d['accepted'] = acc
    d['warm_accepted'] = wacc
    d['elapsed_s'] = el
    d['errored'] = b.get('errored', 0)
    d['rejected'] = sum((b.get('rejected') or {}).values())
    d['connect_errors'] = b.get('connect_errors', 0)
    d['unsent'] = b.get('unsent', 0)
    d['latency_eod_us'] = b.get('latency_eod_us') or {}
    d['latency_txn_us'] = b.get('latency_txn_us') or {}
    problems = []
    if c.get('error'):
        problems.append(c['error'])
    if not b:
        problems.append('no generator result')
    if stored is None:
        problems.append('stored count unknown')
        counted = 0
    else:
        expect = acc + wacc
        counted = max(0, min(acc, stored - wacc))
        if stored < expect:
            problems.append(f'LOST: stored {stored} < accepted {expect}')
        elif stored > expect:
            problems.append(f'EXTRA: stored {stored} > accepted {expect}')
    if d['errored']:
        problems.append(f"errored {d['errored']}")
    if d['rejected']:
        problems.append(f"rejected {d['rejected']}")
    if d['connect_errors']:
        problems.append(f"connect_errors {d['connect_errors']}")
    if b.get('interrupted'):
        problems.append('interrupted')
    if c.get('noisy'):
        problems.append(f"noisy: other processes used {c.get('other_cpu_s')} CPU-s ({c.get('other_top')})")
    d['check'] = 'ok' if not problems else '; '.join(problems)
    d['counted'] = counted
    d['msgs_per_s'] = counted / el if el > 0 else 0.0
    cpu = c.get('cpu_s')
    d['cpu_s_per_1k'] = (cpu / (counted / 1000.0)) if (cpu is not None and counted) else None
    wall = c.get('wall_s') or 0
    ncpu = c.get('server_ncpus') or 1
    d['server_util'] = (c['server_busy_s'] / (wall * ncpu)) if wall and c.get('server_busy_s') is not None else None
    d['peak_rss_kib'] = (c.get('rss') or {}).get('peak_rss_kib')
    return d

def fmt(v, spec, dash='-'):
    return dash if v is None else format(v, spec)

def report(raw, out, tag):
    meta = json.load(open(f'{raw}/meta.json'))
    cells = [derive(json.loads(l)) for l in open(f'{raw}/cells.jsonl') if l.strip()]
    matrix = [c for c in cells if c['kind'] == 'matrix']
    half = [c for c in cells if c['kind'] == 'halfload']
    drains = []
    if os.path.exists(f'{raw}/drain.jsonl'):
        drains = [json.loads(l) for l in open(f'{raw}/drain.jsonl') if l.strip()]
    order = meta['systems']
    key = lambda c: (c['size_bytes'], c['connections'], c['per_conn'], pipe_label(c))
    workloads = []
    for c in matrix:
        if key(c) not in workloads:
            workloads.append(key(c))
    by = {(key(c), c['system']): c for c in matrix}
    # ratios to Postfix, and to ringmx-sink for ringmx
    for c in matrix:
        pf = by.get((key(c), 'postfix'))
        c['x_postfix_rate'] = (c['msgs_per_s'] / pf['msgs_per_s']) if pf and pf['msgs_per_s'] > 0 else None
        c['x_postfix_cpu'] = (c['cpu_s_per_1k'] / pf['cpu_s_per_1k']) if (
            pf and pf.get('cpu_s_per_1k') and c.get('cpu_s_per_1k') is not None) else None
        sk = by.get((key(c), 'sink'))
        c['x_sink_rate'] = (c['msgs_per_s'] / sk['msgs_per_s']) if sk and sk['msgs_per_s'] > 0 else None

    # ---- stdout table
    hdr = (f"{'workload':<30} {'system':<11} {'msgs/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
           f"{'CPU s/1k':>8} {'util':>5} {'RSS MB':>7} {'x pf':>7} {'CPU x pf':>8}  check")
    lines = [hdr, '-' * len(hdr)]
    for w in workloads:
        for s in order:
            c = by.get((w, s))
            if not c:
                continue
            e = c['latency_eod_us']
            lines.append(
                f"{wl_label(c):<30} {SYS_NAMES[s]:<11} {c['msgs_per_s']:>9.1f} "
                f"{fmt(e.get('p50') and e['p50'] / 1000, '7.2f'):>7} {fmt(e.get('p99') and e['p99'] / 1000, '7.2f'):>7} "
                f"{fmt(c['cpu_s_per_1k'], '8.3f'):>8} {fmt(c['server_util'] and 100 * c['server_util'], '4.0f'):>4}% "
                f"{fmt(c['peak_rss_kib'] and c['peak_rss_kib'] / 1024, '7.1f'):>7} "
                f"{fmt(c['x_postfix_rate'], '7.1f'):>7} {fmt(c['x_postfix_cpu'], '8.3f'):>8}  "
                f"{c['check'] if c['check'] == 'ok' else '*** ' + c['check']}")
        lines.append('')
    if half:
        lines.append('Open loop at half of each system\'s peak closed-loop rate (4k, reuse, pipelining off):')
        lines.append(f"{'system':<11} {'rate':>9} {'conns':>6} {'msgs/s':>9} {'eod p50':>8} {'eod p99':>8} "
                     f"{'eod max':>8} {'txn p99':>8} {'unsent':>7}  check")
        for c in half:
            e, t = c['latency_eod_us'], c['latency_txn_us']
            lines.append(f"{SYS_NAMES[c['system']]:<11} {c['rate']:>9} {c['connections']:>6} {c['msgs_per_s']:>9.1f} "
                         f"{fmt(e.get('p50') and e['p50'] / 1000, '8.2f'):>8} {fmt(e.get('p99') and e['p99'] / 1000, '8.2f'):>8} "
                         f"{fmt(e.get('max') and e['max'] / 1000, '8.2f'):>8} {fmt(t.get('p99') and t['p99'] / 1000, '8.2f'):>8} "
                         f"{c['unsent']:>7}  {c['check'] if c['check'] == 'ok' else '*** ' + c['check']}")
        lines.append('(latency in ms; eod = end of data to 250, txn = intended start to 250)')
        lines.append('')
    for d in drains:
        lines.append(d['summary'])
    table = '\n'.join(lines)
    print(table)

    # ---- TSV + JSON
    cols = ['size_bytes', 'connections', 'per_conn', 'pipelining', 'system', 'msgs_per_s', 'accepted',
            'warm_accepted', 'stored', 'check', 'eod_p50_us', 'eod_p90_us', 'eod_p99_us', 'eod_p999_us',
            'eod_max_us', 'txn_p50_us', 'txn_p99_us', 'cpu_s', 'cpu_s_per_1k', 'server_util',
            'peak_rss_kib', 'x_postfix_rate', 'x_postfix_cpu', 'x_sink_rate', 'elapsed_s', 'errored',
            'rejected', 'connect_errors', 'other_cpu_s', 'attempts']
    def row(c):
        e, t = c['latency_eod_us'], c['latency_txn_us']
        r = dict(c)
        r.update({'eod_p50_us': e.get('p50'), 'eod_p90_us': e.get('p90'), 'eod_p99_us': e.get('p99'),
                  'eod_p999_us': e.get('p999'), 'eod_max_us': e.get('max'),
                  'txn_p50_us': t.get('p50'), 'txn_p99_us': t.get('p99'),
                  'pipelining': pipe_label(c)})
        return r
    def cell_tsv(v):
        if v is None:
            return ''
        if isinstance(v, float):
            return f'{v:.4g}' if abs(v) < 1000 else f'{v:.1f}'
        return str(v)
    with open(f'{out}/{tag}bench-compare.tsv', 'w') as f:
        f.write('\t'.join(cols) + '\n')
        for w in workloads:
            for s in order:
                c = by.get((w, s))
                if c:
                    r = row(c)
                    f.write('\t'.join(cell_tsv(r.get(k)) for k in cols) + '\n')
    keep = cols + ['latency_eod_us', 'latency_txn_us']
    summary = {
        'meta': meta,
        'cells': [{k: row(c).get(k) for k in keep} for w in workloads for s in order if (c := by.get((w, s)))],
        'half_load': [{k: row(c).get(k) for k in keep + ['rate']} for c in half],
        'drain': drains,
    }

    # ---- the DESIGN.md checks
    checks = []
    rm = [c for c in matrix if c['system'] == 'ringmx' and c['check'] == 'ok']
    x_pf = [c['x_postfix_rate'] for c in rm if c['x_postfix_rate']]
    x_sk = [c['x_sink_rate'] for c in rm if c['x_sink_rate']]
    def peak(sys_, pred=lambda c: True):
        cs = [c for c in matrix if c['system'] == sys_ and pred(c)]
        return max(cs, key=lambda c: c['msgs_per_s']) if cs else None
    if x_pf:
        pk_r, pk_p = peak('ringmx'), peak('postfix')
        pr = pk_r['msgs_per_s'] / pk_p['msgs_per_s'] if pk_r and pk_p and pk_p['msgs_per_s'] else None
        checks.append(('inbound accept rate (fsync on) >= 20x Postfix, same workload',
                       f"min {min(x_pf):.1f}x, median {statistics.median(x_pf):.1f}x, max {max(x_pf):.1f}x "
                       f"over {len(x_pf)} workloads; {sum(1 for x in x_pf if x >= 20)}/{len(x_pf)} reach 20x",
                       'PASS' if min(x_pf) >= 20 else 'FAIL'))
        if pr:
            checks.append(('peak vs peak (best cell of each)',
                           f"ringmx {pk_r['msgs_per_s']:.0f}/s ({wl_label(pk_r)}) vs Postfix "
                           f"{pk_p['msgs_per_s']:.0f}/s ({wl_label(pk_p)}): {pr:.1f}x",
                           'PASS' if pr >= 20 else 'FAIL'))
    if x_sk:
        checks.append(('inbound accept rate >= 1/2 of ringmx-sink (the loopback limit), same workload',
                       f"min {min(x_sk):.2f}, median {statistics.median(x_sk):.2f}, max {max(x_sk):.2f} "
                       f"over {len(x_sk)} workloads; {sum(1 for x in x_sk if x >= 0.5)}/{len(x_sk)} reach 0.5",
                       'PASS' if min(x_sk) >= 0.5 else 'FAIL'))
    hr = [c for c in half if c['system'] == 'ringmx']
    if hr:
        c = hr[0]
        p99 = (c['latency_eod_us'].get('p99') or 0) / 1000
        checks.append(('p99 end-of-data latency at half of peak load <= 2 ms',
                       f"ringmx at {c['rate']}/s ({c['connections']} connections, open loop): "
                       f"p99 {p99:.2f} ms (p50 {(c['latency_eod_us'].get('p50') or 0) / 1000:.2f} ms)",
                       'PASS' if p99 <= 2 and c['check'] == 'ok' else 'FAIL'))
    dr = {d['system']: d for d in drains if d.get('elapsed_s')}
    if 'ringmx' in dr and 'postfix' in dr:
        r, p = dr['ringmx'], dr['postfix']
        ratio = p['elapsed_s'] / r['elapsed_s'] if r['elapsed_s'] > 0 else 0
        ok = not r.get('error') and not p.get('error')
        checks.append(('outbound: drain of a queue into ringmx-sink >= 20x faster than Postfix',
                       f"{r['messages']} messages: ringmx {r['elapsed_s']:.2f} s, Postfix "
                       f"{p['elapsed_s']:.2f} s: {ratio:.1f}x" + ('' if ok else ' (a check failed)'),
                       'PASS' if ratio >= 20 and ok else 'FAIL'))
    summary['design_checks'] = [{'target': t, 'measured': m, 'verdict': v} for t, m, v in checks]
    with open(f'{out}/{tag}bench-compare.json', 'w') as f:
        json.dump(summary, f, indent=1)
        f.write('\n')
    if checks:
        print('DESIGN.md performance targets:')
        for t, m, v in checks:
            print(f'  [{v}] {t}: {m}')
        print()

    # ---- charts (gnuplot)
    charts = []
    sizes = sorted({w[0] for w in workloads})
    tp_wl = [w for w in workloads if w[0] == min(sizes) and w[2] == 0 and w[3] == 'off'] if sizes else []
    conns = sorted({w[1] for w in tp_wl})
    if len(conns) >= 1:
        dat = f'{raw}/throughput.dat'
        with open(dat, 'w') as f:
            f.write('# connections ' + ' '.join(order) + '\n')
            for n in conns:
                vals = []
                for s in order:
                    c = by.get(((min(sizes), n, 0, 'off'), s))
                    vals.append(f"{c['msgs_per_s']:.1f}" if c and c['msgs_per_s'] > 0 else 'NaN')
                f.write(f'{n} ' + ' '.join(vals) + '\n')
        png = f'{out}/{tag}throughput-vs-connections.png'
        plots = ', '.join(f"'{dat}' using 1:{i + 2} with linespoints lw 2 pt 7 lc {i + 1} title '{SYS_NAMES[s]}'"
                          for i, s in enumerate(order)
                          if any((c := by.get(((min(sizes), n, 0, 'off'), s))) and c['msgs_per_s'] > 0 for n in conns))
        gp = f"""set terminal pngcairo size 900,560 font 'sans,10'
set output '{png}'
set title 'Accepted messages/s vs concurrent connections ({size_label(min(sizes))}, connection reuse, no pipelining, fsync on)'
set xlabel 'concurrent connections'
set ylabel 'messages/s (log scale)'
set logscale x
set logscale y
set grid
set key top left
set xtics ({', '.join(str(n) for n in conns)})
set xrange [{min(conns) / 1.5}:{max(conns) * 1.5}]
plot {plots}
"""
        run_gnuplot(gp, raw, 'throughput.gp')
        charts.append(png)
    # latency "CDF": ringmx-bench exports p50/p90/p99/p99.9/max only, so the curve is drawn
    # through those points (y axis in nines: 0.5, 0.9, 0.99, 0.999, max)
    cdf_sets = []
    if tp_wl:
        n = 100 if 100 in conns else max(conns)
        cdf_sets.append((f'closed loop, {size_label(min(sizes))} reuse no-pipelining, {n} connections',
                         [by.get(((min(sizes), n, 0, 'off'), s)) for s in order]))
    if half:
        cdf_sets.append(('open loop at half of each system peak rate', [next((c for c in half if c['system'] == s), None) for s in order]))
    if cdf_sets:
        dat = f'{raw}/latency-cdf.dat'
        ys = [('p50', 0.30103), ('p90', 1.0), ('p99', 2.0), ('p999', 3.0), ('max', 4.0)]
        blocks = []  # per panel: [(system, index in the data file)]
        idx = 0
        with open(dat, 'w') as f:
            for title, cs in cdf_sets:
                panel = []
                for s, c in zip(order, cs):
                    e = (c or {}).get('latency_eod_us') or {}
                    if not all(e.get(k) for k, _ in ys):
                        continue
                    f.write(f'# {title}: {s}\n')
                    for k, y in ys:
                        f.write(f"{e[k] / 1000} {y}\n")
                    f.write('\n\n')
                    panel.append((s, idx))
                    idx += 1
                blocks.append(panel)
        png = f'{out}/{tag}latency-cdf.png'
        gp = [f"set terminal pngcairo size {560 * len(cdf_sets)},520 font 'sans,10'",
              f"set output '{png}'",
              f"set multiplot layout 1,{len(cdf_sets)} title 'End-of-data latency (DATA dot written to 250 read), percentile points p50/p90/p99/p99.9/max'",
              "set logscale x", "set grid", "set key top left",
              "set xlabel 'latency, ms (log scale)'",
              "set ytics ('p50' 0.30103, 'p90' 1, 'p99' 2, 'p99.9' 3, 'max' 4)",
              "set yrange [0:4.3]"]
        for (title, _), panel in zip(cdf_sets, blocks):
            gp.append(f"set title '{title}'")
            pl = [f"'{dat}' index {j} using 1:2 with linespoints lw 2 pt 7 lc {order.index(s) + 1} title '{SYS_NAMES[s]}'"
                  for s, j in panel]
            gp.append('plot ' + ', '.join(pl) if pl else "plot NaN notitle")
        gp.append('unset multiplot')
        run_gnuplot('\n'.join(gp) + '\n', raw, 'latency-cdf.gp')
        charts.append(png)

    # ---- markdown summary (pasted into bench/RESULTS.md)
    md = [f"Command: `{meta['command']}`", '',
          f"Machine: {meta['machine']}", '',
          f"Disk: {meta['fsync_probe']}", '',
          f"Software: {meta['versions']}", '',
          f"Run: {meta['started']} to {meta['finished']} ({meta['elapsed_s']} s), load average before: "
          f"{meta['load_before']}, after: {meta['load_after']}", '',
          '| workload | system | msgs/s | p50 ms | p99 ms | CPU s / 1000 msgs | server CPU util | peak RSS MB | x Postfix (rate) | x Postfix (CPU/msg) | check |',
          '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |']
    for w in workloads:
        for s in order:
            c = by.get((w, s))
            if not c:
                continue
            e = c['latency_eod_us']
            md.append(f"| {wl_label(c)} | {SYS_NAMES[s]} | {c['msgs_per_s']:.0f} | "
                      f"{fmt(e.get('p50') and e['p50'] / 1000, '.2f')} | {fmt(e.get('p99') and e['p99'] / 1000, '.2f')} | "
                      f"{fmt(c['cpu_s_per_1k'], '.3f')} | {fmt(c['server_util'] and 100 * c['server_util'], '.0f')}% | "
                      f"{fmt(c['peak_rss_kib'] and c['peak_rss_kib'] / 1024, '.1f')} | "
                      f"{fmt(c['x_postfix_rate'], '.1f')} | {fmt(c['x_postfix_cpu'], '.3f')} | "
                      f"{c['check'] if c['check'] == 'ok' else '**' + c['check'] + '**'} |")
    if half:
        md += ['', '| system | offered rate msgs/s | connections | msgs/s | eod p50 ms | eod p99 ms | eod max ms | txn p99 ms | unsent | check |',
               '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |']
        for c in half:
            e, t = c['latency_eod_us'], c['latency_txn_us']
            md.append(f"| {SYS_NAMES[c['system']]} | {c['rate']} | {c['connections']} | {c['msgs_per_s']:.0f} | "
                      f"{fmt(e.get('p50') and e['p50'] / 1000, '.2f')} | {fmt(e.get('p99') and e['p99'] / 1000, '.2f')} | "
                      f"{fmt(e.get('max') and e['max'] / 1000, '.2f')} | {fmt(t.get('p99') and t['p99'] / 1000, '.2f')} | "
                      f"{c['unsent']} | {c['check']} |")
    if checks:
        md += ['', '| DESIGN.md target | measured | verdict |', '| --- | --- | --- |']
        md += [f'| {t} | {m} | {v} |' for t, m, v in checks]
    if drains:
        md += [''] + [f"- {d['summary']}" for d in drains]
    warn = open(f'{raw}/warnings.txt').read().strip()
    if warn:
        md += ['', 'Warnings printed during the run:', ''] + [f'- {l}' for l in warn.splitlines()]
    with open(f'{out}/{tag}bench-compare.md', 'w') as f:
        f.write('\n'.join(md) + '\n')
    print('Written: ' + ', '.join([f'{out}/{tag}bench-compare.tsv', f'{out}/{tag}bench-compare.json',
                                   f'{out}/{tag}bench-compare.md'] + charts))

def run_gnuplot(script, raw, name):
    path = f'{raw}/{name}'
    with open(path, 'w') as f:
        f.write(script)
    r = subprocess.run(['gnuplot', path], capture_output=True, text=True)
    if r.returncode != 0:
        print(f'bench-compare: gnuplot {path} failed: {r.stderr.strip()}', file=sys.stderr)

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == 'tree':
        print(' '.join(str(p) for p in tree(int(args[0]))))
    elif cmd == 'cpu':
        print(f'{tree_cpu(int(args[0])):.2f}')
    elif cmd == 'snap':
        # one instant: wall clock, the server tree's CPU seconds, the server CPUs' busy seconds,
        # and (at 'end') the CPU seconds other people's processes used since 'begin'
        cmd_snap(*args)
    elif cmd == 'quiet':
        cmd_quiet(args[0], args[1])
    elif cmd == 'cpustat':
        print('%.2f %.2f' % cpustat(cpulist(args[0])))
    elif cmd == 'ncpus':
        print(len(cpulist(args[0])))
    elif cmd == 'rss':
        cmd_rss(int(args[0]), args[1])
    elif cmd == 'port':
        cmd_port(args[0])
    elif cmd == 'waitport':
        cmd_waitport(args[0], args[1], int(args[2]) if len(args) > 2 else 0)
    elif cmd == 'reap':
        cmd_reap([int(p) for p in args])
    elif cmd == 'fsync-probe':
        cmd_fsync_probe(args[0])
    elif cmd == 'count':
        print(count_files(args))
    elif cmd == 'record':
        cmd_record(args[0], args[1:])
    elif cmd == 'jget':
        cmd_jget(args[0], args[1])
    elif cmd == 'report':
        report(args[0], args[1], args[2] if len(args) > 2 else '')
    else:
        sys.exit(f'unknown command {cmd}')

main()
PYEOF
hp() { "$PY" "$TMP/hp.py" "$@"; }
now() { date +%s.%N; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

# ---------------------------------------------------------------------------------------------
# CPUs: servers on one set, the generator (and this script) on the other
NPROC=$(nproc)
if [ -z "$SERVER_CPUS" ] || [ -z "$CLIENT_CPUS" ]; then
	if [ "$NPROC" -lt 2 ]; then
		: "${SERVER_CPUS:=0}" "${CLIENT_CPUS:=0}"
		loud "one CPU only: servers and generator share it; the numbers mean little"
	else
		half=$((NPROC / 2))
		: "${CLIENT_CPUS:=0-$((half - 1))}" "${SERVER_CPUS:=$half-$((NPROC - 1))}"
	fi
fi
NSERVER=$(hp ncpus "$SERVER_CPUS")
NCLIENT=$(hp ncpus "$CLIENT_CPUS")
taskset -pc "$CLIENT_CPUS" $$ >/dev/null || die "taskset -pc $CLIENT_CPUS failed"
# connections up to 1000 per system, Postfix's daemons included
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------------------------------------
# The systems: set-up once, then start/stop/count per cell
declare -A PORT
WANT=()
for s in $(split "$SYSTEMS"); do
	case "$s" in
	postfix)
		if [ "$IS_ROOT" != 1 ]; then loud "not root: Postfix (its master needs root) is skipped"; continue; fi
		command -v postconf >/dev/null || { loud "postfix is not installed: skipped"; continue; }
		;;
	haraka)
		[ "$HARAKA_OK" = 1 ] || { loud "Haraka is not installed: skipped"; continue; }
		;;
	esac
	WANT+=("$s")
done
[ ${#WANT[@]} -gt 0 ] || die "no system to run"
base=2710
for s in "${WANT[@]}"; do
	PORT[$s]=$(hp port "$base")
	base=$((PORT[$s] + 1))
done
SINK_DRAIN_PORT=$(hp port "$base")

# ---- Postfix: its own instance (config dir, queue, data dir) under $TMP
PF=$TMP/postfix
PF_DAEMON_DIR=$(postconf -dh daemon_directory 2>/dev/null || echo /usr/lib/postfix/sbin)
postfix_conf() { # mode: accept | drain
	local mode=$1
	mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
	chown postfix "$PF/data"
	cat >"$PF/etc/main.cf" <<EOF
# ringmx bench-compare: a private Postfix instance (postfix -c $PF/etc), loopback only.
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.test
mydomain = bench.test
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# accept for any address: no local domains, relaying for the loopback generator
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
# fair-fight settings (bench/README.md, bench-compare)
in_flow_delay = 0
default_process_limit = 1000
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_peername_lookup = no
biff = no
# every accepted message goes to the hold queue: stored (fsync'ed by cleanup) and left alone
smtpd_end_of_data_restrictions = check_client_access static:HOLD
EOF
	if [ "$mode" = drain ]; then
		cat >>"$PF/etc/main.cf" <<EOF
relayhost = [127.0.0.1]:$SINK_DRAIN_PORT
smtp_dns_support_level = disabled
EOF
	fi
	if [ "$PEER_LOGS" = 1 ]; then
		printf 'maillog_file = %s/maillog\nmaillog_file_prefixes = %s\n' "$PF" "$TMP" >>"$PF/etc/main.cf"
	fi
	# Debian's master.cf, with smtpd on our port only and no chroot (the queue is under $TMP)
	sed -E -e 's/^smtp( +)inet .*$/127.0.0.1:'"${PORT[postfix]:-0}"' inet n - n - - smtpd/' \
		-e '/^[a-z]/s/^([^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +)y /\1n /' \
		/etc/postfix/master.cf >"$PF/etc/master.cf"
	[ -f /etc/postfix/dynamicmaps.cf ] && cp /etc/postfix/dynamicmaps.cf "$PF/etc/"
	[ -d /etc/postfix/dynamicmaps.cf.d ] && cp -r /etc/postfix/dynamicmaps.cf.d "$PF/etc/"
	postfix -c "$PF/etc" check >"$TMP/postfix-check.log" 2>&1 ||
		{ cat "$TMP/postfix-check.log" >&2; return 1; }
}
postfix_start() {
	# master in the foreground (-s), so that $! is the master and cleanup owns it
	taskset -c "$SERVER_CPUS" "$PF_DAEMON_DIR/master" -c "$PF/etc" -s >>"$TMP/postfix.log" 2>&1 &
	SRV_PID=$!
	STARTED_PIDS+=("$SRV_PID")
}
postfix_count() { hp count "$PF/queue/incoming" "$PF/queue/active" "$PF/queue/deferred" \
	"$PF/queue/hold" "$PF/queue/maildrop"; }
postfix_wipe() {
	local d
	for d in incoming active deferred hold maildrop defer bounce trace corrupt flush saved; do
		find "$PF/queue/$d" -mindepth 1 -delete 2>/dev/null || true
	done
}

# ---- Haraka: a minimal installed-mode config dir
HK=$TMP/haraka
haraka_conf() {
	mkdir -p "$HK/config" "$HK/plugins/queue" "$HK/plugins/bench" "$HK/spool"
	cp -r "$HARAKA_HOME/config/." "$HK/config/"
	local nodes=0 # 0: one process, no cluster master (one server CPU); else one worker per CPU
	[ "$NSERVER" -gt 1 ] && nodes=$NSERVER
	printf 'listen=127.0.0.1:%s\nnodes=%s\n' "${PORT[haraka]}" "$nodes" >"$HK/config/smtp.ini"
	if [ "$PEER_LOGS" = 1 ]; then printf '[main]\nlevel=info\n' >"$HK/config/log.ini"; else
		printf '[main]\nlevel=warn\n' >"$HK/config/log.ini"; fi
	printf 'bench/no_rdns\nrcpt_to.in_host_list\nqueue/disk\n' >"$HK/config/plugins"
	echo localhost >"$HK/config/host_list"
	echo "$HK/spool" >"$HK/config/queue_disk.dir"
	cat >"$HK/plugins/bench/no_rdns.js" <<'EOF'
// bench/no_rdns: no reverse DNS lookup of the client (Postfix runs with
// smtpd_peername_lookup = no; ringmx does none).
exports.hook_lookup_rdns = function (next, connection) {
    next(OK, connection.remote.ip)
}
EOF
	cat >"$HK/plugins/queue/disk.js" <<'EOF'
// queue/disk: a durable queue for the benchmark. Each message is streamed into its own file
// in the spool dir (config/queue_disk.dir), fsync'ed and closed; only then is the client
// answered 250 (next(OK)). A failure answers 451 and removes the file. Count = files.
const fs = require('node:fs')
const path = require('node:path')

exports.register = function () {
    this.dir = this.config.get('queue_disk.dir')
    if (!this.dir) throw new Error('queue/disk: config/queue_disk.dir is not set')
    fs.mkdirSync(this.dir, { recursive: true })
    this.register_hook('queue', 'queue_disk')
}

exports.queue_disk = function (next, connection) {
    const txn = connection.transaction
    const file = path.join(this.dir, `${txn.uuid}.eml`)
    fs.open(file, 'wx', (err, fd) => {
        if (err) {
            connection.logerror(this, `open ${file}: ${err.message}`)
            return next(DENYSOFT, 'queue/disk: cannot store')
        }
        let done = false
        const fail = (what, e) => {
            if (done) return
            done = true
            connection.logerror(this, `${what} ${file}: ${e.message}`)
            fs.close(fd, () => fs.unlink(file, () => next(DENYSOFT, 'queue/disk: cannot store')))
        }
        const ws = fs.createWriteStream(file, { fd, autoClose: false })
        ws.on('error', (e) => fail('write', e))
        ws.on('finish', () => {
            fs.fsync(fd, (e) => {
                if (e) return fail('fsync', e)
                fs.close(fd, (e2) => {
                    if (e2) return fail('close', e2)
                    done = true
                    next(OK)
                })
            })
        })
        txn.message_stream.pipe(ws, { line_endings: '\r\n' })
    })
}
EOF
}
haraka_start() {
	taskset -c "$SERVER_CPUS" node "$HARAKA_HOME/bin/haraka" -c "$HK" >>"$TMP/haraka.log" 2>&1 &
	SRV_PID=$!
	STARTED_PIDS+=("$SRV_PID")
}
haraka_count() { hp count "$HK/spool"; }
haraka_wipe() { find "$HK/spool" -mindepth 1 -delete; }

# ---- ringmx
RX=$TMP/ringmx
ringmx_conf() { # mode: accept (keep what is accepted, deliver nothing) | drain | drain-held
	local mode=${1:-accept}
	mkdir -p "$RX/spool"
	cat >"$RX/ringmx.conf" <<EOF
# ringmx bench-compare
[server]
listen = 127.0.0.1:${PORT[ringmx]}
hostname = ringmx-bench.test
shards = $NSERVER
max_connections_per_ip = 0
log_level = $([ "$PEER_LOGS" = 1 ] && echo info || echo warn)
# polls 100 us for more work before sleeping: wake-ups are expensive on this kind of VM
busy_poll_us = 100

[spool]
dir = $RX/spool
fsync = yes

[accept]
domains = localhost
EOF
	if [ "$mode" = accept ]; then
		# like Postfix's hold queue: stored (fdatasync'ed), never delivered
		printf '\n[deliver]\nenabled = no\n' >>"$RX/ringmx.conf"
	else
		cat >>"$RX/ringmx.conf" <<EOF

[deliver]
# everything to the sink, as Postfix's relayhost; the default destination limits
relayhost = [127.0.0.1]:$SINK_DRAIN_PORT
maildir_root = $RX/mail

[queue]
hold = $([ "$mode" = drain-held ] && echo yes || echo no)
EOF
	fi
	bin/ringmx -c "$RX/ringmx.conf" --check >/dev/null
}
ringmx_start() {
	taskset -c "$SERVER_CPUS" bin/ringmx -c "$RX/ringmx.conf" >>"$TMP/ringmx.log" 2>&1 &
	SRV_PID=$!
	STARTED_PIDS+=("$SRV_PID")
}
ringmx_count() {
	local s
	s=$(bin/ringmx-spool -d "$RX/spool" stats 2>>"$TMP/ringmx.log") || { echo ""; return; }
	sed -n 's/.*records=\([0-9]*\).*/\1/p' <<<"$s"
}
ringmx_wipe() { find "$RX/spool" -mindepth 1 -delete; }

# ---- ringmx-sink: stores nothing; its count comes from --stats, written when it exits
SK=$TMP/sink
sink_conf() { mkdir -p "$SK"; }
sink_start() {
	rm -f "$SK/stats.json"
	taskset -c "$SERVER_CPUS" bin/ringmx-sink --listen "127.0.0.1:${PORT[sink]}" --shards "$NSERVER" \
		--stats "$SK/stats.json" >>"$TMP/sink.log" 2>&1 &
	SRV_PID=$!
	STARTED_PIDS+=("$SRV_PID")
}
sink_count() { hp jget "$SK/stats.json" messages; }
sink_wipe() { rm -f "$SK/stats.json"; }

# stop a server by PID: the signal it wants, then KILL whatever of its tree is left
stop_server() { # system pid
	local sys=$1 pid=$2 sig=TERM tree p
	[ "$sys" = haraka ] && sig=INT
	tree=$(hp tree "$pid" 2>/dev/null || true)
	kill -"$sig" "$pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	if kill -0 "$pid" 2>/dev/null; then
		loud "$sys (pid $pid) did not stop on SIG$sig in 5 s: killed"
	fi
	# shellcheck disable=SC2086
	hp reap $tree
	wait "$pid" 2>/dev/null || true
	local keep=()
	for p in "${STARTED_PIDS[@]}"; do [ "$p" != "$pid" ] && keep+=("$p"); done
	STARTED_PIDS=("${keep[@]+"${keep[@]}"}")
}

# ---------------------------------------------------------------------------------------------
# One cell: a fresh server, the warm-up run, the measured run, the checks
size_bytes() { awk -v s="$1" 'BEGIN { n = s + 0; u = substr(s, length(s)); if (u == "k" || u == "K") n *= 1024; else if (u == "m" || u == "M") n *= 1048576; print n }'; }
BENCH_TIMEOUT_EXTRA=90
run_bench() { # out secs args...
	local out=$1 secs=$2
	shift 2
	local lim
	lim=$(awk -v s="$secs" -v e="$BENCH_TIMEOUT_EXTRA" 'BEGIN { printf "%d", s + e }')
	# in the background + wait, so that a signal to this script is handled at once
	timeout -k 5 -s TERM "$lim" bin/ringmx-bench --server "127.0.0.1:$CUR_PORT" --threads "$NCLIENT" \
		--duration "$secs" --json "$@" >"$out" 2>"${out%.json}.err" &
	BENCH_PID=$!
	local rc=0
	wait "$BENCH_PID" || rc=$?
	BENCH_PID=""
	return "$rc"
}

CELL_NO=0
NOISE_LIMIT=0.10 # other people's processes may use at most 10% of one CPU during a measured run
ATTEMPTS=3
run_cell() { # kind system size conns per_conn pipe(on|off) [rate]
	CELL_NO=$((CELL_NO + 1))
	local id attempt
	id=$(printf '%03d-%s-%s-%s-c%s-pc%s-p%s' "$CELL_NO" "$1" "$2" "$3" "$4" "$5" "$6")
	for attempt in $(seq "$ATTEMPTS"); do
		: >"$RAW/$id.rec"
		run_cell_once "$id" "$attempt" "$@"
		if [ "$CELL_NOISY" = 1 ] && [ "$attempt" -lt "$ATTEMPTS" ]; then
			loud "$id: other processes used $CELL_OTHER CPU-s during the measured run ($CELL_TOP): waiting for a quiet machine and repeating the cell"
			cat "$RAW/$id.rec" >>"$RAW/noisy.jsonl"
			hp quiet $$ 300 || loud "the machine did not get quiet in 300 s; repeating anyway"
			continue
		fi
		break
	done
	cat "$RAW/$id.rec" >>"$RAW/cells.jsonl"
	rm -f "$RAW/$id.rec"
	# one line of progress, and a loud line when the stored count does not match
	"$PY" - "$RAW/cells.jsonl" <<'EOF'
import json, sys
c = json.loads(open(sys.argv[1]).read().splitlines()[-1])
b, w = c.get('bench') or {}, c.get('warm') or {}
acc, wacc = b.get('accepted', 0), (w.get('accepted', 0) if c.get('warmup_s') else 0)
st = c.get('stored')
rate = acc / b['elapsed_s'] if b.get('elapsed_s') else 0
p99 = (b.get('latency_eod_us') or {}).get('p99')
line = (f"{c['id']}: {rate:9.1f} msgs/s  p99 {p99 / 1000 if p99 else float('nan'):7.2f} ms  "
        f"accepted {acc}+{wacc} (warm-up)  stored {st}"
        + (f"  (attempt {c['attempts']})" if c.get('attempts', 1) > 1 else ''))
print(line, file=sys.stderr)
if c.get('error') or st is None or st != acc + wacc or b.get('errored') or b.get('rejected') or c.get('noisy'):
    msg = (f"CHECK FAILED {c['id']}: stored {st}, generator accepted {acc} + {wacc} warm-up, "
           f"errored {b.get('errored')}, rejected {b.get('rejected')}, connect_errors "
           f"{b.get('connect_errors')}{', ' + c['error'] if c.get('error') else ''}"
           f"{', noisy' if c.get('noisy') else ''}")
    print('\n!!!!!!!! ' + msg + '\n', file=sys.stderr)
    with open(sys.argv[1].rsplit('/', 1)[0] + '/warnings.txt', 'a') as f:
        f.write(msg + '\n')
EOF
}

# One attempt at a cell; its record goes to $RAW/$id.rec. Sets CELL_NOISY, CELL_OTHER, CELL_TOP.
run_cell_once() { # id attempt kind system size conns per_conn pipe(on|off) [rate]
	local id=$1 attempt=$2 kind=$3 sys=$4 size=$5 conns=$6 pc=$7 pipe=$8 rate=${9:-}
	local args=(--connections "$conns" --size "$size" --per-conn "$pc")
	[ "$pipe" = on ] && args+=(--pipelining)
	[ "$pipe" = env ] && args+=(--pipelining-envelope)
	[ -n "$rate" ] && args+=(--rate "$rate")
	local err="" stored="" cpu0="" cpu1="" b0="" b1="" t0="" t1="" other="" top="" pid="" try
	CELL_NOISY=0 CELL_OTHER=0 CELL_TOP=-
	CUR_PORT=${PORT[$sys]}
	rm -f "$RAW/$id.json" "$RAW/$id.warm.json" "$RAW/$id.rss.json"
	"${sys}_wipe"
	for try in 1 2; do
		"${sys}_start"
		pid=$SRV_PID
		hp waitport "$CUR_PORT" 30 "$pid" && break
		loud "$sys did not start for cell $id (try $try); its log ends with: $(tail -n 3 "$TMP/$sys.log" | tr '\n' ' ')"
		stop_server "$sys" "$pid"
		pid=""
		"${sys}_wipe"
		sleep 2
	done
	if [ -z "$pid" ]; then
		err="server did not start"
	else
		if [ "$(awk -v w="$WARMUP" 'BEGIN { print (w > 0) }')" = 1 ]; then
			run_bench "$RAW/$id.warm.json" "$WARMUP" "${args[@]}" || true
		fi
		"$PY" "$TMP/hp.py" rss "$pid" "$RAW/$id.rss.json" &
		SAMPLER_PID=$!
		read -r t0 cpu0 b0 _ _ < <(hp snap "$pid" "$SERVER_CPUS" $$ "$TMP/others.json" begin)
		run_bench "$RAW/$id.json" "$DURATION" "${args[@]}" || true
		read -r t1 cpu1 b1 other top < <(hp snap "$pid" "$SERVER_CPUS" $$ "$TMP/others.json" end)
		kill "$SAMPLER_PID" 2>/dev/null || true
		wait "$SAMPLER_PID" 2>/dev/null || true
		SAMPLER_PID=""
		[ -s "$RAW/$id.json" ] || err="generator failed: $(tail -n1 "$RAW/$id.err" 2>/dev/null)"
		CELL_OTHER=$other CELL_TOP=$top
		awk -v o="$other" -v t0="$t0" -v t1="$t1" -v l="$NOISE_LIMIT" 'BEGIN { exit !(o > l * (t1 - t0)) }' &&
			CELL_NOISY=1
	fi
	# Postfix and Haraka have stored everything they answered 250 to; stop, then count
	[ "$sys" = postfix ] && stored=$(postfix_count)
	[ -n "$pid" ] && stop_server "$sys" "$pid"
	[ "$sys" != postfix ] && stored=$("${sys}_count")
	[ -n "$stored" ] || stored=null
	local rec=(kind="$kind" system="$sys" size="$size" size_bytes="$(size_bytes "$size")" connections="$conns"
		per_conn="$pc" pipelining="$([ "$pipe" != off ] && echo true || echo false)"
		pipelining_envelope="$([ "$pipe" = env ] && echo true || echo false)"
		warmup_s="$WARMUP" duration_s="$DURATION" stored="$stored" server_ncpus="$NSERVER"
		bench="@$RAW/$id.json" warm="@$RAW/$id.warm.json" rss="@$RAW/$id.rss.json" id="$id"
		attempts="$attempt" noisy="$([ "$CELL_NOISY" = 1 ] && echo true || echo false)")
	[ -n "$rate" ] && rec+=(rate="$rate")
	[ -n "$err" ] && rec+=(error="$err")
	if [ -n "$cpu1" ]; then
		rec+=(cpu_s="$(fsub "$cpu1" "$cpu0")" server_busy_s="$(fsub "$b1" "$b0")" wall_s="$(fsub "$t1" "$t0")"
			other_cpu_s="$other" other_top="$top")
	fi
	hp record "$RAW/$id.rec" "${rec[@]}"
	"${sys}_wipe"
	sync
}

# ---------------------------------------------------------------------------------------------
# Set-up, the matrix, half load, drain, the report
for s in "${WANT[@]}"; do
	case "$s" in
	postfix) postfix_conf accept || die "the Postfix instance config failed" ;;
	haraka) haraka_conf ;;
	ringmx) ringmx_conf || die "the ringmx config failed" ;;
	sink) sink_conf ;;
	esac
done

STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
MACHINE="$NPROC CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'))"
MACHINE+=", $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
# shellcheck disable=SC1091
MACHINE+=", kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
MACHINE+="; servers on CPU(s) $SERVER_CPUS, generator on CPU(s) $CLIENT_CPUS"
FSYNC_PROBE=$(hp fsync-probe "$TMP")
log "$FSYNC_PROBE"
VERSIONS="postfix $(postconf -dh mail_version 2>/dev/null || echo -), Haraka $(haraka_version || echo -), node $(node --version 2>/dev/null || echo -)"
log "systems: ${WANT[*]}  ports: $(for s in "${WANT[@]}"; do printf '%s=%s ' "$s" "${PORT[$s]}"; done)"
log "servers on CPU $SERVER_CPUS ($NSERVER), generator on CPU $CLIENT_CPUS ($NCLIENT threads); load average $LOAD_BEFORE"
awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 0.5) }' &&
	loud "load average ${LOAD_BEFORE%% *} > 0.5 before the run: the machine is not quiet"

NW=0
for size in $(split "$SIZES"); do for c in $(split "$CONNS"); do for pc in $(split "$PERCONN"); do
	for p in $(split "$PIPE"); do NW=$((NW + 1)); done
done; done; done
log "$NW workloads x ${#WANT[@]} systems, ${DURATION}s + ${WARMUP}s warm-up each"

W=0
for size in $(split "$SIZES"); do
	for c in $(split "$CONNS"); do
		for pc in $(split "$PERCONN"); do
			for pipe in $(split "$PIPE"); do
				W=$((W + 1))
				log "workload $W/$NW: size $size, $c connections, per-conn $pc, pipelining $pipe"
				for s in "${WANT[@]}"; do
					run_cell matrix "$s" "$size" "$c" "$pc" "$pipe"
				done
			done
		done
	done
done

# Open loop at half of each system's peak closed-loop rate (the smallest size, reuse, no
# pipelining), with the connection count that reached the peak: the "p99 at half load" target.
if [ "$HALF_LOAD" = 1 ]; then
	HL_SYSTEMS=("${WANT[@]}")
	# --quick: only ringmx, whose p99 at half load is a DESIGN.md target
	[ "$QUICK" = 1 ] && HL_SYSTEMS=(ringmx)
	for s in "${HL_SYSTEMS[@]}"; do
		[[ " ${WANT[*]} " == *" $s "* ]] || continue
		read -r hl_rate hl_conns hl_size < <("$PY" - "$RAW/cells.jsonl" "$s" <<'EOF'
import json, sys
cells = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cs = [c for c in cells if c['kind'] == 'matrix' and c['system'] == sys.argv[2] and c['per_conn'] == 0
      and not c['pipelining'] and (c.get('bench') or {}).get('msgs_per_s')]
if cs:
    small = min(c['size_bytes'] for c in cs)
    cs = [c for c in cs if c['size_bytes'] == small]
    best = max(cs, key=lambda c: c['bench']['msgs_per_s'])
    print(max(1, int(best['bench']['msgs_per_s'] / 2)), best['connections'], best['size'])
else:
    print('- - -')
EOF
		)
		if [ "$hl_rate" = - ]; then
			log "half load: no closed-loop reuse/no-pipelining cell for $s; skipped"
			continue
		fi
		log "half load: $s at $hl_rate msgs/s, $hl_conns connections, $hl_size"
		run_cell halfload "$s" "$hl_size" "$hl_conns" 0 off "$hl_rate"
	done
fi

# Outbound drain
DRAIN_FILE=$RAW/drain.jsonl
: >"$DRAIN_FILE"
if [ "$DRAIN" -gt 0 ]; then
	if [[ " ${WANT[*]} " == *" ringmx "* ]]; then
		log "outbound drain: ringmx, $DRAIN queued messages into ringmx-sink"
		ringmx_wipe
		ringmx_conf drain-held
		CUR_PORT=${PORT[ringmx]}
		ringmx_start
		rp=$SRV_PID
		dr_err=""
		if hp waitport "$CUR_PORT" 30 "$rp"; then
			timeout -k 5 -s TERM 600 bin/ringmx-bench --server "127.0.0.1:$CUR_PORT" --threads "$NCLIENT" \
				--connections 50 --messages "$DRAIN" --size 4k --pipelining --to 'user{n}@drain.test' --json \
				>"$RAW/drain-ringmx-preload.json" 2>"$RAW/drain-ringmx-preload.err" || true
			queued=$(hp jget "$RAW/drain-ringmx-preload.json" accepted)
			[ "$queued" = "$DRAIN" ] || dr_err="preloaded $queued of $DRAIN"
			# held: stop, and start again with delivery on (what `postqueue -f` is to Postfix;
			# the restart's spool replay is inside the timing)
			stop_server ringmx "$rp"
			ringmx_conf drain
			rm -f "$RAW/drain-ringmx-sink.json"
			bin/ringmx-sink --listen "127.0.0.1:$SINK_DRAIN_PORT" --shards "$NCLIENT" \
				--stats "$RAW/drain-ringmx-sink.json" >>"$TMP/sink.log" 2>&1 &
			sinkpid=$!
			STARTED_PIDS+=("$sinkpid")
			hp waitport "$SINK_DRAIN_PORT" 10 "$sinkpid" || dr_err="sink did not start"
			t0=$(now)
			ringmx_start
			rp=$SRV_PID
			got=0
			lim=$(awk -v n="$DRAIN" 'BEGIN { printf "%d", 120 + n / 20 }')
			while [ "${got:-0}" -lt "${queued:-0}" ]; do
				awk -v a="$(now)" -v b="$t0" -v l="$lim" 'BEGIN { exit !(a - b > l) }' && { dr_err="not drained after ${lim}s ($got of $queued)"; break; }
				kill -USR1 "$sinkpid" 2>/dev/null
				sleep 0.02
				got=$(hp jget "$RAW/drain-ringmx-sink.json" messages 2>/dev/null || echo 0)
			done
			t1=$(now)
			cpu0=0
			cpu1=$(hp cpu "$rp")
			stop_server ringmx "$rp"
			stop_server sink "$sinkpid"
			delivered=$(hp jget "$RAW/drain-ringmx-sink.json" messages)
			[ "$delivered" = "$queued" ] || dr_err="${dr_err:+$dr_err; }sink received $delivered of $queued"
		else
			dr_err="ringmx did not start"
			stop_server ringmx "$rp"
		fi
		ringmx_wipe
		el=$(fsub "${t1:-0}" "${t0:-0}")
		summary=$(awk -v n="$DRAIN" -v e="$el" -v c0="${cpu0:-0}" -v c1="${cpu1:-0}" -v err="$dr_err" 'BEGIN {
			printf "Outbound drain: ringmx delivered %d queued 4k messages to ringmx-sink in %.2f s = %.0f msgs/s (start-up and spool replay included), server CPU %.2f s (%.3f s per 1000)%s",
				n, e, (e > 0 ? n / e : 0), c1 - c0, (n ? (c1 - c0) * 1000 / n : 0), (err != "" ? "; CHECK FAILED: " err : "") }')
		[ -n "$dr_err" ] && loud "drain: $dr_err"
		log "$summary"
		"$PY" -c 'import json,sys; print(json.dumps({"system": "ringmx", "messages": int(sys.argv[1]), "elapsed_s": float(sys.argv[2]), "error": sys.argv[3] or None, "summary": sys.argv[4]}))' \
			"$DRAIN" "$el" "$dr_err" "$summary" >>"$DRAIN_FILE"
		ringmx_conf accept
	fi
	if [[ " ${WANT[*]} " == *" postfix "* ]]; then
		log "outbound drain: Postfix, $DRAIN queued messages into ringmx-sink"
		postfix_wipe
		postfix_conf drain
		CUR_PORT=${PORT[postfix]}
		postfix_start
		pf=$SRV_PID
		dr_err=""
		if hp waitport "$CUR_PORT" 30 "$pf"; then
			timeout -k 5 -s TERM 600 bin/ringmx-bench --server "127.0.0.1:$CUR_PORT" --threads "$NCLIENT" \
				--connections 50 --messages "$DRAIN" --size 4k --pipelining --json \
				>"$RAW/drain-preload.json" 2>"$RAW/drain-preload.err" || true
			queued=$(postfix_count)
			[ "$queued" = "$DRAIN" ] || dr_err="preloaded $queued of $DRAIN"
			bin/ringmx-sink --listen "127.0.0.1:$SINK_DRAIN_PORT" --shards "$NCLIENT" \
				--stats "$RAW/drain-sink.json" >>"$TMP/sink.log" 2>&1 &
			sinkpid=$!
			STARTED_PIDS+=("$sinkpid")
			hp waitport "$SINK_DRAIN_PORT" 10 "$sinkpid" || dr_err="sink did not start"
			cpu0=$(hp cpu "$pf")
			t0=$(now)
			postsuper -c "$PF/etc" -H ALL >/dev/null 2>&1
			postqueue -c "$PF/etc" -f
			left=$queued
			lim=$(awk -v n="$DRAIN" 'BEGIN { printf "%d", 120 + n / 20 }')
			while [ "$left" -gt 0 ]; do
				awk -v a="$(now)" -v b="$t0" -v l="$lim" 'BEGIN { exit !(a - b > l) }' && { dr_err="queue not empty after ${lim}s ($left left)"; break; }
				sleep 0.05
				left=$(postfix_count)
			done
			t1=$(now)
			cpu1=$(hp cpu "$pf")
			stop_server sink "$sinkpid"
			delivered=$(hp jget "$RAW/drain-sink.json" messages)
			[ "$delivered" = "$queued" ] || dr_err="${dr_err:+$dr_err; }sink received $delivered of $queued"
		else
			dr_err="postfix did not start"
		fi
		stop_server postfix "$pf"
		postfix_wipe
		el=$(fsub "${t1:-0}" "${t0:-0}")
		summary=$(awk -v n="$DRAIN" -v e="$el" -v c0="${cpu0:-0}" -v c1="${cpu1:-0}" -v err="$dr_err" 'BEGIN {
			printf "Outbound drain: Postfix delivered %d queued 4k messages to ringmx-sink in %.2f s = %.0f msgs/s, server CPU %.2f s (%.3f s per 1000)%s",
				n, e, (e > 0 ? n / e : 0), c1 - c0, (n ? (c1 - c0) * 1000 / n : 0), (err != "" ? "; CHECK FAILED: " err : "") }')
		[ -n "$dr_err" ] && loud "drain: $dr_err"
		log "$summary"
		"$PY" -c 'import json,sys; print(json.dumps({"system": "postfix", "messages": int(sys.argv[1]), "elapsed_s": float(sys.argv[2]), "error": sys.argv[3] or None, "summary": sys.argv[4]}))' \
			"$DRAIN" "$el" "$dr_err" "$summary" >>"$DRAIN_FILE"
		postfix_conf accept
	fi
else
	log "outbound drain: skipped (--drain 0)"
fi

FINISHED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"$PY" - "$RAW/meta.json" <<EOF
import json, sys
json.dump({
    'command': $(printf '%s' "scripts/bench-compare.sh ${ARGS_ORIG[*]}" | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))'),
    'machine': $(printf '%s' "$MACHINE" | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read()))'),
    'fsync_probe': $(printf '%s' "$FSYNC_PROBE" | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read()))'),
    'elapsed_s': $SECONDS,
    'versions': $(printf '%s' "$VERSIONS" | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read()))'),
    'systems': $(printf '%s\n' "${WANT[@]}" | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read().split()))'),
    'server_cpus': '$SERVER_CPUS', 'client_cpus': '$CLIENT_CPUS',
    'duration_s': $DURATION, 'warmup_s': $WARMUP,
    'started': '$STARTED', 'finished': '$FINISHED',
    'load_before': '$LOAD_BEFORE', 'load_after': '$(cut -d' ' -f1-3 /proc/loadavg)',
}, open(sys.argv[1], 'w'), indent=1)
EOF
echo
hp report "$RAW" "$OUT" "$TAG"
log "finished in $SECONDS s"
