#!/usr/bin/env bash
# Runs every test of otpd: format and lint checks, unit tests, and the integration tests that
# drive the real daemon with real clients (oathtool, radclient, pamtester under pam_wrapper,
# Dovecot, Postfix, sshd, FreeRADIUS, pam_radius_auth, OpenVPN, strongSwan, PostgreSQL), the README's
# quick start on a clean copy, and the Debian package (built with cargo-deb, installed with
# dpkg and purged again: that test needs root, as CI has). Installs the Debian packages those
# tests need when they are missing. A test that still cannot find its tool fails and names the
# package: nothing is skipped.
#
#   tests/run.sh            everything
#   tests/run.sh --quick    only cargo test (no fmt/clippy, no fuzzing)
#   FUZZ_SECS=60 tests/run.sh   longer fuzz runs (default 15 s per target)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

# command-or-file -> Debian package
declare -A needs=(
  [oathtool]=oathtool
  [radclient]=freeradius-utils
  [pamtester]=pamtester
  [/usr/lib/x86_64-linux-gnu/libpam_wrapper.so]=libpam-wrapper
  [/usr/include/security/pam_modules.h]=libpam0g-dev
  [/usr/sbin/dovecot]=dovecot-imapd
  [/usr/sbin/postfix]=postfix
  [/usr/sbin/sshd]=openssh-server
  [/usr/sbin/freeradius]=freeradius
  [/usr/lib/freeradius/rlm_rest.so]=freeradius-rest
  [curl]=curl
  [/usr/sbin/iptables]=iptables
  [/lib/x86_64-linux-gnu/security/pam_radius_auth.so]=libpam-radius-auth
  [/usr/sbin/openvpn]=openvpn
  [/usr/sbin/swanctl]=strongswan-swanctl
  [/usr/sbin/charon-systemd]=charon-systemd
  [/usr/lib/ipsec/plugins/libstrongswan-eap-radius.so]=libcharon-extra-plugins
  [ssh-keygen]=openssh-client
  [setpriv]=util-linux
  [systemd-analyze]=systemd
  [python3]=python3
  [pip3]=python3-pip
  [openssl]=openssl
  [git]=git
  [dpkg-deb]=dpkg
  [lintian]=lintian
  [runuser]=util-linux
  [adduser]=adduser
)
missing=()
for what in "${!needs[@]}"; do
  if [[ $what == /* ]]; then
    [ -e "$what" ] || missing+=("${needs[$what]}")
  else
    command -v "$what" >/dev/null 2>&1 || missing+=("${needs[$what]}")
  fi
done

# PostgreSQL (tests of several nodes on one database, tests/products/postgres.rs): initdb and
# pg_ctl live in /usr/lib/postgresql/VERSION/bin, not on PATH.
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  missing+=(postgresql)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing Debian packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "tests/run.sh: not root and no sudo: install ${missing[*]} and run again" >&2
      exit 1
    fi
  fi
  # Installing dovecot, postfix, openssh-server, freeradius, openvpn, strongSwan or PostgreSQL
  # must not start the system's own services: the tests start private instances on 127.0.0.1. A
  # temporary policy-rc.d stops package scripts from starting them.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # postfix asks what kind of mail system to set up: none (the tests bring their own main.cf).
  echo 'postfix postfix/main_mailer_type select No configuration' | $sudo debconf-set-selections
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ $made_policy = 1 ] && $sudo rm -f /usr/sbin/policy-rc.d
fi

# Python packages from PyPI that tests use to make codes independently of otpd, and the SMTP
# server that receives e-mailed codes (module -> pip package). Debian's python3 refuses a
# plain pip install (PEP 668): retry with --break-system-packages, which only adds these small
# pure-Python packages.
declare -A py_needs=(
  [yubiotp]=yubiotp
  [aiosmtpd]=aiosmtpd
)
for mod in "${!py_needs[@]}"; do
  python3 -c "import $mod" >/dev/null 2>&1 && continue
  pkg=${py_needs[$mod]}
  echo "tests/run.sh: installing Python package $pkg (pip)"
  python3 -m pip install --quiet "$pkg" >/dev/null 2>&1 \
    || python3 -m pip install --quiet --break-system-packages "$pkg" >/dev/null 2>&1 \
    || true
  if ! python3 -c "import $mod" >/dev/null 2>&1; then
    echo "tests/run.sh: could not install the Python package $pkg with pip (is PyPI reachable?);" \
      "install it yourself (python3 -m pip install $pkg) and run again" >&2
    exit 1
  fi
done

# cargo-deb builds the Debian package that tests/package.rs installs (crates.io, once).
if ! cargo deb --version >/dev/null 2>&1; then
  echo "tests/run.sh: installing cargo-deb (cargo install cargo-deb --locked)"
  if ! cargo install --quiet cargo-deb --locked; then
    echo "tests/run.sh: could not install cargo-deb (is crates.io reachable?); install it" \
      "yourself (cargo install cargo-deb --locked) and run again" >&2
    exit 1
  fi
fi

if [ $quick = 0 ]; then
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
  echo "== cargo clippy --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings
fi
echo "== cargo test --workspace"
cargo test --workspace

if [ $quick = 0 ]; then
  # A short run of every fuzz target (fuzz/run.sh SECONDS for longer ones).
  echo "== fuzz/run.sh ${FUZZ_SECS:-15}"
  fuzz/run.sh "${FUZZ_SECS:-15}"
fi
