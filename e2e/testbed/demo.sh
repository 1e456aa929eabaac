#!/usr/bin/env bash
# make demo: the reference's Wikipedia quick start on this machine, from nothing.
#
#   demo.sh up     prerequisites, testbed (API server, Kafka, S3, and, unless ROUTINE_LOAD_NODE=0, a
#                  node: containerd + kubelet), build, the images, `helm install` of the chart,
#                  the operator Deployment and two workers of the StatefulSet, the Wikipedia
#                  topic, the Table and the job; waits for RUNNING and the loaded rows, then
#                  prints `kubectl get pods`, `kubectl get routineloadjobs` and rows
#   demo.sh down   deletes the demo's job namespace, stops local processes and uninstalls the
#                  chart (the testbed stays up; `make testbed-down` stops it)
#
# With the testbed's node the chart's pods run for real, from images built out of
# docker/Dockerfile (e2e/testbed/images.sh). Without it no kubelet runs, so the Deployment and
# StatefulSet get no pods: the same binaries run as local processes instead, authenticated as the
# chart's ServiceAccounts, so they have exactly the chart's RBAC.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="$(cd "$RL_TESTBED_DIR/../.." && pwd)"
DEMO="$RL_STATE/demo"
RELEASE=routine-load
RELEASE_NS=routine-load
JOB_NS=load-test
TOPIC=starrocks-load
ROWS="${DEMO_ROWS:-10000}"
WORKERS=2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RL_CACHE/target}"
BIN="$CARGO_TARGET_DIR/debug"

started=$(date +%s)
step() { printf '\n==> [%ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }

# delete_job_namespace: the demo's namespace, without waiting on the Table and task finalizers
# of an operator and workers that no longer run (the Table's deletionPolicy is Retain: its files
# stay).
delete_job_namespace() {
  local k=$1
  "$k" -n "$JOB_NS" delete routineloadjobs --all --wait=false >/dev/null 2>&1 || true
  # Operator pods (the demo on the node) release the Table themselves, but only while their Role
  # in this namespace exists: delete the Table first and give them a moment.
  if [[ -n $("$k" -n "$RELEASE_NS" get pods -l app.kubernetes.io/component=operator -o name 2>/dev/null) ]]; then
    "$k" -n "$JOB_NS" delete tables --all --timeout=30s >/dev/null 2>&1 || true
  fi
  for t in $("$k" -n "$JOB_NS" get tables,routineloadtasks -o name 2>/dev/null); do
    "$k" -n "$JOB_NS" patch "$t" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null || true
  done
  "$k" delete namespace "$JOB_NS" --ignore-not-found --wait=true --timeout=60s >/dev/null
}

stop_processes() {
  for f in "$DEMO"/*.pid; do
    [[ -f $f ]] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

# token_kubeconfig SA FILE: a kubeconfig that authenticates as the ServiceAccount.
token_kubeconfig() {
  local sa=$1 file=$2 token server
  token=$("$KUBECTL" -n "$RELEASE_NS" create token "$sa" --duration=24h)
  server=$("$KUBECTL" config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  "$KUBECTL" config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' \
    | base64 -d >"$DEMO/ca.crt"
  KUBECONFIG="$file" "$KUBECTL" config set-cluster demo --server="$server" \
    --certificate-authority="$DEMO/ca.crt" --embed-certs=true >/dev/null
  KUBECONFIG="$file" "$KUBECTL" config set-credentials "$sa" --token="$token" >/dev/null
  KUBECONFIG="$file" "$KUBECTL" config set-context demo --cluster=demo --user="$sa" >/dev/null
  KUBECONFIG="$file" "$KUBECTL" config use-context demo >/dev/null
}

# start NAME KUBECONFIG BINARY [ENV=VALUE...]: a background process with its log in $DEMO.
start() {
  local name=$1 kubeconfig=$2 binary=$3; shift 3
  # They watch only the demo's namespace, so jobs other tools left on this testbed stay out of it.
  env KUBECONFIG="$kubeconfig" POD_NAME="$name" POD_NAMESPACE="$RELEASE_NS" \
    ROUTINE_LOAD_WATCH_NAMESPACE="$JOB_NS" "$@" \
    nohup "$BIN/$binary" >"$DEMO/$name.log" 2>&1 &
  echo $! >"$DEMO/$name.pid"
}

# wait_loaded LOGS...: until the job is RUNNING with every good row loaded (180 s)
wait_loaded() {
  local want=$(( ROWS - ROWS / 100 )) t0 state loaded
  t0=$(date +%s)
  while :; do
    state=$(jsonpath '{.status.state}')
    loaded=$(jsonpath '{.status.statistic.loadedRows}')
    printf '  %3ss  state=%-13s loadedRows=%s/%s\n' "$(( $(date +%s) - t0 ))" "${state:-?}" "${loaded:-0}" "$want"
    [[ $state == RUNNING && ${loaded:-0} -ge $want ]] && break
    if (( $(date +%s) - t0 > 180 )); then
      "$KUBECTL" -n "$JOB_NS" describe routineloadjob routine-load-wikipedia || true
      "$@" || true
      die "the job did not load $want rows in 180 s"
    fi
    sleep 3
  done
}

# read_back TABLE_DIR: rows of the Delta table by pyarrow, then by Spark, which must agree.
read_back() {
  local table_dir=$1
  step "some loaded rows, read back from the Delta table by an independent reader (pyarrow)"
  READER="$ROOT/e2e/delta_reader.py" TABLE="$table_dir" OUT="$DEMO/pyarrow.json" \
    "$VENV_DIR/bin/python" - <<'PY'
import json, os, subprocess, sys
out = subprocess.run([sys.executable, os.environ["READER"], os.environ["TABLE"]],
                     capture_output=True, text=True, check=True).stdout
snap = json.loads(out)
rows = sorted(snap["rows"], key=lambda r: int(r["user"][4:]))
# Next offset per partition (transaction ids routine-load-<job uid>-<partition>; the -start ids
# fingerprint each partition's configured start).
offsets = {k.rsplit("-", 1)[1]: v for k, v in snap["txns"].items() if not k.endswith("-start")}
print(f"Delta version {snap['version']}: {len(rows)} rows; committed offsets by partition {offsets}")
cols = ["event_time", "channel", "user", "is_robot", "delta", "added", "deleted"]
width = {"event_time": 20, "channel": 15, "user": 11}
print(" ".join(c.ljust(width.get(c, 8)) for c in cols))
for r in rows[:8]:
    print(" ".join(str(r[c]).ljust(width.get(c, 8)) for c in cols))
print(f"pyarrow: {len(rows)} rows, checksum {snap['checksum'][:16]}, protocol {snap['protocol']}")
with open(os.environ["OUT"], "w") as f:
    json.dump({"version": snap["version"], "count": len(rows), "checksum": snap["checksum"]}, f)
PY

  step "the same table read by Spark $PYSPARK_VERSION + delta-spark $DELTA_SPARK_VERSION (a second, JVM reader)"
  local spark_out
  spark_out=$(SPARK_DELTA_JARS="$SPARK_IVY_DIR/jars" SPARK_S3A_JARS="$SPARK_S3A_DIR/jars" PYSPARK_PYTHON="$SPARK_VENV_DIR/bin/python" \
    "$SPARK_VENV_DIR/bin/python" "$ROOT/e2e/spark_reader.py" read "file://$table_dir" \
    2>"$DEMO/spark_reader.log") || { tail -n 20 "$DEMO/spark_reader.log"; echo "$spark_out"; die "Spark could not read the table"; }
  PYARROW="$DEMO/pyarrow.json" SPARK="$spark_out" python3 - <<'PY' || die "Spark and pyarrow disagree"
import json, os, sys
p = json.load(open(os.environ["PYARROW"]))
s = json.loads(os.environ["SPARK"].strip().splitlines()[-1])
if s.get("error"):
    sys.exit(f"Spark refused the table: {s['error']}")
print(f"Spark:   {s['count']} rows, checksum {s['checksum'][:16]}, version {s['version']}, "
      f"protocol {s['protocol']['minReaderVersion']}/{s['protocol']['minWriterVersion']} "
      f"features {s['protocol']['tableFeatures']}")
same = (s["count"], s["checksum"], s["version"]) == (p["count"], p["checksum"], p["version"])
print("Spark and pyarrow agree: same version, row count and checksum" if same else
      f"MISMATCH: pyarrow {p}, Spark {s['count']} rows {s['checksum']} v{s['version']}")
sys.exit(0 if same else 1)
PY
}

pod_logs() {
  "$KUBECTL" -n "$RELEASE_NS" get pods -o wide
  "$KUBECTL" -n "$RELEASE_NS" logs -l "app.kubernetes.io/instance=$RELEASE" --prefix --tail=20
}

# The demo on the testbed's node: the chart's Deployment and StatefulSet as real pods.
pods_demo() {
  step "images: operator and worker from docker/Dockerfile's targets and the binaries just built (no Docker, no registry)"
  bash "$RL_TESTBED_DIR/images.sh" build "$CONTAINERD_ADDRESS"

  step "cleaning up an earlier demo"
  stop_processes
  mkdir -p "$DEMO"
  delete_job_namespace "$KUBECTL"
  "$HELM" uninstall "$RELEASE" --namespace "$RELEASE_NS" --ignore-not-found --wait >/dev/null
  rm -rf "$DEMO/tables" "$DEMO/routine_wiki_edit" "$DEMO/error_log"
  # file:// tables on a hostPath of the (single) node, writable by the pods' uid 65532
  mkdir -p "$DEMO/tables"; chmod 0777 "$DEMO/tables"
  "$KUBECTL" create namespace "$JOB_NS" >/dev/null

  step "helm install $RELEASE charts/routine-load: CRDs, RBAC, operator Deployment (2 replicas) and worker StatefulSet ($WORKERS) as pods on node $TESTBED_NODE"
  # The node has no cluster DNS (error-log URLs use pod IPs); the workers and the operator
  # share the table directory; the chart watches only the demo's namespace (the testbed is shared).
  "$HELM" upgrade --install "$RELEASE" "$ROOT/charts/routine-load" \
    --namespace "$RELEASE_NS" --create-namespace --set worker.replicas="$WORKERS" \
    --set "watchNamespaces[0]=$JOB_NS" --set worker.advertiseAddress=podIP \
    --set tableVolume.enabled=true --set tableVolume.volume.hostPath.path="$DEMO/tables" \
    --set tableVolume.volume.hostPath.type=Directory \
    --set-json 'worker.extraEnv=[{"name":"ROUTINE_LOAD_BATCH_INTERVAL_MS","value":"2000"}]'
  "$KUBECTL" -n "$RELEASE_NS" rollout status "deployment/$RELEASE-operator" --timeout=180s ||
    { pod_logs; die "the operator pods did not become Ready"; }
  "$KUBECTL" -n "$RELEASE_NS" rollout status "statefulset/$RELEASE-worker" --timeout=180s ||
    { pod_logs; die "the worker pods did not become Ready"; }

  step "Kafka topic $TOPIC: $ROWS Wikipedia edit rows (1% bad: text in the INT column delta)"
  "$BIN/routine-load-produce" --brokers "$KAFKA_BROKERS" --topic "$TOPIC" --recreate \
    --wikipedia "$ROWS"

  step "kubectl apply: the Table routine-wiki-edit and the job routine-load-wikipedia (namespace $JOB_NS; the pods reach Kafka at $KAFKA_POD_BROKERS)"
  sed "s|LOCATION|file:///data/routine_wiki_edit|" "$ROOT/examples/wikipedia/table.yaml" | "$KUBECTL" apply -f -
  sed "s|BROKERS|$KAFKA_POD_BROKERS|" "$ROOT/examples/wikipedia/job.yaml" | "$KUBECTL" apply -f -

  step "waiting for the job: NEED_SCHEDULE -> RUNNING, then every good row loaded"
  wait_loaded pod_logs

  step "kubectl get pods -n $RELEASE_NS"
  "$KUBECTL" get pods -n "$RELEASE_NS" -o wide
  step "kubectl get routineloadjobs -n $JOB_NS"
  "$KUBECTL" get routineloadjobs -n "$JOB_NS"
  if [[ -x $BIN/kubectl-routineload ]]; then
    step "kubectl routineload show routine-load-wikipedia -n $JOB_NS (like SHOW ROUTINE LOAD ...\\G)"
    PATH="$BIN:$PATH" "$KUBECTL" routineload show routine-load-wikipedia -n "$JOB_NS" || true
  fi
  read_back "$DEMO/tables/routine_wiki_edit"
  step "done: the job keeps running in the pods. Try:"
  cat <<EOF
  source "\$(make -s testbed-env)"
  $BIN/routine-load-produce --brokers \$KAFKA_BROKERS --topic $TOPIC --wikipedia 1000 --from $ROWS
  \$TESTBED_BIN/kubectl get routineloadjobs -n $JOB_NS -w
  \$TESTBED_BIN/kubectl delete pod -n $RELEASE_NS $RELEASE-worker-0    # the StatefulSet recreates it
  PATH=$BIN:\$PATH \$TESTBED_BIN/kubectl routineload pause routine-load-wikipedia -n $JOB_NS
  make demo-down        # delete the job's namespace and uninstall the chart
EOF
}

jsonpath() { "$KUBECTL" -n "$JOB_NS" get routineloadjob routine-load-wikipedia -o "jsonpath=$1" 2>/dev/null || true; }

up() {
  step "prerequisites (apt packages, JDK, pyarrow, pyspark + delta-spark; quick when present)"
  bash "$RL_TESTBED_DIR/install-prereqs.sh"

  step "testbed: kube-apiserver, etcd, controller manager, Kafka, MinIO (first run builds them: ~20 min)"
  bash "$RL_TESTBED_DIR/testbed.sh" up
  unset TESTBED_NODE
  # shellcheck disable=SC1090
  source "$(bash "$RL_TESTBED_DIR/testbed.sh" env)"
  KUBECTL="$TESTBED_BIN/kubectl"
  HELM="$TESTBED_BIN/helm"

  step "building the operator, worker and tools (first run: ~30 min on 2 cores)"
  # Same target selection as `make test` (bins + tests unify features the same way), so the two
  # share every compiled dependency. A line every 25 crates shows progress on a cold build.
  (cd "$ROOT" && cargo build --workspace --bins --tests 2>&1) | awk '
    /^ *Compiling / { n++; if (n % 25 == 0 || $2 ~ /^(routine-load|kubectl-routineload)/) printf "  [%ds] compiled %d crates (%s %s)\n", systime() - start, n, $2, $3; fflush() }
    /^error|^warning: unused/ { print; fflush() }
    /^ *Finished/ { print "  " $0; fflush() }
    BEGIN { start = systime() }'
  for b in routine-load-operator routine-load-worker routine-load-produce; do
    [[ -x $BIN/$b ]] || die "$BIN/$b was not built; run: cargo build --workspace --all-targets"
  done

  if [[ -n ${TESTBED_NODE:-} ]]; then
    pods_demo
    return
  fi

  step "cleaning up an earlier demo"
  stop_processes
  mkdir -p "$DEMO"
  delete_job_namespace "$KUBECTL"
  rm -rf "$DEMO/routine_wiki_edit" "$DEMO/error_log"

  step "helm install $RELEASE charts/routine-load (CRDs, ServiceAccounts, RBAC, Deployment, StatefulSet)"
  "$HELM" upgrade --install "$RELEASE" "$ROOT/charts/routine-load" \
    --namespace "$RELEASE_NS" --create-namespace --set worker.replicas="$WORKERS"
  "$KUBECTL" get crd tables.routineload.io routineloadjobs.routineload.io routineloadtasks.routineload.io

  step "operator and $WORKERS workers as local processes, with the chart's ServiceAccount tokens"
  token_kubeconfig "$RELEASE-operator" "$DEMO/operator.kubeconfig"
  token_kubeconfig "$RELEASE-worker" "$DEMO/worker.kubeconfig"
  start "$RELEASE-operator-demo" "$DEMO/operator.kubeconfig" routine-load-operator \
    ROUTINE_LOAD_HTTP_ADDR=127.0.0.1:18080
  for i in $(seq 0 $((WORKERS - 1))); do
    start "$RELEASE-worker-$i" "$DEMO/worker.kubeconfig" routine-load-worker \
      ROUTINE_LOAD_HTTP_ADDR="127.0.0.1:$((18040 + i))" \
      ROUTINE_LOAD_ADVERTISE_URL="http://127.0.0.1:$((18040 + i))" \
      ROUTINE_LOAD_ERROR_LOG_DIR="$DEMO/error_log" \
      ROUTINE_LOAD_BATCH_INTERVAL_MS=2000
  done
  echo "logs: $DEMO/*.log"

  step "Kafka topic $TOPIC: $ROWS Wikipedia edit rows (1% bad: text in the INT column delta)"
  "$BIN/routine-load-produce" --brokers "$KAFKA_BROKERS" --topic "$TOPIC" --recreate \
    --wikipedia "$ROWS"

  step "kubectl apply: the Table routine-wiki-edit and the job routine-load-wikipedia (namespace $JOB_NS)"
  "$KUBECTL" create namespace "$JOB_NS" >/dev/null
  sed "s|LOCATION|file://$DEMO/routine_wiki_edit|" "$ROOT/examples/wikipedia/table.yaml" | "$KUBECTL" apply -f -
  sed "s|BROKERS|$KAFKA_BROKERS|" "$ROOT/examples/wikipedia/job.yaml" | "$KUBECTL" apply -f -

  step "waiting for the job: NEED_SCHEDULE -> RUNNING, then every good row loaded"
  wait_loaded tail -n 20 "$DEMO"/*.log

  step "kubectl get routineloadjobs -n $JOB_NS"
  "$KUBECTL" get routineloadjobs -n "$JOB_NS"

  if [[ -x $BIN/kubectl-routineload ]]; then
    step "kubectl routineload show routine-load-wikipedia -n $JOB_NS (like SHOW ROUTINE LOAD ...\\G)"
    PATH="$BIN:$PATH" "$KUBECTL" routineload show routine-load-wikipedia -n "$JOB_NS" || true
  fi
  read_back "$DEMO/routine_wiki_edit"
  step "done: the job keeps running. Try:"
  cat <<EOF
  source "\$(make -s testbed-env)"
  $BIN/routine-load-produce --brokers \$KAFKA_BROKERS --topic $TOPIC --wikipedia 1000 --from $ROWS
  \$TESTBED_BIN/kubectl get routineloadjobs -n $JOB_NS -w
  PATH=$BIN:\$PATH \$TESTBED_BIN/kubectl routineload pause routine-load-wikipedia -n $JOB_NS
  make demo-down        # stop the demo's processes and uninstall the chart
EOF
}

down() {
  stop_processes
  if [[ -f $RL_STATE/testbed.env ]]; then
    # shellcheck disable=SC1090
    source "$RL_STATE/testbed.env"
    delete_job_namespace "$TESTBED_BIN/kubectl" || true
    "$TESTBED_BIN/helm" uninstall "$RELEASE" --namespace "$RELEASE_NS" --ignore-not-found || true
  fi
  echo "demo stopped"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) die "usage: demo.sh up|down" ;;
esac
