#!/usr/bin/env bash
# Builds the Debian package: release binary, man pages and completions generated from the
# command-line definitions, the packaged config (log-only), then cargo deb.
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
cargo build --release --locked
bin=target/release/email-ratelimit
assets=target/assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$bin" generate man --dir "$assets/man"
"$bin" generate bash > "$assets/completions/email-ratelimit.bash"
"$bin" generate zsh > "$assets/completions/_email-ratelimit"
"$bin" generate fish > "$assets/completions/email-ratelimit.fish"
# The packaged config: the documented defaults, in log-only mode (a staged rollout).
sed 's/^mode = .*/mode = "log-only"          # switch to "enforce" after watching the erl DEFER (log-only) lines/' \
  config/example.toml > "$assets/config.toml"
"$bin" check-config --quiet --config "$assets/config.toml"
# Started as root by the init script (no systemd), the daemon drops to its own user, which
# postinst creates (under systemd, the unit's User= is that user from the start).
sed -i '/^\[daemon\]/,/^\[/ s/^user = ""/user = "email-ratelimit"/' "$assets/config.toml"
grep -q '^user = "email-ratelimit"' "$assets/config.toml"
cargo deb --no-build --strip 2>&1 | tail -1
