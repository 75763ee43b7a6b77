#!/usr/bin/env bash
# Installs the .deb on this machine, checks what it put where, purges it, and checks that the
# purge left nothing behind (files under /etc /usr /var /opt, the system user and group).
# Needs root. Usage: scripts/check-package.sh target/debian/email-ratelimit_*.deb
set -euo pipefail
deb="${1:?usage: check-package.sh PACKAGE.deb}"

snapshot() {
  find /etc /usr /var/lib /var/spool /var/backups /opt -xdev \
    \( -path /var/lib/dpkg -o -path /var/lib/apt -o -path /var/lib/ucf -o -path /var/lib/mysql \) -prune \
    -o -print 2>/dev/null | sort
  getent passwd email-ratelimit || true
  getent group email-ratelimit || true
}

before="$(mktemp)"
after="$(mktemp)"
trap 'rm -f "$before" "$after"' EXIT
snapshot > "$before"

echo "== dpkg -i $deb"
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb"

fail() { echo "check-package: $*" >&2; exit 1; }
# grep -q on a pipe, but reading to the end: grep -q quits at the first match, and under pipefail
# the writer's SIGPIPE (help text past one 4 KiB write) then failed the check at random.
holds() { local all; all="$(cat)"; grep -q "$@" <<<"$all"; }
echo "== what it installed"
dpkg -L email-ratelimit | sort
/usr/bin/email-ratelimit --version
getent passwd email-ratelimit >/dev/null || fail "no system user email-ratelimit"
[ "$(stat -c '%U:%G %a' /etc/email-ratelimit/config.toml)" = "root:email-ratelimit 640" ] \
  || fail "config ownership: $(stat -c '%U:%G %a' /etc/email-ratelimit/config.toml)"
grep -qx '/etc/email-ratelimit/config.toml' /var/lib/dpkg/info/email-ratelimit.conffiles || fail "config is not a conffile"
/usr/bin/email-ratelimit check-config --config /etc/email-ratelimit/config.toml | holds '^mode = "log-only"' \
  || fail "the packaged config is not log-only"
[ -x /etc/init.d/email-ratelimit ] || fail "no /etc/init.d/email-ratelimit"
grep -qx '/etc/init.d/email-ratelimit' /var/lib/dpkg/info/email-ratelimit.conffiles || fail "the init script is not a conffile"
/usr/bin/email-ratelimit check-config --config /etc/email-ratelimit/config.toml | sed -n '/^\[daemon\]/,/^\[/p' \
  | holds -x 'user = "email-ratelimit"' || fail "the packaged config does not drop to email-ratelimit"
if [ ! -d /run/systemd/system ]; then
  ls /etc/rc2.d/S*email-ratelimit >/dev/null 2>&1 || fail "no systemd, and the init script is not linked into runlevel 2"
  echo "== without systemd: the packaged init script starts the daemon as email-ratelimit"
  # On a socket and a store of this check's own (never Postfix's socket, never a Redis).
  scratch="$(mktemp -d)"
  chmod 755 "$scratch"
  printf 'export EMAIL_RATELIMIT__STORE=memory\nexport EMAIL_RATELIMIT__LISTEN__SOCKET=%s/policy\nexport EMAIL_RATELIMIT_TEST_SYSLOG=%s/nolog\n' \
    "$scratch" "$scratch" > /etc/default/email-ratelimit
  /etc/init.d/email-ratelimit start || fail "the init script did not start the daemon"
  pid="$(cat /run/email-ratelimit/email-ratelimit.pid)"
  for task in /proc/"$pid"/task/*; do
    uid="$(awk '/^Uid:/ { print $2 $3 $4 $5 }' "$task/status")"
    want="$(id -u email-ratelimit)"
    [ "$uid" = "$want$want$want$want" ] || fail "thread $task runs as uid $uid"
  done
  /usr/bin/email-ratelimit probe --socket "$scratch/policy" --user probe@email-ratelimit.invalid | holds -x DUNNO \
    || fail "the daemon the init script started does not answer"
  /etc/init.d/email-ratelimit status | holds "is running (pid $pid)" || fail "status does not say it runs"
  /etc/init.d/email-ratelimit stop || fail "the init script did not stop the daemon"
  /etc/init.d/email-ratelimit status >/dev/null && fail "still running after stop"
  rm -rf /etc/default/email-ratelimit "$scratch" /run/email-ratelimit
fi
units=/lib/systemd/system
for u in email-ratelimit.service email-ratelimit.socket; do [ -f "$units/$u" ] || fail "no $units/$u"; done
ls /usr/share/man/man8/email-ratelimit.8* >/dev/null || fail "no man page email-ratelimit(8)"
ls /usr/share/man/man5/email-ratelimit.toml.5* >/dev/null || fail "no man page email-ratelimit.toml(5)"
lexgrog /usr/share/man/man8/email-ratelimit.8* >/dev/null || fail "email-ratelimit(8) has no NAME line lexgrog reads"
[ -x /usr/share/email-ratelimit/install.sh ] || fail "no /usr/share/email-ratelimit/install.sh"
/usr/share/email-ratelimit/install.sh --help | holds '^  install.sh hook' || fail "install.sh --help lacks hook"
[ -f /usr/share/bash-completion/completions/email-ratelimit ] || fail "no bash completion"
[ -f /usr/share/email-ratelimit/grafana/email-ratelimit.json ] || fail "no Grafana dashboard"
if command -v promtool >/dev/null; then
  promtool check rules /usr/share/email-ratelimit/prometheus/alerts.yml
  (cd /usr/share/email-ratelimit/prometheus && promtool test rules alerts.test.yml)
fi
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify --man=no "$units/email-ratelimit.socket" "$units/email-ratelimit.service"
  systemd-analyze security --offline=true --no-pager "$units/email-ratelimit.service" | tail -1
fi

echo "== an upgrade over a config this version refuses a part of: no restart, the fix said"
cp -p /etc/email-ratelimit/config.toml "$before.config"
sed -i '/^\[milter\]/,/^\[/ s|^listen = "".*|listen = "127.0.0.1:8893"|' /etc/email-ratelimit/config.toml
grep -q '^listen = "127.0.0.1:8893"' /etc/email-ratelimit/config.toml || fail "could not set a TCP milter"
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" 2> "$after" || { cat "$after"; fail "the upgrade failed"; }
grep -q 'milter.listen = "127.0.0.1:8893" refused: .*fix: listen = "/var/spool/postfix/private/email-ratelimit-milter"' "$after" \
  || fail "postinst did not say what to change: $(cat "$after")"
grep -q "NOT restarted" "$after" || fail "postinst did not say it kept the running daemon: $(cat "$after")"
cp -p "$before.config" /etc/email-ratelimit/config.toml
rm -f "$before.config"

echo "== the admin deleted the config; reinstalling must not fail"
rm /etc/email-ratelimit/config.toml
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" 2> "$after" || { cat "$after"; fail "dpkg -i failed without the config file"; }
grep -q "config.toml is missing" "$after" || fail "postinst did not say the config is missing: $(cat "$after")"

echo "== dpkg --purge email-ratelimit"
DEBIAN_FRONTEND=noninteractive dpkg --purge email-ratelimit
snapshot > "$after"
if ! diff -u "$before" "$after"; then
  fail "the purge left the differences above"
fi
echo "check-package: install and purge left nothing behind"
