#!/usr/bin/env bash
# A multi-node kubernel lab on one Linux host, built from network namespaces:
# one control plane (apiserver, scheduler, controller-manager with node IPAM)
# and N workers (kubelet with bridge networking, proxy), each its own kubernel
# process in its own namespace with its own address on a lab bridge and its own
# pod CIDR. Needs root, iproute2, util-linux (nsenter, setsid), python3 and the
# CNI plugins (Debian: containernetworking-plugins).
#
#   deploy/lab/lab.sh up [WORKERS]        build it (default 2 workers), wait until Ready
#   deploy/lab/lab.sh status              processes, nodes, pods
#   deploy/lab/lab.sh kubectl ARGS...     kubectl against the lab
#   deploy/lab/lab.sh exec NODE CMD...    run CMD in node NODE's namespace (cp, w1, w2, ...)
#   deploy/lab/lab.sh restart NODE        stop NODE's kubernel (SIGTERM) and start it again
#   deploy/lab/lab.sh stop NODE           stop NODE's kubernel (SIGTERM); `start NODE` again
#   deploy/lab/lab.sh down                stop everything and remove every trace
#
# Nothing touches the network of the namespace the script is called from: the
# lab bridge lives in its own "hub" namespace, and every name starts with the
# lab's name, so a lab can run inside a namespace a test created, beside others.
#
# Settings (environment):
#   LAB_NAME       lab name, prefix of namespaces and node names (default kl; [a-z0-9], <= 8)
#   LAB_DIR        configs, data, logs (default /tmp/kubernel-lab-$LAB_NAME)
#   LAB_NET        first three octets of the lab's /24 (default 10.250.0): hub .1,
#                  control plane .10, worker i .(10+i)
#   CLUSTER_CIDR   pod CIDRs are cut from it, one /24 per node (default 10.244.0.0/16)
#   PROXY_MODE     proxy mode of the workers (default nftables)
#   PROXY_SCHEDULER  rr | sh | lc (default rr)
#   KUBERNEL_BIN   the kubernel binary (default: target/release or target/debug of
#                  this checkout, whichever is newer); plugins are found beside it
#   LAB_TIMEOUT    seconds to wait for the nodes to be Ready (default 60)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

LAB_NAME=${LAB_NAME:-kl}
LAB_DIR=${LAB_DIR:-/tmp/kubernel-lab-$LAB_NAME}
LAB_NET=${LAB_NET:-10.250.0}
CLUSTER_CIDR=${CLUSTER_CIDR:-10.244.0.0/16}
PROXY_MODE=${PROXY_MODE:-nftables}
PROXY_SCHEDULER=${PROXY_SCHEDULER:-rr}
LAB_TIMEOUT=${LAB_TIMEOUT:-60}

die() {
  echo "lab: $*" >&2
  exit 1
}

[[ $LAB_NAME =~ ^[a-z0-9]{1,8}$ ]] ||
  die "LAB_NAME=$LAB_NAME: use 1 to 8 lowercase letters or digits"
[[ $LAB_NET =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] ||
  die "LAB_NET=$LAB_NET: give three octets, e.g. 10.250.0"

hub=$LAB_NAME-hub
cp_ip=$LAB_NET.10

ns_of() { echo "$LAB_NAME-$1"; }
ip_of() {
  case $1 in
    cp) echo "$cp_ip" ;;
    w*) echo "$LAB_NET.$((10 + ${1#w}))" ;;
  esac
}
# Run a command in node $1's network namespace (the caller's mount namespace, so
# the pods' named namespaces under /run/netns are seen by every lab process).
in_ns() {
  local ns
  ns=$(ns_of "$1")
  shift
  nsenter --net="/run/netns/$ns" -- "$@"
}
nodes() { cat "$LAB_DIR/nodes" 2>/dev/null || true; }

kubernel_bin() {
  if [[ -n ${KUBERNEL_BIN:-} ]]; then
    [[ -x $KUBERNEL_BIN ]] || die "KUBERNEL_BIN=$KUBERNEL_BIN is not an executable"
    echo "$KUBERNEL_BIN"
    return
  fi
  local best=""
  for b in "$repo/target/release/kubernel" "$repo/target/debug/kubernel"; do
    if [[ -x $b && (-z $best || $b -nt $best) ]]; then best=$b; fi
  done
  [[ -n $best ]] || die "no kubernel binary: run 'cargo build --workspace' or set KUBERNEL_BIN"
  echo "$best"
}

lab_kubectl() {
  in_ns cp kubectl --kubeconfig "$LAB_DIR/kubeconfig" "$@"
}

control_plane_config() {
  cat <<EOF
# kubernel lab $LAB_NAME: control plane (namespace $(ns_of cp), $cp_ip)
[kernel]
admin_addr = "127.0.0.1:10260"

[[plugin]]
name = "apiserver"
path = "libkubernel_apiserver.so"
grace_period = "10s"
[plugin.config]
# HTTPS on loopback; forward.py relays $cp_ip:6443 to it, so the serving
# certificate names $cp_ip too. Workers use a kubeconfig issued by the cluster CA.
bind_address = "127.0.0.1"
secure_port = 6443
cert_sans = ["$cp_ip"]

[[plugin]]
name = "scheduler"
path = "libkubernel_scheduler.so"
grace_period = "10s"

[[plugin]]
name = "controller-manager"
path = "libkubernel_controller_manager.so"
grace_period = "10s"
[plugin.config]
controllers = ["*"]
# Node IPAM: every node gets a /24 pod CIDR from the cluster CIDR.
allocate_node_cidrs = true
cluster_cidr = "$CLUSTER_CIDR"
node_cidr_mask_size = 24
EOF
}

worker_config() {
  local node=$1 ip
  ip=$(ip_of "$node")
  cat <<EOF
# kubernel lab $LAB_NAME: worker $node (namespace $(ns_of "$node"), $ip)
[kernel]
admin_addr = "127.0.0.1:10260"

[[plugin]]
name = "kubelet"
path = "libkubernel_kubelet.so"
grace_period = "10s"
[plugin.config]
runtime = "process"
node_name = "$(ns_of "$node")"
node_ip = "$ip"
address = "$ip"
port = 10250
network = "bridge"
lease_renew_interval = "2s"
[plugin.config.client]
kubeconfig = "$LAB_DIR/$node/kubelet.kubeconfig"

[[plugin]]
name = "proxy"
path = "libkubernel_proxy.so"
grace_period = "10s"
[plugin.config]
mode = "$PROXY_MODE"
scheduler = "$PROXY_SCHEDULER"
node_port_addresses = ["$ip"]
[plugin.config.client]
kubeconfig = "$LAB_DIR/proxy.kubeconfig"
EOF
}

# Starts node $1's kubernel in its namespace, detached from this shell.
start_node() {
  local node=$1 bin dir
  bin=$(kubernel_bin)
  dir=$LAB_DIR/$node
  local ns
  ns=$(ns_of "$node")
  setsid nsenter --net="/run/netns/$ns" -- "$bin" --data-dir "$dir/data" run \
    --config "$dir/kubernel.toml" </dev/null >>"$dir/kubernel.log" 2>&1 &
  echo $! >"$dir/pid"
}

# Stops process $1 (a pid file): SIGTERM, then SIGKILL after 20 s.
stop_pid() {
  local file=$1 pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 200); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

wait_for() {
  local what=$1 deadline=$((SECONDS + LAB_TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${LAB_TIMEOUT}s waiting for $what (logs in $LAB_DIR/*/kubernel.log)"
    sleep 0.5
  done
}

node_ready() {
  local ready
  ready=$(lab_kubectl get node "$(ns_of "$1")" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.spec.podCIDR}')
  [[ $ready == True\ * && ${ready#True } != "" ]]
}

cmd_up() {
  local workers=${1:-2}
  [[ $workers =~ ^[0-9]+$ && $workers -ge 1 && $workers -le 50 ]] ||
    die "up: WORKERS=$workers: give a number from 1 to 50"
  [[ $(id -u) == 0 ]] || die "up: needs root (network namespaces, bridges)"
  for tool in ip nsenter setsid python3 kubectl; do
    command -v "$tool" >/dev/null || die "up: $tool is not installed"
  done
  [[ ! -e /run/netns/$hub ]] || die "up: lab $LAB_NAME is already up ('$0 down' first)"
  local bin
  bin=$(kubernel_bin)
  mkdir -p "$LAB_DIR"
  local list="cp"
  for i in $(seq "$workers"); do list+=" w$i"; done
  echo "$list" | tr ' ' '\n' >"$LAB_DIR/nodes"

  ip netns add "$hub"
  ip -n "$hub" link set lo up
  ip -n "$hub" link add br0 type bridge
  ip -n "$hub" addr add "$LAB_NET.1/24" dev br0
  ip -n "$hub" link set br0 up
  for node in $list; do
    local ns nip
    ns=$(ns_of "$node")
    nip=$(ip_of "$node")
    ip netns add "$ns"
    ip -n "$hub" link add "$node" type veth peer name eth0 netns "$ns"
    ip -n "$hub" link set "$node" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$nip/24" dev eth0
    ip -n "$ns" link set eth0 up
    # Service addresses (and anything else) leave through the lab bridge.
    ip -n "$ns" route add default via "$LAB_NET.1"
    mkdir -p "$LAB_DIR/$node"
  done

  control_plane_config >"$LAB_DIR/cp/kubernel.toml"
  start_node cp
  wait_for "the control plane's kubeconfig" test -s "$LAB_DIR/cp/data/admin.kubeconfig"
  cp "$LAB_DIR/cp/data/admin.kubeconfig" "$LAB_DIR/kubeconfig"
  wait_for "the apiserver" lab_kubectl get --raw /readyz
  setsid nsenter --net="/run/netns/$(ns_of cp)" -- python3 "$here/forward.py" \
    "$cp_ip" 6443 127.0.0.1 6443 </dev/null >>"$LAB_DIR/cp/forward.log" 2>&1 &
  echo $! >"$LAB_DIR/cp/forward.pid"
  # The workers' proxies share system:kube-proxy (the system:node-proxier role); each
  # kubelet is system:node:<its node name> in system:nodes, for the Node authorizer.
  "$bin" --data-dir "$LAB_DIR/cp/data" kubeconfig --user system:kube-proxy \
    --server "https://$cp_ip:6443" -o "$LAB_DIR/proxy.kubeconfig" ||
    die "up: could not issue the proxies' kubeconfig"

  for node in $list; do
    [[ $node == cp ]] && continue
    "$bin" --data-dir "$LAB_DIR/cp/data" kubeconfig --user "system:node:$(ns_of "$node")" \
      --group system:nodes --server "https://$cp_ip:6443" -o "$LAB_DIR/$node/kubelet.kubeconfig" ||
      die "up: could not issue the kubeconfig of $node's kubelet"
    worker_config "$node" >"$LAB_DIR/$node/kubernel.toml"
    start_node "$node"
  done
  for node in $list; do
    [[ $node == cp ]] && continue
    wait_for "node $(ns_of "$node") Ready with a pod CIDR" node_ready "$node"
  done
  cat <<EOF
lab $LAB_NAME is up: control plane $cp_ip, $workers worker(s), kubernel $bin
kubeconfig: $LAB_DIR/kubeconfig (server 127.0.0.1:6443 inside namespace $(ns_of cp))
  $0 kubectl get nodes -o wide
  nsenter --net=/run/netns/$(ns_of cp) kubectl --kubeconfig $LAB_DIR/kubeconfig get pods -A -o wide
EOF
}

cmd_status() {
  [[ -e /run/netns/$hub ]] || {
    echo "lab $LAB_NAME is down"
    return 1
  }
  echo "lab $LAB_NAME: $LAB_DIR"
  for node in $(nodes); do
    local pid state=stopped
    pid=$(cat "$LAB_DIR/$node/pid" 2>/dev/null || true)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then state="running (pid $pid)"; fi
    printf '  %-4s %-14s %-15s %s\n' "$node" "$(ns_of "$node")" "$(ip_of "$node")" "$state"
  done
  lab_kubectl get nodes -o wide || true
  lab_kubectl get pods -A -o wide || true
}

cmd_restart() {
  local node=${1:-}
  [[ -n $node && -f $LAB_DIR/$node/kubernel.toml ]] || die "restart: no node ${node:-(none given)} in lab $LAB_NAME"
  stop_pid "$LAB_DIR/$node/pid"
  start_node "$node"
  if [[ $node == cp ]]; then
    wait_for "the apiserver" lab_kubectl get --raw /readyz
  fi
}

cmd_stop() {
  local node=${1:-}
  [[ -n $node && -f $LAB_DIR/$node/kubernel.toml ]] || die "stop: no node ${node:-(none given)} in lab $LAB_NAME"
  stop_pid "$LAB_DIR/$node/pid"
}

cmd_start() {
  local node=${1:-}
  [[ -n $node && -f $LAB_DIR/$node/kubernel.toml ]] || die "start: no node ${node:-(none given)} in lab $LAB_NAME"
  local pid
  pid=$(cat "$LAB_DIR/$node/pid" 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then die "start: $node runs already (pid $pid)"; fi
  start_node "$node"
}

cmd_down() {
  local list
  list=$(nodes)
  # Workers first (their pods stop), the control plane last.
  for node in $(echo "$list" | tac); do
    stop_pid "$LAB_DIR/$node/pid"
  done
  stop_pid "$LAB_DIR/cp/forward.pid"
  # Pod namespaces of this lab's nodes (kn_<node>_...), then the nodes' and the hub's.
  for f in /run/netns/kn_"$LAB_NAME"-*; do
    [[ -e $f ]] && ip netns del "$(basename "$f")" 2>/dev/null || rm -f "$f"
  done
  for node in $list; do
    ip netns del "$(ns_of "$node")" 2>/dev/null || true
  done
  ip netns del "$hub" 2>/dev/null || true
  rm -rf "$LAB_DIR"
  echo "lab $LAB_NAME is down"
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  restart) shift; cmd_restart "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  start) shift; cmd_start "$@" ;;
  kubectl) shift; lab_kubectl "$@" ;;
  exec)
    shift
    node=${1:-}
    [[ -n $node ]] && grep -qx "$node" "$LAB_DIR/nodes" 2>/dev/null || die "exec: no node ${node:-(none given)} in lab $LAB_NAME"
    shift
    in_ns "$node" "$@"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
