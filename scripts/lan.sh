#!/usr/bin/env bash
# LAN emulation: the three parties in separate network namespaces, joined
# by veth pairs to a bridge, each party's egress shaped to the paper's LAN
# (netem: 50 µs one-way delay, i.e. 0.1 ms RTT between parties, 1 Gbit/s).
# Needs root.  Where the kernel has no netem (some VMs), only the rate is
# emulated (tbf) and the script says so.
#
#   scripts/lan.sh up          namespaces cdm-p0..2 (10.77.0.10-12), bridge cdm-br (10.77.0.1)
#   scripts/lan.sh start       fresh credentials + config + dealt model in $LAN_DIR, servers started
#   scripts/lan.sh bench [N]   DDIM-N generation from the root namespace (default 50), JSON
#   scripts/lan.sh stop        stop the servers
#   scripts/lan.sh down        remove namespaces and bridge
#   scripts/lan.sh all [N]     up, start, bench, stop, down
#
# Environment: LAN_DIR (runs/lan), MODEL (cipherdm-tiny-silu), DELAY (50us),
# RATE (1gbit).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${LAN_DIR:-$ROOT/runs/lan}"
MODEL="${MODEL:-cipherdm-tiny-silu}"
DELAY="${DELAY:-50us}"
RATE="${RATE:-1gbit}"
BIN="$ROOT/target/release"
NS=(cdm-p0 cdm-p1 cdm-p2)
IPS=(10.77.0.10 10.77.0.11 10.77.0.12)

shape() { # namespace device
  if ip netns exec "$1" tc qdisc replace dev "$2" root netem delay "$DELAY" rate "$RATE" 2>/dev/null; then
    echo "$1: netem delay $DELAY rate $RATE"
  else
    ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$RATE" burst 256kb latency 10ms
    echo "$1: WARNING: no netem in this kernel; rate $RATE only (tbf), no added delay" >&2
  fi
}

up() {
  ip link add cdm-br type bridge
  ip addr add 10.77.0.1/24 dev cdm-br
  ip link set cdm-br up
  for i in 0 1 2; do
    ip netns add "${NS[$i]}"
    ip link add "cdm-v$i" type veth peer name eth0 netns "${NS[$i]}"
    ip link set "cdm-v$i" master cdm-br up
    ip netns exec "${NS[$i]}" ip addr add "${IPS[$i]}/24" dev eth0
    ip netns exec "${NS[$i]}" ip link set eth0 up
    ip netns exec "${NS[$i]}" ip link set lo up
    shape "${NS[$i]}" eth0
  done
}

down() {
  for i in 0 1 2; do ip netns del "${NS[$i]}" 2>/dev/null || true; done
  ip link del cdm-br 2>/dev/null || true
}

start() {
  (cd "$ROOT" && cargo build -q --release -p party-server --bin party-server --bin cipherdm)
  rm -rf "$DIR"
  mkdir -p "$DIR"
  "$BIN/party-server" init-local --dir "$DIR" --hosts "$(IFS=,; echo "${IPS[*]}")" \
    --ports 7100,7100,7100,7110,7110,7110
  "$BIN/party-server" deal-model --model-dir "$ROOT/party-server/models/$MODEL" --name "$MODEL" \
    --config "$DIR/cluster.toml"
  for i in 0 1 2; do
    ip netns exec "${NS[$i]}" "$BIN/party-server" serve --party "$i" --config "$DIR/cluster.toml" \
      >"$DIR/party$i.log" 2>&1 &
    echo $! >"$DIR/party$i.pid"
  done
  for _ in $(seq 1 100); do
    ok=1
    for i in 0 1 2; do
      curl -fsS "http://${IPS[$i]}:7100/health" 2>/dev/null | grep -q '"next":true,"prev":true' || ok=0
    done
    [ $ok = 1 ] && { echo "LAN cluster up"; return 0; }
    sleep 0.1
  done
  echo "LAN cluster did not come up; logs in $DIR" >&2
  return 1
}

stop() {
  for i in 0 1 2; do
    [ -f "$DIR/party$i.pid" ] && kill "$(cat "$DIR/party$i.pid")" 2>/dev/null || true
    rm -f "$DIR/party$i.pid"
  done
}

bench() {
  local steps="${1:-50}"
  if command -v ping >/dev/null; then
    ip netns exec "${NS[0]}" ping -c 5 -q "${IPS[1]}" >&2 || true
  fi
  "$BIN/cipherdm" generate --cluster "$DIR/cluster.toml" --model "$MODEL" --class 1 \
    --sampler ddim --steps "$steps" --seed 1 --out "$DIR/lan.png" --json
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  start) start ;;
  stop) stop ;;
  bench) bench "${2:-50}" ;;
  all)
    trap 'stop; down' EXIT
    down
    up
    start
    bench "${2:-50}"
    ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
