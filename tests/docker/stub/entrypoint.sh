#!/bin/sh
# Stub gateway: what the host CLI may rely on, nothing more.
#  - the account file must be readable (by this user only); its URI (never the password) goes to the logs
#  - state.json says "ready" once "registered"; platform "stubfail" makes it report error and exit 3, platform
#    "stubslow" keeps it "starting" for ever
#  - SIGTERM: state "exited", exit 0
set -u
dir=${SIPMEDIAGW_LOG_DIR:-/var/log/sipmediagw}
account=${SIPMEDIAGW_ACCOUNT_FILE:-/run/secrets/sipmediagw-account}
gateway=${SIPMEDIAGW_GATEWAY:-$(hostname)}
uri=""

log() {
  line="[$(date -u +%Y-%m-%dT%H:%M:%S.000Z)] stub: $*"
  echo "$line"
  echo "$line" >> "$dir/app.log"
}
error() {
  log "$*"
  echo "[$(date -u +%Y-%m-%dT%H:%M:%S.000Z)] stub: $*" >> "$dir/err.log"
}
state() {  # $1 = state, $2 = last_error as JSON (null or "text")
  printf '{"gateway": "%s", "state": "%s", "room": "%s", "platform": "%s", "media": "%s", "sip_uri": "%s", "last_error": %s, "components": {"stub": {"state": "%s", "reason": null}}}\n' \
    "$gateway" "$1" "${SIPMEDIAGW_ROOM:-}" "${SIPMEDIAGW_PLATFORM:-}" "${SIPMEDIAGW_MEDIA:-}" "$uri" "$2" \
    "$([ "$1" = ready ] && echo running || echo finished)" > "$dir/.state.tmp.$$"
  mv "$dir/.state.tmp.$$" "$dir/state.json"
}

trap 'log "SIGTERM: hanging up and leaving"; state exited null; exit 0' TERM INT

log "starting gateway $gateway for room ${SIPMEDIAGW_ROOM:-?} on ${SIPMEDIAGW_PLATFORM:-?} (${SIPMEDIAGW_MEDIA:-?})"
if [ ! -r "$account" ]; then
  error "account file $account is not readable"
  state error '"account file not readable"'
  exit 1
fi
uri=$(sed -n 's/^[^<]*<\([^;>]*\).*$/\1/p' "$account" | head -n 1)
if [ "${SIPMEDIAGW_PLATFORM:-}" = "stubfail" ]; then
  error "driver stubfail: cannot join room ${SIPMEDIAGW_ROOM:-}"
  state error '"driver stubfail failed"'
  exit 3
fi
if [ "${SIPMEDIAGW_PLATFORM:-}" = "stubslow" ]; then
  state starting null
else
  log "REGISTER_OK $uri"
  state ready null
fi
while :; do
  sleep 1 &
  wait $!
done
