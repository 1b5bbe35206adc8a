#!/usr/bin/env bash
# A local three-party cluster on loopback, for development and benchmarks.
#
#   scripts/cluster.sh init [MODEL...]   fresh credentials + cluster.toml + dealt models
#   scripts/cluster.sh start             start the three servers in the background
#   scripts/cluster.sh status            health of each party
#   scripts/cluster.sh stop              stop them
#
# Everything lives in $CLUSTER_DIR (default: runs/cluster, gitignored): the
# config, each party's key and model shares, logs (partyN.log) and pids.
# Environment: BASE_PORT (7100: clients 7100-7102, peers 7110-7112),
# PROFILE (release), CLUSTER_EXTRA (TOML appended to the config).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${CLUSTER_DIR:-$ROOT/runs/cluster}"
PROFILE="${PROFILE:-release}"
BASE_PORT="${BASE_PORT:-7100}"
BIN="$ROOT/target/$PROFILE/party-server"

build() {
  local flag=()
  [ "$PROFILE" = release ] && flag=(--release)
  (cd "$ROOT" && cargo build -q "${flag[@]}" -p party-server --bin party-server --bin cipherdm)
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

case "${1:-}" in
  init)
    shift
    build
    if [ -e "$DIR/cluster.toml" ]; then
      echo "$DIR/cluster.toml exists; 'stop' and remove $DIR first" >&2
      exit 1
    fi
    mkdir -p "$DIR"
    "$BIN" init-local --dir "$DIR" --base-port "$BASE_PORT" --extra "${CLUSTER_EXTRA:-}"
    models=("$@")
    [ ${#models[@]} -eq 0 ] && models=(cipherdm-tiny-silu)
    for m in "${models[@]}"; do
      "$BIN" deal-model --model-dir "$ROOT/party-server/models/$m" --name "$m" --config "$DIR/cluster.toml"
    done
    ;;
  start)
    build
    [ -e "$DIR/cluster.toml" ] || { echo "run '$0 init' first" >&2; exit 1; }
    for i in 0 1 2; do
      if pid_alive "$DIR/party$i.pid"; then
        echo "party $i already running (pid $(cat "$DIR/party$i.pid"))"
        continue
      fi
      nohup "$BIN" serve --party "$i" --config "$DIR/cluster.toml" ${SERVE_FLAGS:-} \
        >"$DIR/party$i.log" 2>&1 &
      echo $! >"$DIR/party$i.pid"
      echo "party $i started (pid $!, log $DIR/party$i.log)"
    done
    # Wait until every party reports both links up.
    for _ in $(seq 1 100); do
      if "$0" status >/dev/null 2>&1; then "$0" status; exit 0; fi
      sleep 0.1
    done
    echo "the cluster did not come up; see the logs in $DIR" >&2
    exit 1
    ;;
  status)
    ok=0
    for i in 0 1 2; do
      port=$(grep -m1 -A0 "client_listen" <(awk -v n=$((i + 1)) '/^\[\[party\]\]/{c++} c==n' "$DIR/cluster.toml") | sed 's/.*:\([0-9]*\)".*/\1/')
      if h=$(curl -fsS "http://127.0.0.1:$port/health" 2>/dev/null); then
        echo "party $i: $h"
        echo "$h" | grep -q '"next":true,"prev":true' || ok=1
      else
        echo "party $i: not answering on port $port"
        ok=1
      fi
    done
    exit $ok
    ;;
  stop)
    for i in 0 1 2; do
      if pid_alive "$DIR/party$i.pid"; then
        kill "$(cat "$DIR/party$i.pid")" && echo "party $i stopped"
      fi
      rm -f "$DIR/party$i.pid"
    done
    ;;
  *)
    sed -n '2,12p' "$0"
    exit 2
    ;;
esac
