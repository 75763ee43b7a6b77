#!/usr/bin/env bash
# email-ratelimit installer: staged, idempotent, and reversible without ever stopping mail.
#
#   install.sh install     binary, config (log-only), system user, systemd units (without
#                          systemd: /etc/init.d/email-ratelimit, started), then the Postfix
#                          hook once the daemon answers (probe)
#   install.sh enforce     print what enforcing changes (email-ratelimit trial: the caps, today's
#                          would-be deferrals, who is over a cap already), then switch the config
#                          to mode = "enforce" and reload the daemon; with --at-midnight, set
#                          enforce_from = the next local date instead: log-only until then,
#                          enforced from then on without another reload
#   install.sh log-only    switch back to mode = "log-only" and reload the daemon
#   install.sh hook        only the Postfix hooks, as install sets them, once the daemon answers
#                          (for the Debian package, which ships this script as
#                          /usr/share/email-ratelimit/install.sh)
#   install.sh disable     remove the Postfix hook; keep every file
#   install.sh uninstall   remove the hook and the installed files (database tables, the
#                          database account and Redis counters are left alone)
#   install.sh status      what is installed, the mode, the hook, the service
#   install.sh db-user     create a read-only MariaDB account (SELECT on the columns it reads,
#                          never mail_user.password) and point the config's [database] at it
#
# Options:
#   --at-midnight          enforce: start at the next local midnight (see above)
#   --root DIR             install under DIR instead of / (staging, tests); Postfix is left
#                          alone unless --postfix-config names the instance to hook
#   --postfix-config DIR   the Postfix instance to hook (default: Postfix's own, /etc/postfix); a
#                          queue_directory other than /var/spool/postfix gets a socket-unit
#                          drop-in with its ListenStream
#   --binary PATH          the binary to install (default: target/release/email-ratelimit)
#   --no-systemd           never call systemctl (no systemd here, or a --root install): the
#                          init script is installed and, with a Postfix to hook, started
#   --no-milter            install, hook: leave website mail (non_smtpd_milters, pickup) alone
#   --pickup-checks        install, hook: where pickup runs with receive_override_options =
#                          no_header_body_checks (content-filter setups), drop that flag from
#                          pickup's override, so that pickup's own cleanup runs email-ratelimit's
#                          table (and only it: your header_checks still skip pickup mail);
#                          disable restores it. Asked interactively when not given
#   --dovecot-config FILE  install, hook: Dovecot's config (default: doveconf's own), whose
#                          mail_uid is exempted from [limits.local] (Sieve mail is sent as it)
#   --mysql "CMD"          db-user: how to run SQL as a MariaDB admin (default: mariadb)
#   --database NAME        db-user: ISPConfig's database (default: dbispconfig)
#   --db-socket PATH       db-user: MariaDB's socket (default: /run/mysqld/mysqld.sock)
#   --layout NAME          db-user: er-tables (default: the er_* tables of scripts/sql/schema.sql)
#                          or erl-columns (the ISPConfig extension's columns; needs the server id)
#   --server-id N          db-user, erl-columns: this server's id in ISPConfig (default: read from
#                          /usr/local/ispconfig/server/lib/config.inc.php)
#
# Postfix is changed with postconf only, after a copy of main.cf and master.cf is saved under
# /var/backups/email-ratelimit/. The hook goes into smtpd_end_of_data_restrictions before the
# first permit* (Postfix stops at a permit and would never ask), else last (so that a message
# another restriction refuses is never counted); master.cf services that override that list get
# the hook in their override too, and a per-service setup (postfix/master.cf.fragment) is kept
# as it is. Then every smtpd service's effective list is checked (postconf -x, -P) before
# success is reported. Website mail: $email_ratelimit_milter is appended to non_smtpd_milters
# (OpenDKIM and the like stay), and pickup gets a cleanup service of its own whose header_checks
# tell the milter who sent a message (postfix/milter.cf.fragment).
# disable restores the previous values.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"

root=""
pfdir=""
binary=""
use_systemd=1
with_milter=1
pickup_checks=0
dovecot_config=""
mysql_cmd="mariadb"
database="dbispconfig"
db_socket="/run/mysqld/mysqld.sock"
layout="er-tables"
server_id=""
command=""
at_midnight=0
mode_changed=0
# The options this run was given that a later command needs too (for the "Next:" hints).
again=""

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "  $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; again="$again --root $2"; shift 2 ;;
    --postfix-config) pfdir="${2:?--postfix-config needs a directory}"; again="$again --postfix-config $2"; shift 2 ;;
    --at-midnight) at_midnight=1; shift ;;
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --no-systemd) use_systemd=0; again="$again --no-systemd"; shift ;;
    --no-milter) with_milter=0; shift ;;
    --pickup-checks) pickup_checks=1; again="$again --pickup-checks"; shift ;;
    --dovecot-config) dovecot_config="${2:?--dovecot-config needs a file}"; again="$again --dovecot-config $2"; shift 2 ;;
    --mysql) mysql_cmd="${2:?--mysql needs a command}"; shift 2 ;;
    --database) database="${2:?--database needs a name}"; shift 2 ;;
    --db-socket) db_socket="${2:?--db-socket needs a path}"; shift 2 ;;
    --layout) layout="${2:?--layout needs er-tables or erl-columns}"; shift 2 ;;
    --server-id) server_id="${2:?--server-id needs a number}"; shift 2 ;;
    # The header comment, whole: every line from the second to the first that is not a comment.
    -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
    install|hook|enforce|log-only|disable|uninstall|status|db-user)
      [ -z "$command" ] || die "one command at a time"; command="$1"; shift ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ -n "$command" ] || die "which command? install, hook, enforce, log-only, disable, uninstall, status, db-user"
if [ -n "$root" ]; then
  [ -d "$root" ] || die "--root $root: no such directory"
  root="$(cd "$root" && pwd)"
fi
[ -z "$pfdir" ] || [ -d "$pfdir" ] || die "--postfix-config $pfdir: no such directory"
[ "$at_midnight" = 0 ] || [ "$command" = enforce ] || die "--at-midnight goes with enforce only"
if [ -n "$root" ] && [ "$root" != "/" ]; then use_systemd=0; fi

# Run from the Debian package (/usr/share/email-ratelimit/install.sh): the package owns the files.
packaged=0
schema="$repo/scripts/sql/schema.sql"
if [ "$here" = /usr/share/email-ratelimit ]; then
  packaged=1
  repo="$here"   # its postfix/ fragments lie next to it
  schema="$here/schema.sql"
  case "$command" in
    install|uninstall) die "$command: the Debian package installs the files (apt install / apt purge email-ratelimit); use: $0 hook" ;;
  esac
fi

if [ "$packaged" = 1 ]; then bin_path="$root/usr/bin/email-ratelimit"; else bin_path="$root/usr/local/bin/email-ratelimit"; fi
config_dir="$root/etc/email-ratelimit"
config="$config_dir/config.toml"
unit_dir="$root/etc/systemd/system"
man_dir="$root/usr/local/share/man"
share_dir="$root/usr/local/share/email-ratelimit"
state_dir="$root/var/lib/email-ratelimit"
# Without systemd: the sysvinit script (debian/email-ratelimit.init), its pid file's directory.
initd_file="$root/etc/init.d/email-ratelimit"
run_dir="$root/run/email-ratelimit"
pid_file="$run_dir/email-ratelimit.pid"
backup_dir="$root/var/backups/email-ratelimit"
hook_param="email_ratelimit_policy"
hook_ref='$email_ratelimit_policy'

# Postfix is touched only where it should be: the system's instance, or the one named with
# --postfix-config. A --root staging install without --postfix-config leaves Postfix alone.
touch_postfix=1
if [ -n "$root" ] && [ -z "$pfdir" ]; then touch_postfix=0; fi

pc() { if [ -n "$pfdir" ]; then postconf -c "$pfdir" "$@"; else postconf "$@"; fi; }
postfix_cmd() { if [ -n "$pfdir" ]; then postfix -c "$pfdir" "$@"; else postfix "$@"; fi; }

# Where this Postfix looks for the policy socket (unix:private/email-ratelimit).
policy_socket() {
  if [ "$touch_postfix" = 1 ] && command -v postconf >/dev/null; then
    echo "$(pc -h queue_directory)/private/email-ratelimit"
  else
    echo "/var/spool/postfix/private/email-ratelimit"
  fi
}

# The hook text: the one line postfix/main.cf.fragment ships, so admins and tests use the same.
hook_value() {
  sed -n "s/^$hook_param = //p" "$repo/postfix/main.cf.fragment"
}

have_systemd() { [ "$use_systemd" = 1 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; }

postfix_running() { postfix_cmd status >/dev/null 2>&1; }

# How an admin starts the daemon here.
how_to_start() {
  if have_systemd; then echo "systemctl start email-ratelimit.socket"
  elif [ -f "$initd_file" ]; then echo "$initd_file start"
  else echo "$bin_path serve --config $config"
  fi
}

# Whether the daemon answers where this Postfix asks (probe: a dry run, nothing counted), for
# up to 10 s.
daemon_answers() {
  local socket tries=0
  socket="$(policy_socket)"
  while :; do
    "$bin_path" probe --socket "$socket" --user probe@email-ratelimit.invalid >/dev/null 2>&1 && return 0
    tries=$((tries + 1))
    [ "$tries" -lt 20 ] || return 1
    sleep 0.5
  done
}

# Postfix is hooked only once the daemon answers: a hook with nothing behind it makes every
# authenticated message wait for the policy timeout and pass uncounted.
require_answer() {
  if daemon_answers; then
    say "the daemon answers on $(policy_socket)"
  else
    die "NOT hooked: nothing answers on $(policy_socket) (a hook now would make every authenticated message wait, then pass uncounted); start the daemon ($(how_to_start)), then: $0$again hook"
  fi
}

# The user the config drops to ([daemon] user), as the daemon reads it.
daemon_user() {
  "$bin_path" check-config --config "$config" 2>/dev/null | sed -n '/^\[daemon\]/,/^\[/ s/^user = "\(.*\)"$/\1/p'
}

# The init script for a host whose PID 1 is not systemd, with the paths of this install.
install_init_script() {
  mkdir -p "$(dirname "$initd_file")"
  sed -e "s|^DAEMON=.*|DAEMON=$bin_path|" \
      -e "s|^CONFIG=.*|CONFIG=$config|" \
      -e "s|^RUNDIR=.*|RUNDIR=$run_dir|" \
      -e "s|^STATEDIR=.*|STATEDIR=$state_dir|" \
      -e "s|^DEFAULTS=.*|DEFAULTS=$root/etc/default/email-ratelimit|" \
      "$repo/debian/email-ratelimit.init" > "$initd_file.new"
  chmod 0755 "$initd_file.new"
  if cmp -s "$initd_file.new" "$initd_file"; then rm -f "$initd_file.new"; else mv -f "$initd_file.new" "$initd_file"; fi
  if [ -z "$root" ] && command -v update-rc.d >/dev/null; then
    update-rc.d email-ratelimit defaults >/dev/null 2>&1 || say "(update-rc.d failed: have $initd_file run at boot yourself)"
  fi
  say "installed the init script $initd_file (systemd not used here)"
}

# Starts (or restarts) the daemon with the init script. A config this version refuses a part
# of keeps a running daemon (an upgrade never stops the service).
start_with_init() {
  local user
  if "$initd_file" status >/dev/null 2>&1 && ! "$bin_path" check-config --quiet --config "$config"; then
    say "NOT restarted: the running daemon keeps serving until $config is fixed (above); then: $initd_file restart"
    return
  fi
  "$initd_file" restart >/dev/null || die "the daemon did not start (above); Postfix not hooked"
  user="$(daemon_user)"
  say "started the daemon with $initd_file (sysvinit script: pid $(cat "$pid_file" 2>/dev/null || echo '?'), running as ${user:-root}, logging to syslog, facility mail)"
}

reload_postfix() {
  if postfix_running; then postfix_cmd reload >/dev/null 2>&1 && say "reloaded Postfix"; fi
}

backup_postfix() {
  # Once a run: the copies taken before this run changed anything.
  [ "${postfix_backed_up:-0}" = 0 ] || return 0
  postfix_backed_up=1
  local conf stamp
  conf="$(pc -h config_directory)"
  stamp="$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$backup_dir"
  cp -p "$conf/main.cf" "$backup_dir/main.cf.$stamp"
  cp -p "$conf/master.cf" "$backup_dir/master.cf.$stamp"
  say "saved main.cf and master.cf to $backup_dir/*.$stamp"
}

# Restriction lists, as Postfix reads them: tokens separated by commas or blanks, a `{ ... }`
# group belonging to the token before it. Modes:
#   check   prints ok (our policy comes before any permit*), after (behind a permit: never
#           reached) or none
#   insert  our reference before the first permit*, else at the end
#   remove  the list without our policy (comma-separated)
#   commas  the list comma-separated, as postconf -P can write it; exit 3 when it holds a
#           `{ ... }` group, which postconf -P cannot write
restrictions() {
  RL_MODE="$1" RL_VALUE="$2" RL_HOOK="$hook_ref" perl -e '
    my ($mode, $v, $hook) = @ENV{qw(RL_MODE RL_VALUE RL_HOOK)};
    my @t; my $i = 0; my $n = length $v;
    while ($i < $n) {
      my $c = substr($v, $i, 1);
      if ($c eq "{") {
        my $depth = 0;
        push @t, { s => $i } unless @t;
        do { my $b = substr($v, $i++, 1); $depth++ if $b eq "{"; $depth-- if $b eq "}" } while ($i < $n && $depth > 0);
        $t[-1]{e} = $i;
        next;
      }
      if ($c =~ /[\s,]/) { $i++; next }
      my $s = $i;
      $i++ while $i < $n && substr($v, $i, 1) !~ /[\s,{]/;
      push @t, { s => $s, e => $i };
    }
    $_->{x} = substr($v, $_->{s}, $_->{e} - $_->{s}) for @t;
    my $ours = sub { my $x = shift; $x eq $hook || ($x =~ /^check_policy_service\b/ && $x =~ /email-ratelimit/) };
    my ($permit, $mine);
    for my $k (0 .. $#t) {
      $permit //= $k if $t[$k]{x} =~ /^permit(_|$)/;
      $mine //= $k if $ours->($t[$k]{x});
    }
    if ($mode eq "check") {
      print !defined $mine ? "none" : (defined $permit && $permit < $mine) ? "after" : "ok";
    } elsif ($mode eq "insert") {
      if (defined $permit) { print substr($v, 0, $t[$permit]{s}), "$hook, ", substr($v, $t[$permit]{s}) }
      elsif (@t) { print substr($v, 0, $t[-1]{e}), ", $hook", substr($v, $t[-1]{e}) }
      else { print $hook }
    } elsif ($mode eq "remove") {
      print join(", ", map { $_->{x} } grep { !$ours->($_->{x}) } @t);
    } elsif ($mode eq "commas") {
      exit 3 if $v =~ /\{/;
      print join(",", map { $_->{x} } @t);
    }
  '
}

# The smtpd services of master.cf, as name/type.
smtpd_services() { pc -M 2>/dev/null | awk '$8 == "smtpd" { print $1 "/" $2 }'; }

# A service's -o smtpd_end_of_data_restrictions override (exit 1 without one); -x expanded.
override() {
  local svc="$1" flags="${2:-}"
  pc -P$flags 2>/dev/null | awk -v k="$svc/smtpd_end_of_data_restrictions" '
    index($0, k " =") == 1 { v = substr($0, length(k) + 3); sub(/^ /, "", v); print v; found = 1 }
    END { exit !found }'
}

set_override() { pc -P "$1/smtpd_end_of_data_restrictions=$2"; }

# The value one smtpd service runs with, $parameters expanded.
effective() { override "$1" x || pc -xh smtpd_end_of_data_restrictions 2>/dev/null || true; }

state_file="$backup_dir/postfix.state"

# Records a value as it was before install touched it, once (a second install keeps the first).
remember() {
  mkdir -p "$backup_dir"
  if [ "$1" = svc ] || [ "$1" = exit ]; then
    # Per service, per parameter.
    awk -F'\t' -v k="$1" -v a="$2" '$1 == k && $2 == a { f = 1 } END { exit !f }' "$state_file" 2>/dev/null && return
  else
    awk -F'\t' -v k="$1" '$1 == k { f = 1 } END { exit !f }' "$state_file" 2>/dev/null && return
  fi
  printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >> "$state_file"
}

main_check() { restrictions check "$(pc -nh smtpd_end_of_data_restrictions 2>/dev/null || true)"; }

# Whether some master.cf service's override names the hook.
overrides_hooked() {
  local svc ov
  for svc in $(smtpd_services); do
    ov="$(override "$svc")" || continue
    [ "$(restrictions check "$ov")" = none ] || return 0
  done
  return 1
}

# Per-service setups (postfix/master.cf.fragment): main.cf's list does not carry the hook, some
# service's override does. install then leaves main.cf's list alone.
per_service() { [ "$(main_check)" = none ] && overrides_hooked; }

hooked() { [ "$(main_check)" != none ] || overrides_hooked; }

# The override of a service rewritten with the hook before any permit, comma-separated; exit 3
# when postconf -P cannot write it.
hooked_override() {
  local ov="$1"
  [ "$(restrictions check "$ov")" = none ] || ov="$(restrictions remove "$ov")"
  restrictions commas "$(restrictions insert "$ov")"
}

# install.sh before v2 kept the pre-install value in /var/lib/email-ratelimit/postfix.state,
# which the daemon's StateDirectory now owns: move it to the root-only backup directory.
legacy_state() {
  local old="$state_dir/postfix.state"
  if [ -f "$old" ] && [ ! -f "$state_file" ]; then
    mkdir -p "$backup_dir"
    printf 'main\t%s\t%s\n' "$(sed -n 1p "$old")" "$(sed -n 2p "$old")" > "$state_file"
  fi
  rm -f "$old"
}

hook_postfix() {
  legacy_state
  local mode=global svc ov new main current refused="" changed=0 checked="" failed=""
  if per_service; then mode=per-service; fi
  # First find what cannot be done, so that nothing is changed half-way.
  for svc in $(smtpd_services); do
    ov="$(override "$svc")" || continue
    [ "$mode" = per-service ] && [ "$(restrictions check "$ov")" = none ] && continue
    [ "$(restrictions check "$ov")" = ok ] && continue
    hooked_override "$ov" >/dev/null || refused="$refused
    $svc: -o smtpd_end_of_data_restrictions = $ov"
  done
  if [ -n "$refused" ]; then
    die "master.cf overrides smtpd_end_of_data_restrictions where postconf cannot add the hook:$refused
  Add $hook_ref before any permit in those lines by hand (see postfix/master.cf.fragment), then run
  install again. Postfix was not changed (files already installed above stay; install is safe to re-run)."
  fi
  main="$(pc -nh smtpd_end_of_data_restrictions 2>/dev/null || true)"
  if [ "$(pc -h "$hook_param" 2>/dev/null || true)" != "$(hook_value)" ]; then
    [ "$changed" = 1 ] || backup_postfix; changed=1
    pc -e "$hook_param = $(hook_value)"
  fi
  if [ "$mode" = global ] && [ "$(restrictions check "$main")" != ok ]; then
    [ "$changed" = 1 ] || backup_postfix; changed=1
    if pc -n smtpd_end_of_data_restrictions 2>/dev/null | grep -q .; then remember main set "$main"; else remember main unset; fi
    # Behind a permit (an older install appended it there): take it out, then place it again.
    [ "$(restrictions check "$main")" = none ] || main="$(restrictions remove "$main")"
    pc -e "smtpd_end_of_data_restrictions = $(restrictions insert "$main")"
    say "hooked Postfix: smtpd_end_of_data_restrictions = $(pc -nh smtpd_end_of_data_restrictions)"
  fi
  for svc in $(smtpd_services); do
    ov="$(override "$svc")" || continue
    [ "$mode" = per-service ] && [ "$(restrictions check "$ov")" = none ] && continue
    [ "$(restrictions check "$ov")" = ok ] && continue
    [ "$changed" = 1 ] || backup_postfix; changed=1
    new="$(hooked_override "$ov")"
    remember svc "$svc" "$ov"
    set_override "$svc" "$new"
    say "hooked the master.cf override of $svc: smtpd_end_of_data_restrictions=$new"
  done
  [ "$changed" = 1 ] || say "Postfix hook already in place"
  [ "$mode" = global ] || say "per-service hook (master.cf) kept as it is; main.cf's smtpd_end_of_data_restrictions left alone"
  # Verify what every smtpd service really runs with, $parameters expanded.
  for svc in $(smtpd_services); do
    current="$(effective "$svc")"
    case "$(restrictions check "$current")" in
      ok) checked="$checked $svc" ;;
      none) [ "$mode" = per-service ] || failed="$failed
    $svc: smtpd_end_of_data_restrictions = $current" ;;
      after) failed="$failed
    $svc (behind a permit, never reached): smtpd_end_of_data_restrictions = $current" ;;
    esac
  done
  if [ -n "$failed" ] || [ -z "$checked" ]; then
    die "Postfix does not ask email-ratelimit everywhere it should:${failed:- no smtpd service is hooked}
  Fix the lines above (or run: $0 disable). Not reporting success."
  fi
  say "verified: the smtpd services${checked} ask email-ratelimit before any permit"
  [ "$changed" = 0 ] || reload_postfix
}

# `restore_list PARSER PARAM KIND SAVED`: main.cf's list PARAM without our entry (PARSER remove:
# restrictions or milters): the value remembered before install (KIND set) when nothing else
# changed meanwhile, else what is left (unset when nothing is, and it was unset before).
restore_list() {
  local parser="$1" param="$2" kind="$3" saved="$4" rest
  rest="$("$parser" remove "$(pc -nh "$param" 2>/dev/null || true)")"
  if [ "$kind" = set ] && [ "$(printf '%s' "$rest" | tr -d ' ,')" = "$("$parser" remove "$saved" | tr -d ' ,')" ]; then
    pc -e "$param = $saved"
  elif [ -z "$rest" ] && [ "$kind" != set ]; then
    pc -X "$param"
  else
    pc -e "$param = $rest"
  fi
}

unhook_postfix() {
  legacy_state
  local kind a b svc ov saved_main="" main_kind=""
  if ! hooked && ! pc -n "$hook_param" 2>/dev/null | grep -q .; then
    say "Postfix hook not present; nothing to change"
    rm -f "$state_file"
    return
  fi
  backup_postfix
  if [ -f "$state_file" ]; then
    while IFS=$'\t' read -r kind a b; do
      case "$kind" in
        main) main_kind="$a"; saved_main="$b" ;;
        svc) if override "$a" >/dev/null; then set_override "$a" "$(restrictions commas "$b")"; say "restored the master.cf override of $a"; fi ;;
      esac
    done < "$state_file"
  fi
  # Whatever still names the hook (an admin's own per-service lines): drop that entry.
  for svc in $(smtpd_services); do
    ov="$(override "$svc")" || continue
    [ "$(restrictions check "$ov")" = none ] && continue
    set_override "$svc" "$(restrictions commas "$(restrictions remove "$ov")")"
    say "removed the hook from the master.cf override of $svc"
  done
  restore_list restrictions smtpd_end_of_data_restrictions "$main_kind" "$saved_main"
  pc -X "$hook_param"
  rm -f "$state_file"
  say "removed the Postfix hook; smtpd_end_of_data_restrictions is back to: $(pc -nh smtpd_end_of_data_restrictions 2>/dev/null || echo '(default)')"
  reload_postfix
}

# Website mail (postfix/milter.cf.fragment): the milter in non_smtpd_milters, as the named
# parameter $email_ratelimit_milter appended to whatever is there (OpenDKIM stays), and pickup's
# own cleanup service whose header_checks shows the milter the submitting uid.
milter_param="email_ratelimit_milter"
milter_ref='$email_ratelimit_milter'
pickup_cleanup="email-ratelimit-cleanup"
milter_value() { sed -n "s/^$milter_param = //p" "$repo/postfix/milter.cf.fragment"; }
checks_file() { echo "$(pc -h config_directory)/email-ratelimit_pickup_header_checks"; }

# A milter list (commas or blanks between entries; an entry may be a `{ ... }` group). Modes:
#   has     exit 0 when it names our milter
#   remove  the list without our milter (", "-separated)
milters() {
  ML_MODE="$1" ML_VALUE="$2" ML_REF="$milter_ref" perl -e '
    my ($mode, $v, $ref) = @ENV{qw(ML_MODE ML_VALUE ML_REF)};
    my @t; my $i = 0; my $n = length $v;
    while ($i < $n) {
      my $c = substr($v, $i, 1);
      if ($c =~ /[\s,]/) { $i++; next }
      my $s = $i;
      if ($c eq "{") {
        my $depth = 0;
        do { my $b = substr($v, $i++, 1); $depth++ if $b eq "{"; $depth-- if $b eq "}" } while ($i < $n && $depth > 0);
      } else {
        $i++ while $i < $n && substr($v, $i, 1) !~ /[\s,{]/;
      }
      push @t, substr($v, $s, $i - $s);
    }
    (my $bare = $ref) =~ s/^\$//;
    my $ours = sub { my $x = shift; $x eq $ref || $x eq "\${$bare}" || $x eq "\$($bare)" || $x =~ /email-ratelimit-milter/ };
    if ($mode eq "has") { exit((grep { $ours->($_) } @t) ? 0 : 1) }
    print join(", ", grep { !$ours->($_) } @t);
  '
}

# The pickup service's cleanup_service_name override ("" without one).
pickup_cleanup_name() {
  pc -P 2>/dev/null | awk 'index($0, "pickup/unix/cleanup_service_name =") == 1 { sub(/^[^=]*= */, ""); print }'
}

milter_hooked() { milters has "$(pc -nh non_smtpd_milters 2>/dev/null || true)"; }

pm() { if [ -n "$pfdir" ]; then postmap -c "$pfdir" "$@"; else postmap "$@"; fi; }

# pickup's receive_override_options: its master.cf override (exit 1 without one), and what pickup
# runs with (the override, else main.cf's).
pickup_override() {
  pc -P 2>/dev/null | awk 'index($0, "pickup/unix/receive_override_options =") == 1 { sub(/^[^=]*= */, ""); print; f = 1 } END { exit !f }'
}
pickup_options() { pickup_override || pc -h receive_override_options 2>/dev/null || true; }
# `has_flag LIST FLAG`; `without_flag LIST FLAG` (comma-separated).
has_flag() { case ",$(printf '%s' "$1" | tr -s ' ,' ',')," in *",$2,"*) return 0 ;; esac; return 1; }
without_flag() { printf '%s' "$1" | tr -s ' ,' '\n' | grep -vx -e "$2" -e '' | paste -sd, - || true; }
# Whether install took no_header_body_checks out of pickup's override (state file).
pickup_fixed() { awk -F'\t' '$1 == "pickup" { f = 1 } END { exit !f }' "$state_file" 2>/dev/null; }

# The table of the rules that act where mail leaves (smtp_header_checks, lmtp_header_checks).
exit_file() { echo "$(pc -h config_directory)/email-ratelimit_exit_header_checks"; }
exit_params="smtp_header_checks lmtp_header_checks"
# A table list without our exit table (", "-separated).
without_exit() { printf '%s' "$1" | tr -s ' ,' '\n' | grep -v -e 'email-ratelimit_exit_header_checks' -e '^$' | paste -sd, - | sed 's/,/, /g' || true; }

# The rules of main.cf's header_checks tables (regexp, pcre) that match the Received header
# pickup writes: in pickup's cleanup our rule comes first, and Postfix applies one rule per
# header, so these never run there. They are repeated in the exit table (if/endif blocks are
# not followed: such a rule is reported, not repeated).
received_rules() {
  local sample table type file line one
  sample="Received: by $(pc -h myhostname 2>/dev/null || echo mx.example) (Postfix, from userid 33)
	id 4XyZ12ABCD; Mon,  7 Dec 2026 17:35:17 +0000 (UTC)"
  one="$(mktemp)"
  for table in $(pc -xh header_checks 2>/dev/null | tr ',' ' '); do
    type="${table%%:*}"; file="${table#*:}"
    case "$type" in regexp|pcre) ;; *) continue ;; esac
    [ -f "$file" ] || continue
    while IFS= read -r line || [ -n "$line" ]; do
      case "$line" in ''|'#'*|[[:space:]]*) continue ;; esac
      printf '%s\n' "$line" > "$one"
      if pm -q "$sample" "$type:$one" >/dev/null 2>&1; then printf '%s\n' "$line"; fi
    done < "$file"
  done
  rm -f "$one"
}

# Dovecot's mail user: Sieve (vacation, redirect, reject; ISPConfig's auto-responder and "send
# copy to") submits through sendmail as it, so it is exempt from [limits.local] (counted, never
# held). vmail is exempt by default; another one is added to the config's exempt_users.
exempt_mail_user() {
  command -v doveconf >/dev/null || return 0
  local uid user list erl="${binary:-$bin_path}"
  [ -f "$config" ] && [ -x "$erl" ] || return 0
  if [ -n "$dovecot_config" ]; then uid="$(doveconf -c "$dovecot_config" -h mail_uid 2>/dev/null || true)"
  else uid="$(doveconf -h mail_uid 2>/dev/null || true)"; fi
  local how="mail_uid"
  if [ -z "$uid" ]; then
    # No global mail_uid: the userdb gives each user's (ISPConfig's SQL userdb: 5000, vmail).
    getent passwd vmail >/dev/null || return 0
    uid=vmail how="the vmail account"
  fi
  user="$(getent passwd "$uid" | cut -d: -f1 || true)"
  if [ -z "$user" ]; then
    case "$uid" in *[!0-9]*) return 0 ;; *) user="uid$uid" ;; esac
  fi
  list="$("$erl" check-config --config "$config" 2>/dev/null | sed -n '/^\[limits.local\]/,/^\[/ s/^exempt_users = //p' || true)"
  case "$list" in *"\"$user\""*) return 0 ;; esac
  local edited="$config.erl-new" was=0 now=0
  cp -p "$config" "$edited"
  if sed -n '/^\[limits.local\]/,/^\[/ p' "$edited" | grep -q '^exempt_users = \['; then
    sed -i "/^\[limits.local\]/,/^\[/ s/^\(exempt_users = \[[^]]*\)\]/\1, \"$user\"]/" "$edited"
  elif grep -q '^\[limits.local\]' "$edited"; then
    sed -i "/^\[limits.local\]/a exempt_users = [\"root\", \"email-ratelimit\", \"vmail\", \"$user\"]" "$edited"
  else
    printf '\n[limits.local]\nexempt_users = ["root", "email-ratelimit", "vmail", "%s"]\n' "$user" >> "$edited"
  fi
  # The edit must not make the config worse than it was (a setting refused already stays so).
  "$erl" check-config --quiet --config "$config" >/dev/null 2>&1 || was=$?
  "$erl" check-config --quiet --config "$edited" >/dev/null 2>&1 || now=$?
  if [ "$now" != "$was" ]; then
    rm -f "$edited"
    say "WARNING: Dovecot's mail user $user ($how) should be exempt from [limits.local] (its Sieve mail would be held): add \"$user\" to exempt_users in $config by hand"
    return 0
  fi
  mv -f "$edited" "$config"
  say "Dovecot's mail user $user ($how) is exempt from [limits.local] (its Sieve mail is counted, never held): added to exempt_users in $config"
}

# The exit table and its place first in smtp_header_checks and lmtp_header_checks.
hook_exit_checks() {
  local file rules current p changed=0
  file="$(exit_file)"
  rules="$(received_rules)"
  {
    cat "$repo/postfix/exit_header_checks"
    if [ -n "$rules" ]; then
      printf '# Repeated from main.cf header_checks (pickup'"'"'s cleanup applies our rule to that header instead):\n%s\n' "$rules"
    fi
  } > "$file.new"
  if cmp -s "$file.new" "$file"; then rm -f "$file.new"; else mv -f "$file.new" "$file"; chmod 0644 "$file"; changed=1; fi
  if [ -n "$rules" ]; then
    say "main.cf's header_checks has a rule for pickup's Received header, which pickup's cleanup applies our rule to instead; repeated where mail leaves ($file):"
    printf '%s\n' "$rules" | sed 's/^/      /'
  fi
  for p in $exit_params; do
    current="$(pc -nh "$p" 2>/dev/null || true)"
    case "$current" in *email-ratelimit_exit_header_checks*) continue ;; esac
    backup_postfix; changed=2
    remember exit "$p" "$current"
    pc -e "$p = regexp:$file${current:+, $current}"
    say "the marker is removed where mail leaves: $p = $(pc -nh "$p")"
  done
  [ "$changed" = 0 ] || return 0
  return 1
}

unhook_exit_checks() {
  local kind a b p saved rest
  for p in $exit_params; do
    saved=""
    if [ -f "$state_file" ]; then
      while IFS=$'\t' read -r kind a b; do
        [ "$kind" = exit ] && [ "$a" = "$p" ] && saved="$b"
      done < "$state_file"
    fi
    rest="$(without_exit "$(pc -nh "$p" 2>/dev/null || true)")"
    if [ -z "$rest" ] && [ -z "$saved" ]; then pc -X "$p" 2>/dev/null || true
    elif [ "$(printf '%s' "$rest" | tr -d ' ,')" = "$(printf '%s' "$saved" | tr -d ' ,')" ] && [ -n "$saved" ]; then pc -e "$p = $saved"
    else pc -e "$p = $rest"
    fi
  done
  rm -f "$(exit_file)"
}

hook_milter() {
  local current checks hc hc_commas chroot own changed=0 source ro tables answer
  own="$(pickup_cleanup_name)"
  if [ -n "$own" ] && [ "$own" != "$pickup_cleanup" ]; then
    die "master.cf's pickup already uses its own cleanup service ($own): add email-ratelimit's pickup
  header_checks there by hand (postfix/milter.cf.fragment), then run $0 hook again."
  fi
  # What pickup runs with: no milter at all can see its mail with no_milters; with
  # no_header_body_checks (content-filter setups) our table never runs and every website's mail
  # would be local:unknown.
  ro="$(pickup_options)"
  if has_flag "$ro" no_milters; then
    die "pickup runs with receive_override_options = $ro: no_milters keeps every milter, email-ratelimit's
  among them, away from website mail. Take no_milters out of pickup's receive_override_options (master.cf,
  or main.cf) if website mail should be limited, or run with --no-milter. The policy hook is in place."
  fi
  if has_flag "$ro" no_header_body_checks && [ "$pickup_checks" = 0 ]; then
    if [ -t 0 ]; then
      echo "  pickup runs with receive_override_options = $ro (a content filter's setup): its cleanup skips"
      echo "  header_checks, so the milter cannot tell who sent website mail. Drop no_header_body_checks from"
      echo "  pickup's override only? pickup's own cleanup then runs email-ratelimit's table alone (your"
      echo "  header_checks still skip pickup mail); disable restores it."
      read -r -p "  Drop it? [y/N] " answer
      case "$answer" in [yY]*) pickup_checks=1 ;; esac
    fi
    [ "$pickup_checks" = 1 ] || die "pickup runs with receive_override_options = $ro: no_header_body_checks
  keeps pickup's cleanup from running email-ratelimit's header_checks, so every website's mail would be
  counted as local:unknown. Run again with --pickup-checks to drop that flag from pickup's override only
  (pickup's own cleanup then runs email-ratelimit's table alone: your header_checks still skip pickup mail;
  disable restores it), or with --no-milter. The policy hook is in place."
  fi
  hc="$(pc -nh header_checks 2>/dev/null || true)"
  if ! hc_commas="$(restrictions commas "$hc")"; then
    die "main.cf's header_checks holds a { } group, which postconf -P cannot copy to pickup's cleanup:
    header_checks = $hc
  Set up website mail by hand (postfix/milter.cf.fragment). The policy hook is in place."
  fi
  checks="$(checks_file)"
  source="$repo/postfix/pickup_header_checks"
  if ! cmp -s "$source" "$checks" 2>/dev/null; then
    install -m 0644 "$source" "$checks"
    say "installed $checks"
  fi
  if [ "$(pc -h "$milter_param" 2>/dev/null || true)" != "$(milter_value)" ]; then
    backup_postfix; changed=1
    pc -e "$milter_param = $(milter_value)"
  fi
  current="$(pc -nh non_smtpd_milters 2>/dev/null || true)"
  if ! milters has "$current"; then
    [ "$changed" = 1 ] || backup_postfix; changed=1
    if pc -n non_smtpd_milters 2>/dev/null | grep -q .; then remember milter set "$current"; else remember milter unset; fi
    pc -e "non_smtpd_milters = ${current:+$current, }$milter_ref"
    say "hooked the milter: non_smtpd_milters = $(pc -nh non_smtpd_milters)"
  fi
  if has_flag "$ro" no_header_body_checks; then
    [ "$changed" = 1 ] || backup_postfix; changed=1
    if current="$(pickup_override)"; then remember pickup set "$current"; else remember pickup unset; fi
    pc -P "pickup/unix/receive_override_options=$(without_flag "$ro" no_header_body_checks)"
    say "pickup's receive_override_options: no_header_body_checks dropped (was: $ro; now: $(pickup_options)); disable restores it"
  fi
  # Where main.cf's header checks did not run for pickup mail before, they still do not: our
  # table alone.
  tables="regexp:$checks${hc_commas:+,$hc_commas}"
  if pickup_fixed; then tables="regexp:$checks"; fi
  chroot="$(pc -M cleanup/unix 2>/dev/null | awk '{ print $5 }')"
  if ! pc -M "$pickup_cleanup/unix" 2>/dev/null | grep -q .; then
    [ "$changed" = 1 ] || backup_postfix; changed=1
    pc -M "$pickup_cleanup/unix=$pickup_cleanup unix n - ${chroot:-n} - 0 cleanup"
  fi
  if [ "$(pc -P 2>/dev/null | awk -v k="$pickup_cleanup/unix/header_checks =" 'index($0, k) == 1 { sub(/^[^=]*= */, ""); print }')" != "$tables" ]; then
    [ "$changed" = 1 ] || backup_postfix; changed=1
    pc -P "$pickup_cleanup/unix/header_checks=$tables"
  fi
  if [ -z "$own" ]; then
    [ "$changed" = 1 ] || backup_postfix; changed=1
    pc -P "pickup/unix/cleanup_service_name=$pickup_cleanup"
    say "pickup's own cleanup ($pickup_cleanup) shows the milter who sent website mail (header_checks = $tables)"
  fi
  if hook_exit_checks; then changed=1; fi
  [ "$changed" = 1 ] || say "milter hook already in place"
  exempt_mail_user
  # Verify what Postfix runs with, $parameters expanded.
  pc -xh non_smtpd_milters | grep -q 'unix:private/email-ratelimit-milter' \
    || die "non_smtpd_milters does not reach the milter: $(pc -xh non_smtpd_milters)"
  [ "$(pickup_cleanup_name)" = "$pickup_cleanup" ] || die "pickup does not use $pickup_cleanup"
  ro="$(pickup_options)"
  if has_flag "$ro" no_header_body_checks || has_flag "$ro" no_milters; then
    die "pickup still runs with receive_override_options = $ro: website mail would not be told apart"
  fi
  for p in $exit_params; do
    pc -xh "$p" | grep -q email-ratelimit_exit_header_checks || die "$p does not remove the marker: $(pc -xh "$p")"
  done
  say "verified: website mail passes the milter (non_smtpd_milters, pickup -> $pickup_cleanup, header_checks run), the marker is removed where mail leaves"
  [ "$changed" = 0 ] || reload_postfix
}

unhook_milter() {
  local kind a b saved="" saved_kind=""
  if ! milter_hooked && [ -z "$(pickup_cleanup_name)" ] && ! pc -n "$milter_param" 2>/dev/null | grep -q .; then
    say "milter hook not present; nothing to change"
    return
  fi
  backup_postfix
  if [ -f "$state_file" ]; then
    while IFS=$'\t' read -r kind a b; do
      [ "$kind" = milter ] && { saved_kind="$a"; saved="$b"; }
    done < "$state_file"
  fi
  restore_list milters non_smtpd_milters "$saved_kind" "$saved"
  pc -X "$milter_param"
  unhook_exit_checks
  # pickup's receive_override_options exactly as it was.
  if [ -f "$state_file" ]; then
    while IFS=$'\t' read -r kind a b; do
      [ "$kind" = pickup ] || continue
      if [ "$a" = set ]; then pc -P "pickup/unix/receive_override_options=$b"; else pc -PX "pickup/unix/receive_override_options"; fi
      say "restored pickup's receive_override_options"
    done < "$state_file"
    awk -F'\t' '$1 != "pickup" && $1 != "exit" && $1 != "milter"' "$state_file" > "$state_file.new" && mv -f "$state_file.new" "$state_file"
  fi
  [ "$(pickup_cleanup_name)" != "$pickup_cleanup" ] || pc -PX "pickup/unix/cleanup_service_name"
  pc -MX "$pickup_cleanup/unix" 2>/dev/null || true
  rm -f "$(checks_file)"
  say "removed the milter hook; non_smtpd_milters is back to: $(pc -nh non_smtpd_milters 2>/dev/null || echo '(default)')"
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
  local mode="$1" from="${2:-}" tmp
  [ -f "$config" ] || die "$config not found: run install first"
  local want_from=""
  [ -z "$from" ] || want_from="enforce_from = \"$from\""
  local have_from
  have_from="$(grep '^enforce_from = ' "$config" || true)"
  mode_changed=0
  if grep -qx "mode = \"$mode\"" "$config" && [ "$have_from" = "$want_from" ]; then
    say "already mode = \"$mode\"${from:+ with $want_from} in $config"
  else
    tmp="$(mktemp)"
    if grep -q '^mode = ' "$config"; then
      sed "s/^mode = .*/mode = \"$mode\"/" "$config" > "$tmp"
    else
      { echo "mode = \"$mode\""; cat "$config"; } > "$tmp"
    fi
    # enforce_from sits right under mode (a top-level key: before the first [section]).
    sed -i '/^enforce_from = /d' "$tmp"
    [ -z "$from" ] || sed -i "/^mode = /a $want_from" "$tmp"
    "$bin_path" check-config --quiet --config "$tmp" || { rm -f "$tmp"; die "the changed config does not validate; $config left as it was"; }
    cat "$tmp" > "$config"
    rm -f "$tmp"
    say "set mode = \"$mode\"${from:+ and $want_from} in $config"
    mode_changed=1
  fi
  if have_systemd && systemctl is-active --quiet email-ratelimit.service; then
    systemctl reload email-ratelimit.service
    say "reloaded email-ratelimit.service"
  elif ! have_systemd && [ -f "$initd_file" ] && "$initd_file" status >/dev/null 2>&1; then
    "$initd_file" reload >/dev/null
    say "reloaded the daemon ($initd_file reload)"
  else
    say "reload the running daemon to apply it: systemctl reload email-ratelimit (or kill -HUP its PID)"
  fi
}

# Records a switch that changed the config in syslog and the violations list (never fatal:
# Redis may be down).
record() {
  [ "$mode_changed" = 1 ] || return 0
  "$bin_path" record --config "$config" "$@" >/dev/null || say "(not recorded in the violations list: see above)"
}

cmd_enforce() {
  [ -f "$config" ] || die "$config not found: run install first"
  echo "What enforcing changes ($bin_path trial):"
  "$bin_path" trial --config "$config" | sed 's/^/  /' || say "(no preview: is Redis up? the switch goes on)"
  if [ "$at_midnight" = 1 ] && grep -qx 'mode = "enforce"' "$config"; then
    say "already mode = \"enforce\" in $config: nothing to wait for"
  elif [ "$at_midnight" = 1 ]; then
    local zone day
    zone="$("$bin_path" check-config -n --config "$config" | sed -n 's/^timezone = "\([^"]*\)".*/\1/p')"
    # The next local date of the config's zone, from the binary (date arithmetic in the shell
    # went two days ahead east of UTC+12).
    day="$("$bin_path" next-date --config "$config")" || die "cannot tell the next local date: see above"
    echo "Enforcing the limits from $day 00:00 ($zone)"
    set_mode log-only "$day"
    record enforce --reason "from $day (enforce_from, at midnight)"
    echo "Next: until then nothing changes; from midnight: journalctl -u email-ratelimit -f | grep 'erl DEFER'"
  else
    echo "Enforcing the limits"
    set_mode enforce
    record enforce
    echo "Next: journalctl -u email-ratelimit -f | grep 'erl DEFER'"
  fi
}

write_config() {
  if [ -f "$config" ]; then
    say "kept the existing $config (never overwritten)"
    return
  fi
  local socket
  socket="$(policy_socket)"
  mkdir -p "$config_dir"
  # The shipped example, in log-only mode, listening where this Postfix looks (used when the
  # daemon runs without systemd's socket; under systemd the socket unit decides).
  # Notifications go to this host's postmaster (every Postfix delivers postmaster@myhostname).
  local host admin='admin = []'
  host="$(pc -h myhostname 2>/dev/null || true)"
  if [ -n "$host" ]; then admin="admin = [\"postmaster@$host\"]"; fi
  # Started as root without systemd, the daemon drops to its own user (once it exists).
  local run_as=""
  if getent passwd email-ratelimit >/dev/null; then run_as="email-ratelimit"; fi
  local try
  for try in "$admin" 'admin = []'; do
    sed -e 's/^mode = .*/mode = "log-only"          # install.sh enforce switches to "enforce"/' \
        -e "s|^socket = .*|socket = \"$socket\"|" \
        -e 's|^# socket_group = "postfix"|socket_group = "postfix"|' \
        -e "s|^admin = \[\]|$try|" \
        -e "/^\[milter\]/,/^\[/ s|^listen = \"\".*|listen = \"$(dirname "$socket")/email-ratelimit-milter\"|" \
        -e "/^\[daemon\]/,/^\[/ s|^user = \"\"|user = \"$run_as\"|" \
        "$repo/config/example.toml" > "$config"
    admin="$try"
    # A host name that makes no plain address (no dot, say): no admin address, set it yourself.
    "$binary" check-config --quiet --config "$config" 2>/dev/null && break
  done
  "$binary" check-config --quiet --config "$config" || die "the new config does not validate"
  if getent group email-ratelimit >/dev/null; then
    chown root:email-ratelimit "$config_dir" "$config"
    chmod 0750 "$config_dir"
  fi
  chmod 0640 "$config"
  say "wrote $config (mode = \"log-only\"; $admin${run_as:+; [daemon] user = \"$run_as\"})"
}

# The socket unit listens where Postfix looks: another instance (another queue_directory)
# gets a drop-in with its path instead of the unit's default.
write_socket_dropin() {
  local socket dropin="$unit_dir/email-ratelimit.socket.d"
  socket="$(policy_socket)"
  local milter_dropin="$unit_dir/email-ratelimit-milter.socket.d"
  if [ "$socket" = /var/spool/postfix/private/email-ratelimit ]; then
    for dropin in "$dropin" "$milter_dropin"; do
      if [ -d "$dropin" ]; then rm -rf "$dropin"; say "removed the socket drop-in $dropin"; fi
    done
    return
  fi
  local path
  for dropin in "$dropin" "$milter_dropin"; do
    path="$socket"
    [ "$dropin" = "$milter_dropin" ] && path="$(dirname "$socket")/email-ratelimit-milter"
    mkdir -p "$dropin"
    printf '# Written by install.sh: this Postfix instance looks for the socket here.\n[Socket]\nListenStream=\nListenStream=%s\n' \
      "$path" > "$dropin/listen.conf.new"
    if cmp -s "$dropin/listen.conf.new" "$dropin/listen.conf"; then rm -f "$dropin/listen.conf.new"; else mv -f "$dropin/listen.conf.new" "$dropin/listen.conf"; fi
    say "socket unit drop-in: ListenStream=$path ($dropin/listen.conf)"
  done
}

cmd_install() {
  find_binary
  if [ "$touch_postfix" = 1 ]; then
    command -v postconf >/dev/null || die "postconf not found: is Postfix installed?"
  fi
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
  # The daemon's own state (the limits cache file); systemd's StateDirectory= makes it too.
  mkdir -p "$state_dir"
  if getent passwd email-ratelimit >/dev/null; then
    chown email-ratelimit:email-ratelimit "$state_dir"
    chmod 0750 "$state_dir"
  fi
  mkdir -p "$unit_dir"
  for unit in email-ratelimit.socket email-ratelimit-milter.socket email-ratelimit.service; do
    sed "s|/usr/bin/email-ratelimit|/usr/local/bin/email-ratelimit|g" "$repo/systemd/$unit" > "$unit_dir/$unit.new"
    if cmp -s "$unit_dir/$unit.new" "$unit_dir/$unit" 2>/dev/null; then rm -f "$unit_dir/$unit.new"; else mv -f "$unit_dir/$unit.new" "$unit_dir/$unit"; fi
  done
  say "installed units in $unit_dir"
  write_socket_dropin
  mkdir -p "$man_dir/man8" "$man_dir/man5"
  tmp_man="$(mktemp -d)"
  "$bin_path" generate man --dir "$tmp_man"
  install -m 0644 "$tmp_man"/*.8 "$man_dir/man8/"
  install -m 0644 "$tmp_man"/*.5 "$man_dir/man5/"
  rm -rf "$tmp_man"
  say "installed the man pages email-ratelimit(8), email-ratelimit.toml(5) and one per command in $man_dir"
  # What the README points to: the alert rules, the dashboard, the sendmail drop-in.
  mkdir -p "$share_dir/prometheus" "$share_dir/grafana" "$share_dir/systemd"
  install -m 0644 "$repo/contrib/prometheus/alerts.yml" "$repo/contrib/prometheus/alerts.test.yml" "$share_dir/prometheus/"
  install -m 0644 "$repo/contrib/grafana/email-ratelimit.json" "$share_dir/grafana/"
  install -m 0644 "$repo/systemd/sendmail.conf" "$share_dir/systemd/"
  say "installed the alert rules, the Grafana dashboard and the sendmail drop-in in $share_dir"
  if have_systemd; then
    systemctl daemon-reload
    systemctl enable --now email-ratelimit.socket
    systemctl enable email-ratelimit.service
    # A config the new version refuses a part of keeps the running daemon (an upgrade never
    # stops the service): say what to change first.
    if "$bin_path" check-config --quiet --config "$config"; then
      systemctl restart email-ratelimit.service
      say "started email-ratelimit.socket and email-ratelimit.service"
    else
      say "NOT restarted: the running daemon keeps serving until $config is fixed (above); then: systemctl restart email-ratelimit"
    fi
  else
    install_init_script
    if [ "$touch_postfix" = 1 ]; then
      start_with_init
    else
      say "staging under --root $root: the daemon not started ($initd_file start)"
    fi
  fi
  if [ "$touch_postfix" = 1 ]; then
    require_answer
    hook_postfix
    [ "$with_milter" = 0 ] || hook_milter
  else
    say "staging under --root $root: Postfix not touched (pass --postfix-config DIR to hook an instance)"
  fi
  echo "Next: watch the decisions with   journalctl -u email-ratelimit -f | grep erl"
  echo "      see what enforcing changes: $bin_path trial --config $config"
  echo "      then enforce the limits:   $0$again enforce   (or: enforce --at-midnight)"
}

cmd_hook() {
  command -v postconf >/dev/null || die "postconf not found: is Postfix installed?"
  [ "$touch_postfix" = 1 ] || die "hook under --root needs --postfix-config DIR (the instance to hook)"
  echo "Hooking email-ratelimit into Postfix (the daemon decides by its mode: see $config)"
  require_answer
  hook_postfix
  [ "$with_milter" = 0 ] || hook_milter
  echo "Next: watch the decisions with   journalctl -u email-ratelimit -f | grep erl"
  echo "      undo with:                 $0$again disable"
}

cmd_disable() {
  echo "Disabling email-ratelimit in Postfix (files stay; mail flows unlimited)"
  [ "$touch_postfix" = 1 ] || die "--root without --postfix-config: which Postfix? nothing to disable"
  command -v postconf >/dev/null || die "postconf not found"
  unhook_milter
  unhook_postfix
  echo "Next: check that Postfix no longer asks:   postconf smtpd_end_of_data_restrictions"
  echo "      turn it back on with:                $0$again hook"
}

cmd_uninstall() {
  echo "Uninstalling email-ratelimit (database tables, the database account and Redis counters are left alone)"
  local removed=0 f socket stamp
  if [ "$touch_postfix" = 1 ] && command -v postconf >/dev/null; then unhook_milter; unhook_postfix; fi
  if have_systemd; then
    systemctl disable --now email-ratelimit.service email-ratelimit.socket email-ratelimit-milter.socket 2>/dev/null || true
  fi
  if [ -f "$initd_file" ]; then
    "$initd_file" stop >/dev/null 2>&1 || true
    if [ -z "$root" ] && command -v update-rc.d >/dev/null; then update-rc.d -f email-ratelimit remove >/dev/null 2>&1 || true; fi
    rm -f "$initd_file"
    say "stopped the daemon and removed $initd_file"
    removed=1
  fi
  rm -f "$pid_file"
  rmdir "$run_dir" 2>/dev/null || true
  # The socket unit keeps its file across restarts (RemoveOnStop=no): gone with the unit.
  socket="$(policy_socket)"
  [ "$touch_postfix" = 1 ] || socket="$root$socket"
  if [ -S "$socket" ]; then rm -f "$socket"; say "removed the policy socket $socket"; removed=1; fi
  if [ -S "$(dirname "$socket")/email-ratelimit-milter" ]; then
    rm -f "$(dirname "$socket")/email-ratelimit-milter"; say "removed the milter socket"; removed=1
  fi
  for f in "$bin_path" "$unit_dir/email-ratelimit.socket" "$unit_dir/email-ratelimit-milter.socket" "$unit_dir/email-ratelimit.service"; do
    if [ -e "$f" ]; then rm -f "$f"; say "removed $f"; removed=1; fi
  done
  for f in "$unit_dir/email-ratelimit.socket.d" "$unit_dir/email-ratelimit-milter.socket.d"; do
    if [ -d "$f" ]; then rm -rf "$f"; say "removed $f"; removed=1; fi
  done
  for f in "$man_dir"/man1/email-ratelimit*.1 "$man_dir"/man8/email-ratelimit*.8 "$man_dir"/man5/email-ratelimit*.5; do
    if [ -e "$f" ]; then rm -f "$f"; removed=1; fi
  done
  [ "$removed" = 0 ] || say "removed the man pages from $man_dir"
  if [ -d "$share_dir" ]; then rm -rf "$share_dir"; say "removed $share_dir"; removed=1; fi
  if [ -d "$config_dir" ]; then
    # The admin's config (and whatever else was put there) is saved whole, never just deleted.
    stamp="$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$backup_dir"
    cp -a "$config_dir" "$backup_dir/etc-email-ratelimit.$stamp" || die "could not back up $config_dir; nothing removed there"
    rm -rf "$config_dir"
    say "removed $config_dir; its files (your config.toml and anything else there) are saved in $backup_dir/etc-email-ratelimit.$stamp"
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
  if [ "$touch_postfix" = 1 ] && command -v postconf >/dev/null && hooked; then
    if per_service; then
      say "Postfix: hooked per service in master.cf"
    else
      say "Postfix: hooked (smtpd_end_of_data_restrictions = $(pc -nh smtpd_end_of_data_restrictions))"
    fi
  else
    say "Postfix: not hooked"
  fi
  if [ "$touch_postfix" = 1 ] && command -v postconf >/dev/null && milter_hooked; then
    say "website mail: hooked (non_smtpd_milters = $(pc -nh non_smtpd_milters); pickup -> $(pickup_cleanup_name))"
  else
    say "website mail: not hooked"
  fi
  if have_systemd; then
    say "service: $(systemctl is-active email-ratelimit.service || true), socket: $(systemctl is-active email-ratelimit.socket || true)"
  elif [ -f "$initd_file" ]; then
    say "init:    $("$initd_file" status 2>&1 || true)"
  fi
  # Whether the daemon answers where Postfix asks (email-ratelimit status: 0 up, 1 the daemon
  # does not answer, 2 Redis does not).
  if [ -x "$bin_path" ] && [ -f "$config" ]; then
    local rc=0
    "$bin_path" status --config "$config" >/dev/null 2>&1 || rc=$?
    case "$rc" in
      0) say "daemon:  answers (Redis too)" ;;
      1) say "daemon:  NOT answering on its socket (Postfix lets mail through unchecked)" ;;
      2) say "daemon:  answers, but Redis does not (it fails open: mail flows uncounted)" ;;
      *) say "daemon:  unknown (email-ratelimit status exited $rc)" ;;
    esac
  fi
  echo "Next: journalctl -u email-ratelimit -f | grep erl"
}

# This server's id in ISPConfig: --server-id, else ISPConfig's own server config file.
ispconfig_server_id() {
  local file="$root/usr/local/ispconfig/server/lib/config.inc.php"
  if [ -n "$server_id" ]; then echo "$server_id"; return; fi
  [ -f "$file" ] || return 0
  sed -n "s/^[[:space:]]*\\\$conf\['server_id'\][[:space:]]*=[[:space:]]*['\"]\{0,1\}\([0-9][0-9]*\).*/\1/p" "$file" | head -1
}

# The GRANTs of one layout: SELECT on exactly the columns the daemon reads.
db_grants() {
  local to="TO 'email_ratelimit'@'localhost'"
  case "$layout" in
    er-tables)
      cat "$schema"
      echo "GRANT SELECT (server_id, global_limit, default_mailbox_limit) ON \`$database\`.er_global_ratelimit $to;"
      echo "GRANT SELECT (mailuser_id, enabled, daily_limit) ON \`$database\`.er_mail_user_ratelimit $to;"
      echo "GRANT SELECT (mailuser_id, email) ON \`$database\`.mail_user $to;"
      ;;
    erl-columns)
      echo "GRANT SELECT (server_id, erl_enabled, erl_out_limit, erl_out_interval, erl_default_user_out) ON \`$database\`.server $to;"
      echo "GRANT SELECT (server_id, domain, active, erl_limit_mode, erl_out_limit, erl_out_interval) ON \`$database\`.mail_domain $to;"
      echo "GRANT SELECT (server_id, email, erl_limit_mode, erl_out_limit, erl_out_interval) ON \`$database\`.mail_user $to;"
      # Only where the extension's table exists (on a slave it lives in the master database).
      if [ "$($mysql_cmd -N -B -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$database' AND TABLE_NAME = 'email_ratelimit'")" = 1 ]; then
        echo "GRANT SELECT (server_id, source, type, \`interval\`, \`limit\`, active) ON \`$database\`.email_ratelimit $to;"
      fi
      ;;
  esac
  # Website mail: `status local:web12` names the sites of a system user (ISPConfig's table).
  if [ "$($mysql_cmd -N -B -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$database' AND TABLE_NAME = 'web_domain'")" = 1 ]; then
    echo "GRANT SELECT (domain, system_user) ON \`$database\`.web_domain $to;"
  fi
}

cmd_db_user() {
  [ -f "$config" ] || die "$config not found: run install first"
  case "$layout" in er-tables|erl-columns) ;; *) die "--layout must be er-tables or erl-columns" ;; esac
  local password sql tmp sid=""
  if [ "$layout" = erl-columns ]; then
    sid="$(ispconfig_server_id)"
    case "$sid" in ''|0|*[!0-9]*) die "this server's ISPConfig id is unknown: pass --server-id N (System > Server Services)" ;; esac
  fi
  # The password travels only through pipes, the environment and files, never a command line
  # (every local user can read those in ps).
  password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24)"
  # SELECT on exactly the columns the daemon reads: never mail_user.password.
  sql="$(db_grants)"
  sql="CREATE USER IF NOT EXISTS 'email_ratelimit'@'localhost' IDENTIFIED BY '$password';
ALTER USER 'email_ratelimit'@'localhost' IDENTIFIED BY '$password';
$sql"
  # shellcheck disable=SC2086
  printf 'USE `%s`;\n%s\n' "$database" "$sql" | $mysql_cmd
  tmp="$(mktemp "$config_dir/.config.toml.XXXXXX")"
  ERL_URL="mysql://email_ratelimit:$password@localhost/$database?socket=$db_socket" ERL_LAYOUT="$layout" ERL_SID="$sid" awk '
    function settings() {
      print "url = \"" ENVIRON["ERL_URL"] "\""
      if (ENVIRON["ERL_LAYOUT"] == "erl-columns") {
        print "layout = \"erl-columns\""
        print "server_id = " ENVIRON["ERL_SID"]
      }
      done = 1
    }
    /^\[/ {
      if (in_db && !done) settings()
      in_db = ($0 == "[database]")
      print
      next
    }
    in_db && /^(url|layout|server_id) = / { if (!done) settings(); next }
    { print }
    END {
      if (in_db && !done) settings()
      if (!done) { print ""; print "[database]"; settings() }
    }
  ' "$config" > "$tmp"
  "$bin_path" check-config --quiet --config "$tmp" || { rm -f "$tmp"; die "the changed config does not validate; $config left as it was"; }
  cat "$tmp" > "$config"
  rm -f "$tmp"
  case "$layout" in
    er-tables) say "created the MariaDB account email_ratelimit@localhost: SELECT on the columns it reads of $database.er_global_ratelimit, er_mail_user_ratelimit, mail_user (not mail_user.password)" ;;
    erl-columns) say "created the MariaDB account email_ratelimit@localhost: SELECT on the extension's columns of $database.server, mail_domain, mail_user (not mail_user.password) and email_ratelimit; server_id = $sid" ;;
  esac
  say "set [database] in $config (password masked: $("$bin_path" check-config --config "$config" | grep '^url = "mysql' || true))"
  echo "Next: reload the daemon (systemctl reload email-ratelimit) and look for 'limits loaded from database' in"
  echo "      journalctl -u email-ratelimit"
}

case "$command" in
  install) cmd_install ;;
  hook) cmd_hook ;;
  enforce) cmd_enforce ;;
  log-only) echo "Back to log-only"; set_mode log-only; record log-only; echo "Next: journalctl -u email-ratelimit -f | grep erl" ;;
  disable) cmd_disable ;;
  uninstall) cmd_uninstall ;;
  status) cmd_status ;;
  db-user) cmd_db_user ;;
esac
