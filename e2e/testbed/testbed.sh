#!/usr/bin/env bash
# The local testbed: etcd + kube-apiserver + kube-controller-manager, Apache Kafka (KRaft) with
# PLAINTEXT and SSL listeners, and MinIO (S3), all on loopback, all from package registries.
#
#   testbed.sh up       build/fetch what is missing (cached), start everything, wait until ready,
#                       write $STATE/kubeconfig and $STATE/testbed.env; a no-op when already up
#   testbed.sh down     stop exactly the recorded PIDs and remove the state dir
#   testbed.sh env      print the path of the env file (fails when the testbed is not up)
#   testbed.sh status   say which components are healthy (exit 1 if any is not)
#   testbed.sh build    only build/fetch the components
#
# State dir: ${ROUTINE_LOAD_TESTBED:-$HOME/.cache/routine-load/testbed}; logs are in it.
# ROUTINE_LOAD_SCHEMA_REGISTRY=1: `up` also starts a Confluent-compatible schema registry
# (schema-registry.sh) and adds SCHEMA_REGISTRY_URL to the env file; off by default.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Fixed loopback ports (override with the environment if they clash).
ETCD_PORT="${ETCD_PORT:-12379}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-12380}"
APISERVER_PORT="${APISERVER_PORT:-16443}"
KCM_PORT="${KCM_PORT:-16257}"
export KAFKA_PORT="${KAFKA_PORT:-19092}"
export KAFKA_SSL_PORT="${KAFKA_SSL_PORT:-19093}"
export KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19094}"
S3_PORT="${S3_PORT:-19000}"
S3_ACCESS_KEY="${S3_ACCESS_KEY:-routineload}"
S3_SECRET_KEY="${S3_SECRET_KEY:-routineload-secret}"
S3_BUCKET="${S3_BUCKET:-routine-load}"
S3_REGION="${S3_REGION:-us-east-1}"
SERVICE_CIDR="10.96.0.0/16"

PKI="$RL_STATE/pki"
PIDS="$RL_STATE/pids"
LOGS="$RL_STATE/logs"
ENV_FILE="$RL_STATE/testbed.env"
KUBECONFIG_FILE="$RL_STATE/kubeconfig"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kafka minio)
source "$RL_TESTBED_DIR/node.sh"
# The node's settings are those it was started with (down and status may run without them); a
# fresh `up` after stopping an unhealthy testbed uses the environment's again.
NODE_VARS=(ROUTINE_LOAD_NODE APISERVER_PORT KAFKA_PORT S3_PORT NODE_NAME NODE_POD_SUBNET KUBELET_PORT
           KUBELET_HEALTHZ_PORT SCHEDULER_PORT KAFKA_POD_PORT)
node_settings_from_env=$(for v in "${NODE_VARS[@]}"; do
  if [[ -v $v ]]; then printf '%s=%q\n' "$v" "${!v}"; else printf 'unset %s\n' "$v"; fi; done)
if [[ -f $NODE_DIR/node.env ]]; then
  source "$NODE_DIR/node.env"
  source "$RL_TESTBED_DIR/node.sh"
  COMPONENTS+=(containerd kubelet kube-scheduler)
fi

# ---------------------------------------------------------------------------------------------
# health

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

# alive NAME: the recorded PID runs and is still the program we started (not a recycled PID)
alive() {
  local pid; pid=$(pid_of "$1")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  local expect; expect=$(cat "$PIDS/$1.cmd" 2>/dev/null || true)
  [[ -z $expect ]] || still_runs "$pid" "$expect"
}

admin_curl() {
  curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT$1"
}

healthy() {
  case "$1" in
    etcd) curl -sf --max-time 3 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"' ;;
    kube-apiserver) [[ $(admin_curl /readyz 2>/dev/null) == ok ]] ;;
    kube-controller-manager)
      [[ $(curl -sk --max-time 3 "https://127.0.0.1:$KCM_PORT/healthz" 2>/dev/null) == ok ]] ;;
    kafka)
      grep -q 'Kafka Server started' "$RL_STATE/kafka/logs/server.log" 2>/dev/null &&
        (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null &&
        (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_SSL_PORT") 2>/dev/null ;;
    minio) curl -sf --max-time 3 "http://127.0.0.1:$S3_PORT/minio/health/ready" >/dev/null ;;
    containerd|kubelet|kube-scheduler) node_healthy "$1" ;;
  esac
}

base_healthy() {
  [[ -f $ENV_FILE && -f $KUBECONFIG_FILE ]] || return 1
  local c
  for c in etcd kube-apiserver kube-controller-manager kafka minio; do
    alive "$c" && healthy "$c" || return 1
  done
}

all_healthy() {
  [[ -f $ENV_FILE && -f $KUBECONFIG_FILE ]] || return 1
  local c
  for c in "${COMPONENTS[@]}"; do
    alive "$c" && healthy "$c" || return 1
  done
}

# wait_for NAME TIMEOUT_S: until healthy; fails early when the process died
wait_for() {
  local name="$1" timeout="$2" start; start=$(date +%s)
  while ! healthy "$name"; do
    if ! alive "$name"; then
      exited "$name"
      die "$name did not start"
    fi
    if (( $(date +%s) - start > timeout )); then
      tail -n 30 "$LOGS/$name.log" >&2 2>/dev/null || true
      die "$name not ready after ${timeout}s (log: $LOGS/$name.log)"
    fi
    sleep 0.5
  done
  log "$name ready ($(since "$start"))"
}

# exited NAME: say how a daemon this script started ended (its exit status, the end of its log)
exited() {
  local name="$1" pid status=unknown; pid=$(pid_of "$1")
  # only a child of this shell has a status to collect (Kafka is started by fetch-kafka.sh)
  # (never wait on one still running: that would block for as long as it runs)
  if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null && [[ $(jobs -p) == *"$pid"* ]]; then
    wait "$pid" && status=0 || status=$?
  fi
  log "$name exited (status $status); last lines of its log $LOGS/$name.log:"
  if [[ -s $LOGS/$name.log ]]; then tail -n 30 "$LOGS/$name.log" >&2; else log "(the log is empty)"; fi
}

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start NAME MATCH CMD...: start a daemon in its own session, record its PID and what its
# command line must contain (so `down` never kills a recycled PID)
start() {
  local name="$1" match="$2"; shift 2
  # 9>&-: the daemon must not inherit the lock fd (it would hold the lock for its lifetime)
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  local pid=$!
  echo "$pid" >"$PIDS/$name.pid"
  echo "$match" >"$PIDS/$name.cmd"
  # Until the forked shell has exec'd the daemon, its command line is this script's, and `alive`
  # would take a starting daemon for a dead one (on a busy machine that window is long enough to
  # be seen: "kubelet did not start" with an empty log). Wait for the exec, or for the exit.
  local waited
  for ((waited = 0; waited < 200; waited++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    runs "$pid" "$match" && return 0
    sleep 0.05
  done
  log "$name: process $pid still does not run '$match' after 10s"
}

# ---------------------------------------------------------------------------------------------
# certificates

make_pki() {
  [[ -f $PKI/.complete ]] && return
  log "pki: making the cluster CA, serving, client and service-account keys (openssl)"
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=routine-load-testbed-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    # cert NAME SUBJECT EXTENSIONS
    cert() {
      openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
      printf '%b' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    cert apiserver "/CN=kube-apiserver" \
      "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.96.0.1$(node_apiserver_san),DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
    local client="basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
    cert admin "/O=system:masters/CN=routine-load-admin" "$client"
    # aggregation layer (front proxy): its own CA and the client cert the apiserver proxies with
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=routine-load-testbed-front-proxy-ca" \
      -keyout front-proxy-ca.key -out front-proxy-ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=front-proxy-client" -keyout front-proxy-client.key \
      -out front-proxy-client.csr 2>/dev/null
    printf '%b' "$client" >front-proxy-client.ext
    openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key \
      -CAcreateserial -days 3650 -extfile front-proxy-client.ext -out front-proxy-client.crt 2>/dev/null
    rm -f front-proxy-client.csr front-proxy-client.ext
    cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
    # service-account token signing key pair
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  )
  touch "$PKI/.complete"
}

# kubeconfig FILE USER CERT KEY
write_kubeconfig() {
  cat >"$1" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: routine-load-testbed
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 <"$3")
    client-key-data: $(base64 -w0 <"$4")
contexts:
- name: routine-load-testbed
  context:
    cluster: routine-load-testbed
    user: $2
    namespace: default
current-context: routine-load-testbed
YAML
  chmod 600 "$1"
}

# ---------------------------------------------------------------------------------------------
# commands

cmd_build() {
  local start; start=$(date +%s)
  "$RL_TESTBED_DIR/install-prereqs.sh"
  "$RL_TESTBED_DIR/build-k8s.sh" etcd kubernetes helm
  "$RL_TESTBED_DIR/build-s3.sh"
  "$RL_TESTBED_DIR/fetch-kafka.sh" fetch
  if node_enabled; then node_build; fi
  log "all components ready in the cache ($(since "$start"))"
}

cmd_up() {
  local t0; t0=$(date +%s)
  if all_healthy; then
    log "testbed already up and healthy: $ENV_FILE"
    echo "$ENV_FILE"
    return
  fi
  if node_enabled && [[ ! -f $NODE_DIR/node.env ]] && base_healthy; then
    # Started without the node (ROUTINE_LOAD_NODE=0 then, or an older testbed.sh): restarting it
    # would kill whatever runs against it, so it stays; the real-pod tests skip on it.
    log "testbed up and healthy, without a node (restart it for one: testbed.sh down; testbed.sh up): $ENV_FILE"
    echo "$ENV_FILE"
    return
  fi
  if [[ -d $PIDS ]]; then
    log "testbed state exists but is not healthy: stopping what it recorded and starting afresh"
    cmd_down
    eval "$node_settings_from_env"
    source "$RL_TESTBED_DIR/node.sh"
    COMPONENTS=(etcd kube-apiserver kube-controller-manager kafka minio)
    node_enabled && COMPONENTS+=(containerd kubelet kube-scheduler)
  fi
  cmd_build
  local t1; t1=$(date +%s)
  for p in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT" "$KAFKA_PORT" \
           "$KAFKA_SSL_PORT" "$KAFKA_CONTROLLER_PORT" "$S3_PORT" $(node_ports); do
    port_free "$p" || die "port 127.0.0.1:$p is already in use (another testbed? set ROUTINE_LOAD_TESTBED or the *_PORT variables)"
  done
  mkdir -p "$PIDS" "$LOGS" "$RL_STATE/bin"
  make_pki
  if node_enabled; then node_pki; fi

  # binaries dir: everything a test or a person needs on PATH
  ln -sf "$K8S_DIR/bin/kubectl" "$K8S_DIR/bin/kube-apiserver" "$K8S_DIR/bin/kube-controller-manager" \
         "$ETCD_DIR/bin/etcd" "$ETCD_DIR/bin/etcdctl" "$HELM_DIR/bin/helm" "$MINIO_DIR/bin/minio" \
         "$RL_STATE/bin/"

  log "starting etcd on 127.0.0.1:$ETCD_PORT"
  start etcd "$ETCD_DIR/bin/etcd" "$ETCD_DIR/bin/etcd" --name testbed --data-dir "$RL_STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "testbed=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes 2147483648 --log-level warn

  log "starting MinIO on 127.0.0.1:$S3_PORT"
  mkdir -p "$RL_STATE/minio"
  start minio "$MINIO_DIR/bin/minio" env MINIO_ROOT_USER="$S3_ACCESS_KEY" MINIO_ROOT_PASSWORD="$S3_SECRET_KEY" \
    MINIO_BROWSER=off MINIO_UPDATE=off MINIO_REGION="$S3_REGION" \
    "$MINIO_DIR/bin/minio" server --quiet --anonymous --address "127.0.0.1:$S3_PORT" "$RL_STATE/minio"

  log "starting Kafka $KAFKA_VERSION"
  if node_enabled; then
    # the node's settings, for down/status; the pod listener must exist before Kafka starts
    mkdir -p "$NODE_DIR"
    printf 'ROUTINE_LOAD_NODE=1\nAPISERVER_PORT=%s\nKAFKA_PORT=%s\nS3_PORT=%s\nNODE_NAME=%s\nNODE_POD_SUBNET=%s\nKUBELET_PORT=%s\nKUBELET_HEALTHZ_PORT=%s\nSCHEDULER_PORT=%s\nKAFKA_POD_PORT=%s\n' \
      "$APISERVER_PORT" "$KAFKA_PORT" "$S3_PORT" "$NODE_NAME" "$NODE_POD_SUBNET" "$KUBELET_PORT" \
      "$KUBELET_HEALTHZ_PORT" "$SCHEDULER_PORT" "$KAFKA_POD_PORT" >"$NODE_DIR/node.env"
    node_network
  fi
  "$RL_TESTBED_DIR/fetch-kafka.sh" start "$RL_STATE" 9>&-
  mv "$RL_STATE/kafka.pid" "$PIDS/kafka.pid"
  echo "kafka.Kafka $RL_STATE/kafka/server.properties" >"$PIDS/kafka.cmd"
  ln -sf "$RL_STATE/kafka/logs/server.log" "$LOGS/kafka.log"

  wait_for etcd 60
  log "starting kube-apiserver $K8S_VERSION on 127.0.0.1:$APISERVER_PORT"
  start kube-apiserver "$K8S_DIR/bin/kube-apiserver" "$K8S_DIR/bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --cert-dir "$RL_STATE/apiserver" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --authorization-mode Node,RBAC \
    --anonymous-auth=false \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --enable-priority-and-fairness=false \
    --profiling=false --v=1 $(node_apiserver_flags)
  wait_for kube-apiserver 120

  log "starting kube-controller-manager on 127.0.0.1:$KCM_PORT"
  write_kubeconfig "$RL_STATE/kube-controller-manager.kubeconfig" system:kube-controller-manager \
    "$PKI/kube-controller-manager.crt" "$PKI/kube-controller-manager.key"
  start kube-controller-manager "$K8S_DIR/bin/kube-controller-manager" "$K8S_DIR/bin/kube-controller-manager" \
    --kubeconfig "$RL_STATE/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$RL_STATE/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$RL_STATE/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --cert-dir "$RL_STATE/kcm" \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --leader-elect=false --profiling=false --v=1

  write_kubeconfig "$KUBECONFIG_FILE" routine-load-admin "$PKI/admin.crt" "$PKI/admin.key"
  wait_for minio 60
  create_bucket
  wait_for kube-controller-manager 90
  wait_for_default_service_account
  wait_for kafka 120
  if node_enabled; then node_up; fi

  write_env
  log "testbed up: started in $(since "$t1") (total $(since "$t0")); env file:"
  echo "$ENV_FILE"
}

create_bucket() {
  local url="http://127.0.0.1:$S3_PORT/$S3_BUCKET"
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X PUT \
    --aws-sigv4 "aws:amz:$S3_REGION:s3" -u "$S3_ACCESS_KEY:$S3_SECRET_KEY" "$url")
  case "$code" in
    200|409) log "s3: bucket $S3_BUCKET ready" ;;
    *) die "s3: creating bucket $S3_BUCKET answered HTTP $code" ;;
  esac
}

wait_for_default_service_account() {
  local start; start=$(date +%s)
  until admin_curl /api/v1/namespaces/default/serviceaccounts/default >/dev/null 2>&1 &&
        admin_curl /api/v1/namespaces/default/configmaps/kube-root-ca.crt >/dev/null 2>&1; do
    (( $(date +%s) - start < 60 )) || die "the default ServiceAccount was not created in 60s (log: $LOGS/kube-controller-manager.log)"
    sleep 0.5
  done
  log "service-account controllers ready ($(since "$start"))"
}

write_env() {
  local tmp="$ENV_FILE.tmp"
  cat >"$tmp" <<ENV
# Written by e2e/testbed/testbed.sh up. Source it: . $ENV_FILE
export ROUTINE_LOAD_TESTBED=$RL_STATE
export KUBECONFIG=$KUBECONFIG_FILE
export KUBE_SERVER=https://127.0.0.1:$APISERVER_PORT
export ETCD_SERVERS=http://127.0.0.1:$ETCD_PORT
export K8S_VERSION=$K8S_VERSION
export TESTBED_BIN=$RL_STATE/bin
export KUBECTL=$RL_STATE/bin/kubectl
export HELM=$RL_STATE/bin/helm
export HELM_VERSION=$HELM_VERSION
export KAFKA_VERSION=$KAFKA_VERSION
export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export KAFKA_SSL_BROKERS=127.0.0.1:$KAFKA_SSL_PORT
export KAFKA_SSL_CA=$RL_STATE/kafka/tls/ca.pem
export S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export S3_BUCKET=$S3_BUCKET
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_REGION=$S3_REGION
export AWS_ALLOW_HTTP=true
export DELTA_READER_PYTHON=$VENV_DIR/bin/python
export SPARK_READER_PYTHON=$SPARK_VENV_DIR/bin/python
export SPARK_DELTA_JARS=$SPARK_IVY_DIR/jars
export SPARK_S3A_JARS=$SPARK_S3A_DIR/jars
$(node_env)
ENV
  mv "$tmp" "$ENV_FILE"
}

cmd_down() {
  if [[ ! -d $RL_STATE ]]; then
    log "testbed is not up (no $RL_STATE)"
    return
  fi
  local c pid stopped=()
  # the node first: its pods still reach the API server while they stop
  node_down
  # one at a time, in reverse start order, so each can still reach what it depends on
  # (kube-apiserver shuts down cleanly only while etcd is up)
  for c in kube-controller-manager kube-apiserver kafka minio etcd; do
    pid=$(pid_of "$c")
    [[ -n $pid ]] && alive "$c" || continue
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$(( $(date +%s) + 15 ))
    while kill -0 "$pid" 2>/dev/null && (( $(date +%s) < deadline )); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$c ($pid) did not stop in 15s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    stopped+=("$c:$pid")
  done
  log "stopped: ${stopped[*]:-nothing was running}"
  if [[ -d $RL_STATE/schema-registry ]]; then
    SCHEMA_REGISTRY_STATE="$RL_STATE/schema-registry" "$RL_TESTBED_DIR/schema-registry.sh" down
  fi
  rm -rf "$RL_STATE"
  log "removed $RL_STATE"
}

cmd_env() {
  [[ -f $ENV_FILE ]] || die "testbed is not up (no $ENV_FILE): run e2e/testbed/testbed.sh up"
  echo "$ENV_FILE"
}

cmd_status() {
  local c rc=0
  for c in "${COMPONENTS[@]}"; do
    if alive "$c" && healthy "$c"; then echo "$c: healthy (pid $(pid_of "$c"))"
    elif alive "$c"; then echo "$c: running but not ready (pid $(pid_of "$c"))"; rc=1
    else echo "$c: not running"; rc=1; fi
  done
  return $rc
}

# One up/down/build at a time per cache (concurrent test binaries may call `up`).
lock() {
  mkdir -p "$RL_CACHE"
  exec 9>"$RL_CACHE/testbed.lock"
  if ! flock -n 9; then
    log "waiting for another testbed.sh (lock $RL_CACHE/testbed.lock)"
    flock 9
  fi
}

case "${1:-}" in
  up) lock; cmd_up
      # opt-in: a Confluent-compatible schema registry (Apicurio), see schema-registry.sh
      if [[ ${ROUTINE_LOAD_SCHEMA_REGISTRY:-0} == 1 ]]; then
        SCHEMA_REGISTRY_STATE="$RL_STATE/schema-registry" "$RL_TESTBED_DIR/schema-registry.sh" up --env-file "$ENV_FILE"
      fi ;;
  down) lock; cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  build) lock; cmd_build ;;
  *) echo "usage: $0 up|down|env|status|build" >&2; exit 2 ;;
esac
