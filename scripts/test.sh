#!/usr/bin/env bash
# Runs the whole test suite. The integration tests start their own redis-server,
# redis-sentinel, mariadbd, prometheus (and run promtool) and a private Postfix instance with
# Dovecot (temporary ports and directories) and send mail with swaks, and lint the man pages
# with man and lexgrog (man-db), so those programs must be
# installed: as root on Debian, this script installs what is missing, without starting or
# configuring any system service.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server mariadb-client)
command -v python3 >/dev/null || missing+=(python3)
[ -x /usr/sbin/postfix ] || missing+=(postfix)
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-core)
[ -x /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
[ -e /usr/lib/dovecot/modules/lib90_sieve_plugin.so ] || missing+=(dovecot-sieve)
command -v swaks >/dev/null || missing+=(swaks)
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
command -v man >/dev/null && command -v lexgrog >/dev/null || missing+=(man-db)
command -v unshare >/dev/null || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "test.sh: please install: ${missing[*]}" >&2
    exit 1
  fi
  # Package scripts must not start system services: the tests run their own servers.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
  fi
  # Postfix installs unconfigured (no /etc/postfix/main.cf): the suite runs its own instance.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Built first, with the network: the suite itself runs without one.
cargo test --locked --no-run "$@"

# The suite runs in namespaces of its own with tripwires on the host's Redis (127.0.0.1:6379),
# syslog (/dev/log) and Postfix (sendmail, postqueue, postsuper, postcat of /etc/postfix): it
# fails when a test touched any of them (scripts/tripwired.sh).
if [ "$(id -u)" -ne 0 ]; then
  if [ "${CI:-}" = true ]; then
    echo "test.sh: the tripwires need root (unshare -mn)" >&2
    exit 1
  fi
  echo "test.sh: NOTE: not root, so no tripwires: nothing stops a test from touching this host" >&2
  exec cargo test --locked --offline "$@"
fi
exec scripts/tripwired.sh cargo test --locked --offline "$@"
