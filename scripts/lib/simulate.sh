# Starts `callhook --simulate` on a throwaway SQLite database and waits until it listens.
# Source it, then call `start_simulated [cargo args…]`; it sets `base` (the service's URL),
# `dir` (the throwaway directory), `pid`, and `fail` (reports, shows the log, exits), and
# stops the service on exit. CALLHOOK_BIND picks the address (default 127.0.0.1:8080).

start_simulated() {
  bind="${CALLHOOK_BIND:-127.0.0.1:8080}"
  base="http://$bind"
  dir="$(mktemp -d)"
  cargo build --quiet "$@"
  local bin="${CARGO_TARGET_DIR:-target}" profile=debug
  [[ " $* " == *" --release "* ]] && profile=release
  # The demos' webhook receiver listens on loopback.
  CALLHOOK_ANSWER_GRACE_SECS="${CALLHOOK_ANSWER_GRACE_SECS:-10}" CALLHOOK_BIND="$bind" \
    CALLHOOK_WEBHOOK_ALLOW_PRIVATE=true \
    DATABASE_URL="sqlite://$dir/callhook.db" CALLHOOK_SPOOL_DIR="$dir/spool" CALLHOOK_LOG_FORMAT=pretty \
    "$bin/$profile/callhook" --simulate 2>"$dir/callhook.log" &
  pid=$!
  trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
  # Ready means: our process is alive and has logged that it listens. Another service that
  # already answers on $bind must not be mistaken for it.
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || fail "callhook exited before it was ready (is $bind already in use? set CALLHOOK_BIND)"
    grep -q 'callhook listening' "$dir/callhook.log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q 'callhook listening' "$dir/callhook.log" || fail "callhook did not start listening within 30 s"
  curl -fs "$base/readyz" >/dev/null || fail "callhook is running but $base/readyz does not answer"
}

fail() {
  printf '%s: %s\n' "$(basename "$0")" "$*" >&2
  [ -s "$dir/callhook.log" ] && { echo "--- callhook's log:" >&2; cat "$dir/callhook.log" >&2; }
  exit 1
}

say() { printf '\n$ %s\n' "$*"; }
