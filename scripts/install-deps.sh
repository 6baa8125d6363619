#!/usr/bin/env bash
# Installs the Debian packages ringmx needs. Idempotent; quiet when everything is there.
#   scripts/install-deps.sh          build + run dependencies
#   scripts/install-deps.sh --test   also the test dependencies (real peers for integration tests)
#   scripts/install-deps.sh --bench  also the peers for scripts/bench-compare.sh
#   scripts/install-deps.sh --fuzz   also clang and its libFuzzer/sanitizer runtimes (make fuzz)
set -euo pipefail

build_pkgs=(gcc make pkg-config liburing-dev libjemalloc-dev libinih-dev libssl-dev libldns-dev
            libcrypt-dev)
test_pkgs=(libcriterion-dev swaks libnet-ssleay-perl libio-socket-ssl-perl openssl python3
           python3-pytest python3-aiosmtpd nsd ldnsutils postfix
           testssl.sh nmap   # scripts/tls-audit.sh (tests/integration/test_audit.py)
           unbound)          # a validating resolver for the DANE tests (test_dane.py)
bench_pkgs=(postfix gnuplot-nox procps bc)
# Debian 12's clang is clang 14; libFuzzer and the sanitizer runtimes are in compiler-rt.
fuzz_pkgs=(clang libclang-rt-14-dev)

want=("${build_pkgs[@]}")
for arg in "$@"; do
  case "$arg" in
    --test) want+=("${test_pkgs[@]}") ;;
    --bench) want+=("${bench_pkgs[@]}") ;;
    --fuzz) want+=("${fuzz_pkgs[@]}") ;;
    *) echo "install-deps.sh: unknown option: $arg" >&2; exit 2 ;;
  esac
done

missing=()
# Haraka comes from the npm registry; the machine may already have Node.js from elsewhere.
for arg in "$@"; do
  if [ "$arg" = --bench ] && ! command -v npm >/dev/null 2>&1; then want+=(nodejs npm); fi
done
for p in $(printf '%s\n' "${want[@]}" | sort -u); do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix asks questions on install; answer them so the install never blocks. It is only used
# as a tool (smtp-source, smtp-sink) and as a benchmark peer; it is not left running.
if printf '%s\n' "${missing[@]}" | grep -qx postfix; then
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  echo "postfix postfix/mailname string ringmx.test" | $SUDO debconf-set-selections
fi
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
