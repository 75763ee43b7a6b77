#!/usr/bin/env bash
# Runs a command (the test suite) where it cannot touch the host, and fails when it tried.
#
#     scripts/tripwired.sh COMMAND [ARG...]      (as root; scripts/test.sh calls it)
#
# It re-executes itself in private mount and network namespaces (`unshare -mn`, loopback up),
# then arms tripwires on what a test must never use, the host's own services:
#   - 127.0.0.1:6379 and [::1]:6379, where a host's Redis listens;
#   - /dev/log, the host's syslog (a /dev of this namespace's own, with our socket there);
#   - /usr/sbin/sendmail, and postqueue, postsuper and postcat of Postfix's default instance
#     (/etc/postfix): each is covered by a stand-in that records the call and fails it. A call
#     for a private instance (`-c DIR`/`-C DIR`, or MAIL_CONFIG naming another directory) runs
#     the real program.
# The namespace also has the accounts an ISPConfig server has and the suite needs (vmail,
# email-ratelimit), in its own copies of /etc/passwd and /etc/group when the host lacks them.
# The tripwires are tested before the command runs (each must record one probe). After it, the
# run fails if anything was recorded, listing what, even when the command itself passed.
set -euo pipefail

if [ -z "${ERL_TRIPWIRES:-}" ]; then
  # The namespaces' scratch directory (a tmpfs inside them), removed afterwards.
  tw="$(mktemp -d /tmp/erl-tripwires.XXXXXX)"
  set +e
  env ERL_TRIPWIRES="$tw" unshare --mount --net --propagation private -- "$0" "$@"
  rc=$?
  rmdir "$tw"
  exit "$rc"
fi

here="$(cd "$(dirname "$0")" && pwd)"
tw="$ERL_TRIPWIRES"
mount -t tmpfs -o mode=755 erl-tripwires "$tw"
mkdir -p "$tw/real" "$tw/records" "$tw/olddev"
chmod 1777 "$tw/records"
trips="$tw/records/trips"
: > "$trips"
chmod 666 "$trips"

ip link set lo up

# A /dev of our own: everything the host's has (bound in), and /dev/log is ours.
mount --rbind /dev "$tw/olddev"
mount -t tmpfs -o mode=755 erl-dev /dev
for entry in "$tw"/olddev/* "$tw"/olddev/.[!.]*; do
  [ -e "$entry" ] || [ -L "$entry" ] || continue
  name="$(basename "$entry")"
  [ "$name" = log ] && continue
  if [ -L "$entry" ]; then
    cp -P "$entry" "/dev/$name"
  elif [ -d "$entry" ]; then
    mkdir "/dev/$name"
    mount --rbind "$entry" "/dev/$name"
  else
    touch "/dev/$name"
    mount --bind "$entry" "/dev/$name"
  fi
done

# The accounts of an ISPConfig mail server that the suite needs and the host may lack (vmail,
# Dovecot's mail user; email-ratelimit, the daemon's own, which it drops to without systemd):
# added to this namespace's own copies of /etc/passwd and /etc/group.
cp /etc/passwd /etc/group "$tw/"
added=
for account in vmail:/var/vmail email-ratelimit:/nonexistent; do
  name="${account%%:*}"
  home="${account#*:}"
  getent passwd "$name" >/dev/null && continue
  gid="$(getent group "$name" | cut -d: -f3 || true)"
  if [ -z "$gid" ]; then
    gid=5000
    while cut -d: -f3 "$tw/group" | grep -qx "$gid"; do gid=$((gid + 1)); done
    echo "$name:x:$gid:" >> "$tw/group"
  fi
  uid=5000
  while cut -d: -f3 "$tw/passwd" | grep -qx "$uid"; do uid=$((uid + 1)); done
  echo "$name:x:$uid:$gid::$home:/usr/sbin/nologin" >> "$tw/passwd"
  added=1
done
if [ -n "$added" ]; then
  mount --bind "$tw/passwd" /etc/passwd
  mount --bind "$tw/group" /etc/group
fi

# The stand-ins for the host's mail commands.
cat > "$tw/stand-in" <<EOF
#!/bin/bash
# A tripwire of scripts/tripwired.sh: the host's Postfix is not for tests.
name="\$(basename "\$0")"
private=
[ -n "\${MAIL_CONFIG:-}" ] && [ "\${MAIL_CONFIG%/}" != /etc/postfix ] && private=1
prev=
for a in "\$@"; do
  case "\$prev" in -c|-C) [ "\${a%/}" != /etc/postfix ] && [ "\${a%/main.cf}" != /etc/postfix ] && private=1 ;; esac
  case "\$a" in -c?*|-C?*) d="\${a:2}"; [ "\${d%/}" != /etc/postfix ] && private=1 ;; esac
  prev="\$a"
done
if [ -n "\$private" ]; then
  exec -a "\$0" "$tw/real/\$name" "\$@"
fi
echo "\$(date +%H:%M:%S) \$name (uid \$(id -u), in \$PWD): \$*" >> "$trips"
echo "\$name: tripwire: the host's Postfix is not for tests (use a private instance or a stand-in)" >&2
exit 75
EOF
chmod 755 "$tw/stand-in"
for cmd in sendmail postqueue postsuper postcat; do
  if [ -e "/usr/sbin/$cmd" ]; then
    touch "$tw/real/$cmd"
    mount --bind "/usr/sbin/$cmd" "$tw/real/$cmd"
    # Each stand-in has its program's owner and mode (postfix check looks at postqueue's).
    cp "$tw/stand-in" "$tw/stand-in.$cmd"
    chown --reference="/usr/sbin/$cmd" "$tw/stand-in.$cmd"
    chmod --reference="/usr/sbin/$cmd" "$tw/stand-in.$cmd"
    mount --bind "$tw/stand-in.$cmd" "/usr/sbin/$cmd"
  else
    echo "tripwired: /usr/sbin/$cmd is missing: install postfix" >&2
    exit 1
  fi
done

python3 "$here/tripwires.py" "$trips" "$tw/ready" </dev/null >"$tw/listener.log" 2>&1 &
listener=$!
cleanup() {
  kill "$listener" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
  [ -s "$tw/ready" ] && break
  kill -0 "$listener" 2>/dev/null || { cat "$tw/listener.log" >&2; exit 1; }
  sleep 0.05
done
[ -s "$tw/ready" ] || { echo "tripwired: the listener did not start" >&2; exit 1; }

# Each tripwire must catch its probe, or this run proves nothing.
python3 - <<'EOF'
import socket
s = socket.create_connection(("127.0.0.1", 6379), timeout=2)
s.sendall(b"*1\r\n$4\r\nPING\r\n")
s.recv(100)
s.close()
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
d.sendto(b"<22>tripwired: probe", "/dev/log")
EOF
for cmd in sendmail postqueue postsuper postcat; do
  env -u MAIL_CONFIG "/usr/sbin/$cmd" -p </dev/null >/dev/null 2>&1 && { echo "tripwired: $cmd ran" >&2; exit 1; }
done
for _ in $(seq 100); do
  [ "$(wc -l < "$trips")" -ge 6 ] && break
  sleep 0.05
done
if [ "$(wc -l < "$trips")" -ne 6 ]; then
  echo "tripwired: the tripwires did not catch their probes:" >&2
  cat "$trips" >&2
  exit 1
fi
: > "$trips"
echo "tripwired: armed (127.0.0.1:6379, /dev/log, sendmail, postqueue, postsuper, postcat of /etc/postfix)" >&2

set +e
"$@"
rc=$?
set -e

if [ -s "$trips" ]; then
  echo >&2
  echo "tripwired: the run touched the host ($(wc -l < "$trips") time(s)):" >&2
  cat "$trips" >&2
  [ "$rc" -eq 0 ] && rc=1
fi
exit "$rc"
