# The testbed's node: a private containerd (runc, cgroupfs), a CNI bridge, a kubelet and
# kube-scheduler, so the chart's Deployment and StatefulSet run as real pods. Sourced by testbed.sh
# (it uses its PKI, start/alive/wait_for helpers and ports). On unless ROUTINE_LOAD_NODE=0 (or
# not root).
#
# Everything machine-wide it touches is named after this testbed (bridge rl<APISERVER_PORT>, cgroup
# /routine-load-<APISERVER_PORT>, iptables rules with the comment "routine-load <state dir>") and
# recorded in $RL_STATE/node, so node_down removes exactly what node_up added:
#   - mounts under $RL_STATE/node (kubelet volumes, container rootfs, sandbox shm),
#   - the pods' network namespaces, the bridge, the DNAT rules, the cgroups,
#   - the sysctls the kubelet sets (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops),
#     restored to the values recorded before the first testbed node started, once no testbed's
#     kubelet runs any more.
#
# Pods reach the host's loopback-only services through DNAT on the bridge (route_localnet=1 on it):
#   10.96.0.1:443 (the `kubernetes` Service, so in-cluster config works) -> 127.0.0.1:$APISERVER_PORT
#   <bridge>:$KAFKA_POD_PORT (a Kafka listener advertised on the bridge address) -> 127.0.0.1
#   <bridge>:$S3_PORT (MinIO) -> 127.0.0.1:$S3_PORT

NODE_DIR="$RL_STATE/node"
NODE_NAME="${NODE_NAME:-routine-load-node}"
# Defaults derived from the API server port, so testbeds with their own ports get their own node
# ports and pod subnet (a /24; its .1 is the bridge and node address).
NODE_POD_SUBNET="${NODE_POD_SUBNET:-10.244.$((APISERVER_PORT % 256)).0/24}"
NODE_BRIDGE="rl${APISERVER_PORT}"
NODE_BRIDGE_IP="${NODE_POD_SUBNET%.*/*}.1"
NODE_CGROUP="routine-load-${APISERVER_PORT}"
NODE_TAG="routine-load $RL_STATE"
KUBELET_PORT="${KUBELET_PORT:-$((APISERVER_PORT + 5))}"
KUBELET_HEALTHZ_PORT="${KUBELET_HEALTHZ_PORT:-$((APISERVER_PORT + 6))}"
SCHEDULER_PORT="${SCHEDULER_PORT:-$((APISERVER_PORT + 7))}"
KAFKA_POD_PORT="${KAFKA_POD_PORT:-$((KAFKA_PORT + 3))}"
CONTAINERD_SOCK="$NODE_DIR/containerd/containerd.sock"
PAUSE_IMAGE="localhost/routine-load/pause:$K8S_VERSION"
NODE_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)

# On by default; ROUTINE_LOAD_NODE=0 turns it off. It needs root (bridge, iptables, mounts).
node_enabled() { [[ ${ROUTINE_LOAD_NODE:-1} == 1 && $(id -u) -eq 0 ]]; }
# fetch-kafka.sh adds the pod listener when these are set
if node_enabled; then export KAFKA_POD_PORT KAFKA_POD_ADDRESS="$NODE_BRIDGE_IP"; fi

ctr_node() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

node_healthy() {
  case "$1" in
    containerd) ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1 ;;
    kubelet) [[ $(curl -s --max-time 3 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" 2>/dev/null) == ok ]] ;;
    kube-scheduler) [[ $(curl -sk --max-time 3 "https://127.0.0.1:$SCHEDULER_PORT/healthz" 2>/dev/null) == ok ]] ;;
  esac
}

node_build() {
  "$RL_TESTBED_DIR/build-k8s.sh" node
  "$RL_TESTBED_DIR/images.sh" pause
  "$RL_TESTBED_DIR/images.sh" base
}

# The bridge, its address and the DNAT rules; all idempotent.
node_network() {
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
  fi
  ip addr replace "$NODE_BRIDGE_IP/${NODE_POD_SUBNET#*/}" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  sysctl -qw "net.ipv4.conf.$NODE_BRIDGE.route_localnet=1"
  local rule
  while read -r rule; do
    # shellcheck disable=SC2086
    iptables -t nat -C PREROUTING $rule -m comment --comment "$NODE_TAG" 2>/dev/null ||
      iptables -t nat -A PREROUTING $rule -m comment --comment "$NODE_TAG"
  done <<RULES
-i $NODE_BRIDGE -d 10.96.0.1/32 -p tcp --dport 443 -j DNAT --to-destination 127.0.0.1:$APISERVER_PORT
-i $NODE_BRIDGE -d $NODE_BRIDGE_IP/32 -p tcp --dport $KAFKA_POD_PORT -j DNAT --to-destination 127.0.0.1:$KAFKA_POD_PORT
-i $NODE_BRIDGE -d $NODE_BRIDGE_IP/32 -p tcp --dport $S3_PORT -j DNAT --to-destination 127.0.0.1:$S3_PORT
RULES
}

node_pki() {
  [[ -f $PKI/node.crt ]] && return
  (
    cd "$PKI"
    local client="basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
    # cert NAME SUBJECT EXTENSIONS (as in make_pki)
    cert() {
      openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      printf '%b' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    cert node "/O=system:nodes/CN=system:node:$NODE_NAME" "$client"
    cert kube-scheduler "/CN=system:kube-scheduler" "$client"
    # the API server's client certificate towards the kubelet (logs, exec)
    cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
    cert kubelet-serving "/O=system:nodes/CN=system:node:$NODE_NAME" \
      "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:$NODE_BRIDGE_IP,DNS:$NODE_NAME\n"
    chmod 600 ./*.key
  )
}

# Extra API server flags when the node runs: its client certificate towards the kubelet.
node_apiserver_flags() {
  node_enabled || return 0
  echo --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP
}

# The API server certificate's extra SAN when the node runs (pods may dial the bridge address).
node_apiserver_san() {
  node_enabled && echo ",IP:$NODE_BRIDGE_IP" || true
}

# The sysctls are machine-wide and every testbed's kubelet sets the same values: the first node
# records the machine's own values (in /run: a reboot resets both), the last one stopped restores them.
NODE_SYSCTLS_BEFORE=/run/routine-load-node-sysctls.before
node_record_sysctls() {
  [[ -f $NODE_SYSCTLS_BEFORE ]] && return
  local s
  for s in "${NODE_SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$NODE_SYSCTLS_BEFORE.tmp"
  mv "$NODE_SYSCTLS_BEFORE.tmp" "$NODE_SYSCTLS_BEFORE"
}

node_restore_sysctls() {
  [[ -f $NODE_SYSCTLS_BEFORE ]] || return 0
  # another testbed's kubelet still runs: it keeps them
  if pgrep -f -- "kubelet --config .*/node/kubelet.yaml" >/dev/null; then return 0; fi
  local kv
  while read -r kv; do sysctl -qw "$kv" || true; done <"$NODE_SYSCTLS_BEFORE"
  rm -f "$NODE_SYSCTLS_BEFORE"
}

node_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/; do
    [[ -d $d && $(stat -fc %T "$d") == cgroupfs ]] || [[ $d == /sys/fs/cgroup/unified/ ]] || continue
    mkdir -p "$d$NODE_CGROUP"
  done
}

node_up() {
  local start_t; start_t=$(date +%s)
  mkdir -p "$NODE_DIR"/{containerd,cni/net.d,cni/ipam,kubelet,pod-logs}
  node_pki
  node_record_sysctls
  node_network
  node_cgroups

  cat >"$NODE_DIR/containerd/config.toml" <<TOML
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$NODE_DIR/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # No process here may lower oom_score_adj (CAP_SYS_RESOURCE is missing): without this every
  # sandbox fails in runc create.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
TOML
  cat >"$NODE_DIR/cni/net.d/10-routine-load.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "rl-$APISERVER_PORT",
  "plugins": [
    {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$NODE_DIR/cni/ipam",
              "ranges": [[{"subnet": "$NODE_POD_SUBNET", "gateway": "$NODE_BRIDGE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "loopback"}
  ]
}
JSON
  log "node: starting containerd ($CONTAINERD_SOCK)"
  start containerd "containerd --config $NODE_DIR/containerd/config.toml" \
    containerd --config "$NODE_DIR/containerd/config.toml"
  local t; t=$(date +%s)
  until node_healthy containerd; do
    alive containerd || { exited containerd; die "containerd did not start"; }
    (( $(date +%s) - t < 30 )) || die "containerd not ready after 30s (log: $LOGS/containerd.log)"
    sleep 0.2
  done
  "$RL_TESTBED_DIR/images.sh" import-pause "$CONTAINERD_SOCK"

  write_kubeconfig "$NODE_DIR/kubelet.kubeconfig" "system:node:$NODE_NAME" "$PKI/node.crt" "$PKI/node.key"
  write_kubeconfig "$NODE_DIR/kube-scheduler.kubeconfig" system:kube-scheduler \
    "$PKI/kube-scheduler.crt" "$PKI/kube-scheduler.key"
  cat >"$NODE_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine mounts cgroups v1 (hybrid); kubelet 1.35+ refuses v1 unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $NODE_BRIDGE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
podLogsDir: $NODE_DIR/pod-logs
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
failSwapOn: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
serializeImagePulls: false
# Images come only from the local import: never garbage-collect them, and the machine's disk is
# shared (its free percentage says nothing about this node).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 200Mi
  nodefs.available: 1Gi
  imagefs.available: 1Gi
  nodefs.inodesFree: 1%
YAML
  log "node: starting kubelet $K8S_VERSION as $NODE_NAME ($NODE_BRIDGE_IP, pods on $NODE_POD_SUBNET)"
  start kubelet "$K8S_NODE_DIR/bin/kubelet" "$K8S_NODE_DIR/bin/kubelet" \
    --config "$NODE_DIR/kubelet.yaml" --kubeconfig "$NODE_DIR/kubelet.kubeconfig" \
    --root-dir "$NODE_DIR/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_BRIDGE_IP" \
    --v=1
  log "node: starting kube-scheduler on 127.0.0.1:$SCHEDULER_PORT"
  start kube-scheduler "$K8S_NODE_DIR/bin/kube-scheduler" "$K8S_NODE_DIR/bin/kube-scheduler" \
    --kubeconfig "$NODE_DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$NODE_DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$NODE_DIR/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false --v=1
  local c
  for c in kubelet kube-scheduler; do
    t=$(date +%s)
    until node_healthy "$c"; do
      alive "$c" || { exited "$c"; die "$c did not start"; }
      (( $(date +%s) - t < 90 )) || die "$c not ready after 90s (log: $LOGS/$c.log)"
      sleep 0.5
    done
  done
  t=$(date +%s)
  until [[ $("$K8S_DIR/bin/kubectl" --kubeconfig "$KUBECONFIG_FILE" get node "$NODE_NAME" \
             -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; do
    alive kubelet || { exited kubelet; die "kubelet exited"; }
    (( $(date +%s) - t < 90 )) || { tail -n 30 "$LOGS/kubelet.log" >&2; die "node $NODE_NAME not Ready after 90s"; }
    sleep 0.5
  done
  log "node $NODE_NAME Ready ($(since "$start_t"))"
}

# stop_pid NAME: TERM, then KILL after 15 s
stop_component() {
  local pid; pid=$(pid_of "$1")
  [[ -n $pid ]] && alive "$1" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$(( $(date +%s) + 15 ))
  while kill -0 "$pid" 2>/dev/null && (( $(date +%s) < deadline )); do sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

node_down() {
  [[ -d $NODE_DIR ]] || return 0
  stop_component kube-scheduler
  stop_component kubelet
  local netns=() id
  if alive containerd; then
    # every container's task, then the containers; the sandboxes' network namespaces are
    # collected from their specs first
    for id in $(ctr_node containers ls -q 2>/dev/null); do
      local ns
      ns=$(ctr_node containers info "$id" 2>/dev/null |
           sed -n 's#.*"path": "\(/var/run/netns/[^"]*\)".*#\1#p; s#.*"path": "\(/run/netns/[^"]*\)".*#\1#p' | head -n1)
      [[ -n $ns ]] && netns+=("$ns")
      ctr_node tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 0.5
    for id in $(ctr_node containers ls -q 2>/dev/null); do
      ctr_node tasks delete -f "$id" >/dev/null 2>&1 || true
      ctr_node containers delete "$id" >/dev/null 2>&1 || true
    done
  fi
  stop_component containerd
  # shims of this containerd that outlived it
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  # mounts under the node dir, deepest first
  local m
  for m in $(awk -v d="$NODE_DIR" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  for m in "${netns[@]}"; do
    umount "$m" 2>/dev/null || true
    rm -f "$m"
  done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  local rule
  while rule=$(iptables -t nat -S PREROUTING | grep -F -- "--comment \"$NODE_TAG\"" | head -n1) && [[ -n $rule ]]; do
    # shellcheck disable=SC2086
    eval iptables -t nat ${rule/-A /-D }
  done
  node_restore_sysctls
  local d
  for d in /sys/fs/cgroup/*/"$NODE_CGROUP"; do
    [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  log "node: stopped, mounts, network namespaces, bridge $NODE_BRIDGE, DNAT rules, cgroups removed, sysctls restored"
}

node_env() {
  node_enabled || return 0
  cat <<ENV
export ROUTINE_LOAD_NODE=1
export TESTBED_NODE=$NODE_NAME
export NODE_CGROUP=$NODE_CGROUP
export NODE_BRIDGE_IP=$NODE_BRIDGE_IP
export CONTAINERD_ADDRESS=$CONTAINERD_SOCK
export KAFKA_POD_BROKERS=$NODE_BRIDGE_IP:$KAFKA_POD_PORT
export S3_POD_ENDPOINT=http://$NODE_BRIDGE_IP:$S3_PORT
ENV
}

# Loopback ports the node needs free (none when it is off).
node_ports() {
  node_enabled && echo "$KAFKA_POD_PORT $KUBELET_HEALTHZ_PORT $SCHEDULER_PORT" || true
}
