#!/usr/bin/env bash
# email-ratelimit installer: staged, idempotent, and reversible without ever stopping mail.
#
#   install.sh install     binary, config (log-only), systemd units, system user, Postfix hook
#   install.sh enforce     switch the config to mode = "enforce" and reload the daemon
#   install.sh log-only    switch back to mode = "log-only" and reload the daemon
#   install.sh disable     remove the Postfix hook; keep every file
#   install.sh uninstall   remove the hook and the installed files (database tables, the
#                          database account and Redis counters are left alone)
#   install.sh status      what is installed, the mode, the hook, the service
#   install.sh db-user     create a read-only MariaDB account (SELECT on the three tables it
#                          reads) and point the config's [database] url at it
#
# Options:
#   --root DIR             install under DIR instead of / (staging, tests)
#   --postfix-config DIR   the Postfix instance to hook (default: Postfix's own, /etc/postfix)
#   --binary PATH          the binary to install (default: target/release/email-ratelimit)
#   --no-systemd           never call systemctl (no systemd here, or a --root install)
#   --mysql "CMD"          db-user: how to run SQL as a MariaDB admin (default: mariadb)
#   --database NAME        db-user: ISPConfig's database (default: dbispconfig)
#   --db-socket PATH       db-user: MariaDB's socket (default: /run/mysqld/mysqld.sock)
#
# Postfix is changed with postconf only, after a copy of main.cf and master.cf is saved under
# /var/backups/email-ratelimit/. The hook is appended to smtpd_end_of_data_restrictions (last,
# so that a message another restriction refuses is never counted); disable restores the
# previous value exactly.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"

root=""
pfdir=""
binary=""
use_systemd=1
mysql_cmd="mariadb"
database="dbispconfig"
db_socket="/run/mysqld/mysqld.sock"
command=""

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "  $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --postfix-config) pfdir="${2:?--postfix-config needs a directory}"; shift 2 ;;
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --no-systemd) use_systemd=0; shift ;;
    --mysql) mysql_cmd="${2:?--mysql needs a command}"; shift 2 ;;
    --database) database="${2:?--database needs a name}"; shift 2 ;;
    --db-socket) db_socket="${2:?--db-socket needs a path}"; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    install|enforce|log-only|disable|uninstall|status|db-user)
      [ -z "$command" ] || die "one command at a time"; command="$1"; shift ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ -n "$command" ] || die "which command? install, enforce, log-only, disable, uninstall, status, db-user"
[ -z "$root" ] || root="$(cd "$root" && pwd)"
if [ -n "$root" ] && [ "$root" != "/" ]; then use_systemd=0; fi

bin_path="$root/usr/local/bin/email-ratelimit"
config_dir="$root/etc/email-ratelimit"
config="$config_dir/config.toml"
unit_dir="$root/etc/systemd/system"
man_dir="$root/usr/local/share/man/man1"
state_dir="$root/var/lib/email-ratelimit"
backup_dir="$root/var/backups/email-ratelimit"
hook_param="email_ratelimit_policy"
hook_ref='$email_ratelimit_policy'

pc() { if [ -n "$pfdir" ]; then postconf -c "$pfdir" "$@"; else postconf "$@"; fi; }
postfix_cmd() { if [ -n "$pfdir" ]; then postfix -c "$pfdir" "$@"; else postfix "$@"; fi; }

# The hook text: the one line postfix/main.cf.fragment ships, so admins and tests use the same.
hook_value() {
  sed -n "s/^$hook_param = //p" "$repo/postfix/main.cf.fragment"
}

have_systemd() { [ "$use_systemd" = 1 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; }

postfix_running() { postfix_cmd status >/dev/null 2>&1; }

reload_postfix() {
  if postfix_running; then postfix_cmd reload >/dev/null 2>&1 && say "reloaded Postfix"; fi
}

backup_postfix() {
  local conf stamp
  conf="$(pc -h config_directory)"
  stamp="$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$backup_dir"
  cp -p "$conf/main.cf" "$backup_dir/main.cf.$stamp"
  cp -p "$conf/master.cf" "$backup_dir/master.cf.$stamp"
  say "saved main.cf and master.cf to $backup_dir/*.$stamp"
}

hooked() {
  pc -nh smtpd_end_of_data_restrictions 2>/dev/null | grep -qF "$hook_ref"
}

hook_postfix() {
  if hooked; then
    say "Postfix hook already in place (smtpd_end_of_data_restrictions has $hook_ref)"
    return
  fi
  backup_postfix
  local current
  current="$(pc -nh smtpd_end_of_data_restrictions 2>/dev/null || true)"
  mkdir -p "$state_dir"
  if pc -n smtpd_end_of_data_restrictions 2>/dev/null | grep -q .; then
    printf 'set\n%s\n' "$current" > "$state_dir/postfix.state"
  else
    printf 'unset\n' > "$state_dir/postfix.state"
  fi
  pc -e "$hook_param = $(hook_value)"
  if [ -n "$current" ]; then
    pc -e "smtpd_end_of_data_restrictions = $current, $hook_ref"
  else
    pc -e "smtpd_end_of_data_restrictions = $hook_ref"
  fi
  say "hooked Postfix: smtpd_end_of_data_restrictions = $(pc -nh smtpd_end_of_data_restrictions)"
  reload_postfix
}

unhook_postfix() {
  if ! hooked && ! pc -n "$hook_param" 2>/dev/null | grep -q .; then
    say "Postfix hook not present; nothing to change"
    return
  fi
  backup_postfix
  local current rest saved_kind saved_value
  current="$(pc -nh smtpd_end_of_data_restrictions 2>/dev/null || true)"
  # Drop our reference wherever it stands in the list.
  rest="$(printf '%s' "$current" | tr ',' '\n' | sed 's/^ *//; s/ *$//' | grep -vxF "$hook_ref" | grep -v '^$' | paste -sd, - | sed 's/,/, /g' || true)"
  saved_kind="$(sed -n 1p "$state_dir/postfix.state" 2>/dev/null || true)"
  saved_value="$(sed -n 2p "$state_dir/postfix.state" 2>/dev/null || true)"
  if [ -z "$rest" ] && [ "$saved_kind" != "set" ]; then
    pc -X smtpd_end_of_data_restrictions
  elif [ "$saved_kind" = "set" ] && [ "$(printf '%s' "$rest" | tr -d ' ')" = "$(printf '%s' "$saved_value" | tr -d ' ')" ]; then
    pc -e "smtpd_end_of_data_restrictions = $saved_value"
  else
    pc -e "smtpd_end_of_data_restrictions = $rest"
  fi
  pc -X "$hook_param"
  rm -f "$state_dir/postfix.state"
  say "removed the Postfix hook; smtpd_end_of_data_restrictions is back to: $(pc -nh smtpd_end_of_data_restrictions 2>/dev/null || echo '(default)')"
  reload_postfix
}

find_binary() {
  if [ -n "$binary" ]; then :
  elif [ -x "$repo/target/release/email-ratelimit" ]; then binary="$repo/target/release/email-ratelimit"
  elif [ -x "$bin_path" ]; then binary="$bin_path"
  else die "no binary: build it (cargo build --release) or pass --binary PATH"
  fi
  [ -x "$binary" ] || die "$binary is not executable"
}

set_mode() {
  local mode="$1" tmp
  [ -f "$config" ] || die "$config not found: run install first"
  if grep -qx "mode = \"$mode\"" "$config"; then
    say "already mode = \"$mode\" in $config"
  else
    tmp="$(mktemp)"
    if grep -q '^mode = ' "$config"; then
      sed "s/^mode = .*/mode = \"$mode\"/" "$config" > "$tmp"
    else
      { echo "mode = \"$mode\""; cat "$config"; } > "$tmp"
    fi
    "$bin_path" check-config --quiet --config "$tmp" || { rm -f "$tmp"; die "the changed config does not validate; $config left as it was"; }
    cat "$tmp" > "$config"
    rm -f "$tmp"
    say "set mode = \"$mode\" in $config"
  fi
  if have_systemd && systemctl is-active --quiet email-ratelimit.service; then
    systemctl reload email-ratelimit.service
    say "reloaded email-ratelimit.service"
  else
    say "reload the running daemon to apply it: systemctl reload email-ratelimit (or kill -HUP its PID)"
  fi
}

write_config() {
  if [ -f "$config" ]; then
    say "kept the existing $config (never overwritten)"
    return
  fi
  local socket
  socket="$(pc -h queue_directory)/private/email-ratelimit"
  mkdir -p "$config_dir"
  # The shipped example, in log-only mode, listening where this Postfix looks (used when the
  # daemon runs without systemd's socket; under systemd the socket unit decides).
  sed -e 's/^mode = .*/mode = "log-only"          # install.sh enforce switches to "enforce"/' \
      -e "s|^socket = .*|socket = \"$socket\"|" \
      -e 's|^# socket_group = "postfix".*|socket_group = "postfix"|' \
      "$repo/config/example.toml" > "$config"
  "$binary" check-config --quiet --config "$config" || die "the new config does not validate"
  if getent group email-ratelimit >/dev/null && [ -z "$root" ]; then
    chown root:email-ratelimit "$config_dir" "$config"
    chmod 0750 "$config_dir"
  fi
  chmod 0640 "$config"
  say "wrote $config (mode = \"log-only\")"
}

cmd_install() {
  find_binary
  command -v postconf >/dev/null || die "postconf not found: is Postfix installed?"
  echo "Installing email-ratelimit (log-only: it counts and logs, defers nothing yet)"
  if [ -z "$root" ] && ! getent passwd email-ratelimit >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin email-ratelimit
    say "created the system user email-ratelimit"
  elif [ -n "$root" ]; then
    say "skipped the system user (installing under --root $root)"
  else
    say "system user email-ratelimit exists"
  fi
  mkdir -p "$(dirname "$bin_path")"
  if [ -f "$bin_path" ] && cmp -s "$binary" "$bin_path"; then
    say "binary $bin_path is up to date"
  else
    install -m 0755 "$binary" "$bin_path.new" && mv -f "$bin_path.new" "$bin_path"
    say "installed $bin_path"
  fi
  write_config
  mkdir -p "$unit_dir"
  for unit in email-ratelimit.socket email-ratelimit.service; do
    sed "s|/usr/bin/email-ratelimit|/usr/local/bin/email-ratelimit|g" "$repo/systemd/$unit" > "$unit_dir/$unit.new"
    if cmp -s "$unit_dir/$unit.new" "$unit_dir/$unit" 2>/dev/null; then rm -f "$unit_dir/$unit.new"; else mv -f "$unit_dir/$unit.new" "$unit_dir/$unit"; fi
  done
  say "installed units in $unit_dir"
  mkdir -p "$man_dir"
  "$bin_path" generate man --dir "$man_dir"
  say "installed man pages in $man_dir"
  if have_systemd; then
    systemctl daemon-reload
    systemctl enable --now email-ratelimit.socket
    systemctl enable email-ratelimit.service
    systemctl restart email-ratelimit.service
    say "started email-ratelimit.socket and email-ratelimit.service"
  else
    say "systemd not used: start the daemon yourself ($bin_path serve --config $config)"
  fi
  hook_postfix
  echo "Next: watch the decisions with   journalctl -u email-ratelimit -f | grep erl"
  echo "      then enforce the limits:   $0 enforce"
}

cmd_disable() {
  echo "Disabling email-ratelimit in Postfix (files stay; mail flows unlimited)"
  command -v postconf >/dev/null || die "postconf not found"
  unhook_postfix
  echo "Next: check that Postfix no longer asks:   postconf smtpd_end_of_data_restrictions"
  echo "      turn it back on with:                $0 install"
}

cmd_uninstall() {
  echo "Uninstalling email-ratelimit (database tables, the database account and Redis counters are left alone)"
  if command -v postconf >/dev/null; then unhook_postfix; fi
  if have_systemd; then
    systemctl disable --now email-ratelimit.service email-ratelimit.socket 2>/dev/null || true
  fi
  local removed=0 f
  for f in "$bin_path" "$unit_dir/email-ratelimit.socket" "$unit_dir/email-ratelimit.service"; do
    if [ -e "$f" ]; then rm -f "$f"; say "removed $f"; removed=1; fi
  done
  for f in "$man_dir"/email-ratelimit*.1; do
    if [ -e "$f" ]; then rm -f "$f"; removed=1; fi
  done
  [ "$removed" = 0 ] || say "removed the man pages from $man_dir"
  if [ -d "$config_dir" ]; then
    mkdir -p "$backup_dir"
    cp -p "$config" "$backup_dir/config.toml.$(date +%Y%m%d-%H%M%S)" 2>/dev/null || true
    rm -rf "$config_dir"
    say "removed $config_dir (a copy of the config is in $backup_dir)"
    removed=1
  fi
  if [ -d "$state_dir" ]; then rm -rf "$state_dir"; removed=1; fi
  if have_systemd; then systemctl daemon-reload; fi
  if [ -z "$root" ] && getent passwd email-ratelimit >/dev/null; then
    userdel email-ratelimit 2>/dev/null || true
    say "removed the system user email-ratelimit"
    removed=1
  fi
  [ "$removed" = 1 ] || say "nothing installed; nothing removed"
  echo "Next: backups of Postfix's files stay in $backup_dir; drop the database account with"
  echo "      DROP USER 'email_ratelimit'@'localhost';   (if you created it with db-user)"
}

cmd_status() {
  echo "email-ratelimit status"
  if [ -x "$bin_path" ]; then say "binary:  $bin_path ($("$bin_path" --version))"; else say "binary:  not installed"; fi
  if [ -f "$config" ]; then
    say "config:  $config ($(sed -n 's/^mode = "\([a-z-]*\)".*/mode = \1/p' "$config" | head -1))"
  else
    say "config:  not installed"
  fi
  if command -v postconf >/dev/null && hooked; then
    say "Postfix: hooked (smtpd_end_of_data_restrictions = $(pc -nh smtpd_end_of_data_restrictions))"
  else
    say "Postfix: not hooked"
  fi
  if have_systemd; then
    say "service: $(systemctl is-active email-ratelimit.service || true), socket: $(systemctl is-active email-ratelimit.socket || true)"
  fi
  echo "Next: journalctl -u email-ratelimit -f | grep erl"
}

cmd_db_user() {
  [ -f "$config" ] || die "$config not found: run install first"
  local password sql tmp url
  password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24)"
  sql="$(cat "$repo/scripts/sql/schema.sql")
CREATE USER IF NOT EXISTS 'email_ratelimit'@'localhost' IDENTIFIED BY '$password';
ALTER USER 'email_ratelimit'@'localhost' IDENTIFIED BY '$password';
GRANT SELECT ON \`$database\`.er_global_ratelimit TO 'email_ratelimit'@'localhost';
GRANT SELECT ON \`$database\`.er_mail_user_ratelimit TO 'email_ratelimit'@'localhost';
GRANT SELECT ON \`$database\`.mail_user TO 'email_ratelimit'@'localhost';"
  # shellcheck disable=SC2086
  printf 'USE `%s`;\n%s\n' "$database" "$sql" | $mysql_cmd
  url="mysql://email_ratelimit:$password@localhost/$database?socket=$db_socket"
  tmp="$(mktemp)"
  if grep -q '^\[database\]' "$config"; then
    awk -v url="$url" '
      /^\[/ { in_db = ($0 == "[database]") }
      in_db && /^url = / { print "url = \"" url "\""; done = 1; next }
      { print }
    ' "$config" > "$tmp"
    grep -q "^url = \"$url\"" "$tmp" || sed -i "/^\[database\]/a url = \"$url\"" "$tmp"
  else
    cat "$config" > "$tmp"
    printf '\n[database]\nurl = "%s"\n' "$url" >> "$tmp"
  fi
  "$bin_path" check-config --quiet --config "$tmp" || { rm -f "$tmp"; die "the changed config does not validate; $config left as it was"; }
  cat "$tmp" > "$config"
  rm -f "$tmp"
  say "created the MariaDB account email_ratelimit@localhost: SELECT on $database.er_global_ratelimit, er_mail_user_ratelimit, mail_user"
  say "set [database] url in $config (password masked: $("$bin_path" check-config --config "$config" | grep '^url = "mysql' || true))"
  echo "Next: reload the daemon (systemctl reload email-ratelimit) and look for 'limits loaded from database' in"
  echo "      journalctl -u email-ratelimit"
}

case "$command" in
  install) cmd_install ;;
  enforce) echo "Enforcing the limits"; set_mode enforce; echo "Next: journalctl -u email-ratelimit -f | grep 'erl DEFER'" ;;
  log-only) echo "Back to log-only"; set_mode log-only; echo "Next: journalctl -u email-ratelimit -f | grep erl" ;;
  disable) cmd_disable ;;
  uninstall) cmd_uninstall ;;
  status) cmd_status ;;
  db-user) cmd_db_user ;;
esac
