#!/usr/bin/env bash
# Installs what chatd needs on Debian 12, and the Node test dependencies.
# Fast when nothing is missing: one dpkg-query, one stat; apt-get and npm
# run only when something is actually missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential pkg-config libevent-dev libhiredis-dev libpq-dev
      libjansson-dev libcmocka-dev libssl-dev libwebsockets-dev
      redis-server postgresql postgresql-contrib clang libclang-rt-14-dev
      curl haproxy procps iproute2 util-linux
      # Browser tests (headless) and a sans-serif font for their screenshots.
      chromium fonts-liberation
      # Debugging and measurement (valgrind for the leak check of a worker).
      gdb valgrind)
# A Node from elsewhere (NodeSource, nvm) ships its own npm, and Debian's
# npm package would conflict with it or shadow it.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    pkgs+=(nodejs npm)
fi

# dpkg-query exits non-zero when some package is unknown; its output for
# the known ones is still what we need.
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${pkgs[@]}" 2>/dev/null || true)
missing=()
for p in "${pkgs[@]}"; do
    grep -qx "$p installed" <<<"$installed" || missing+=("$p")
done

did=()
if ((${#missing[@]})); then
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || {
            echo "deps: missing ${missing[*]}; run as root or install sudo" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    # The Debian postgresql and redis packages would start system-wide
    # servers from their maintainer scripts; ours are private (services.sh).
    if ! { "${sudo[@]}" apt-get update -q &&
           "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
               apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "deps: apt-get failed installing: ${missing[*]}" >&2
        exit 1
    fi
    did+=("installed ${missing[*]}")
fi

if [[ -f tests/package.json ]]; then
    # npm writes node_modules/.package-lock.json on every install, so it is
    # the stamp of the last install (the directory's own mtime is not).
    stamp=tests/node_modules/.package-lock.json
    if [[ ! -d tests/node_modules || ! -e $stamp ||
          ( -f tests/package-lock.json && tests/package-lock.json -nt $stamp ) ]]; then
        if [[ -f tests/package-lock.json ]]; then
            npm_cmd=(npm ci --prefix tests --no-audit --no-fund --loglevel=error)
        else
            npm_cmd=(npm install --prefix tests --no-audit --no-fund --loglevel=error)
        fi
        if ! out=$(timeout 300 "${npm_cmd[@]}" 2>&1); then
            printf '%s\n' "$out" | tail -n 40 >&2
            echo "deps: '${npm_cmd[*]}' failed" >&2
            exit 1
        fi
        touch "$stamp" 2>/dev/null || true
        did+=("${npm_cmd[0]} ${npm_cmd[1]} in tests/")
    fi
fi

if ((${#did[@]})); then
    msg=$(printf '%s; ' "${did[@]}")
    echo "deps: ${msg%; }"
else
    echo "deps: nothing missing"
fi
