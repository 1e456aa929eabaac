# Shared settings for the testbed scripts. Sourced, not executed.
# Everything downloaded or built lives outside the checkout, under $RL_CACHE.

RL_CACHE="${ROUTINE_LOAD_CACHE:-$HOME/.cache/routine-load}"
RL_STATE="${ROUTINE_LOAD_TESTBED:-$RL_CACHE/testbed}"
RL_TESTBED_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Component versions. Bump here; the cache key is <component>-<version>.
K8S_VERSION="${K8S_VERSION:-v1.36.3}"        # k8s.io/kubernetes; staging modules are v0.<minor>.<patch>
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"      # go.etcd.io/etcd/server/v3 (k8s 1.36 pins the v3.6 client)
HELM_VERSION="${HELM_VERSION:-v4.3.1}"       # helm.sh/helm/v4
KAFKA_VERSION="${KAFKA_VERSION:-4.3.1}"      # org.apache.kafka:kafka_2.13 on Maven Central
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}" # github.com/minio/minio (no semver tags)
PYARROW_VERSION="${PYARROW_VERSION:-}"       # empty: newest pyarrow pip finds
PYSPARK_VERSION="${PYSPARK_VERSION:-4.0.1}"  # pyspark on PyPI (Spark + its jars, Scala 2.13, Java 17)
DELTA_SPARK_VERSION="${DELTA_SPARK_VERSION:-4.0.1}" # delta-spark on PyPI, io.delta:delta-spark_2.13 on Maven Central
HADOOP_AWS_VERSION="${HADOOP_AWS_VERSION:-3.4.1}"   # = the Hadoop in pyspark's jars (s3a for Spark)
AWS_SDK_VERSION="${AWS_SDK_VERSION:-2.24.8}"        # AWS SDK v2 modules s3, s3-transfer-manager, sts

K8S_DIR="$RL_CACHE/kubernetes-$K8S_VERSION"
K8S_NODE_DIR="$RL_CACHE/kubernetes-node-$K8S_VERSION"
ETCD_DIR="$RL_CACHE/etcd-$ETCD_VERSION"
HELM_DIR="$RL_CACHE/helm-$HELM_VERSION"
KAFKA_DIR="$RL_CACHE/kafka-$KAFKA_VERSION"
MINIO_DIR="$RL_CACHE/minio-$MINIO_VERSION"
VENV_DIR="$RL_CACHE/venv-pyarrow"
SPARK_VENV_DIR="$RL_CACHE/venv-spark-$PYSPARK_VERSION-delta-$DELTA_SPARK_VERSION"
SPARK_IVY_DIR="$RL_CACHE/spark-ivy-delta-$DELTA_SPARK_VERSION"   # Ivy cache; jars/ is the classpath
SPARK_S3A_DIR="$RL_CACHE/spark-s3a-hadoop-aws-$HADOOP_AWS_VERSION-sdk-$AWS_SDK_VERSION" # jars/ for s3a

# Go builds share the 2 cores with cargo: keep them narrow unless told otherwise.
GO_BUILD_P="${GO_BUILD_P:-2}"

log() { printf '[testbed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# elapsed SECONDS_START -> "Ns"
since() { echo "$(( $(date +%s) - $1 ))s"; }

# runs PID TEXT: the command line of PID contains TEXT (one read). No `tr | grep -q` pipeline:
# under pipefail, grep quitting at the first match can fail tr with SIGPIPE.
runs() {
  [[ $(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) == *"$2"* ]]
}

# still_runs PID TEXT: `runs`, looking twice 0.3 s apart before it says no: a command line read
# while the process is being exec'd (by setsid, env or a subshell) can come back empty, and one
# such read must not make a live daemon look dead.
still_runs() {
  runs "$1" "$2" || { sleep 0.3; runs "$1" "$2"; }
}

# Run a long command with its output in a log file, printing a progress line every 30 s.
run_logged() {
  local logfile="$1"; shift
  local start; start=$(date +%s)
  "$@" >"$logfile" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if (( ($(date +%s) - start) % 30 < 5 )); then
      log "  ... still running ($(since "$start")): $(tail -n 1 "$logfile" 2>/dev/null | cut -c1-120)"
    fi
  done
  if ! wait "$pid"; then
    log "command failed: $*"
    tail -n 40 "$logfile" >&2
    return 1
  fi
}

need_go() {
  command -v go >/dev/null || die "go is not installed (the polyglot machine ships it)"
}
