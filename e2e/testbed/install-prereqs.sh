#!/usr/bin/env bash
# Installs what the testbed and the e2e crate need, idempotently (quick when all is there):
#   apt:  build tools, pkg-config, libssl-dev + zlib (rdkafka with the system OpenSSL), openssl and
#         a JDK (Kafka's certificates and broker), Maven (Kafka's jars), curl (readiness probes);
#         unless ROUTINE_LOAD_NODE=0 also containerd, runc, CNI plugins, iptables and image tools
#   venv: pyarrow in $RL_CACHE/venv-pyarrow for e2e/delta_reader.py (the independent Delta reader)
#   spark: pyspark + delta-spark and the Delta jars for e2e/spark_reader.py (install-spark.sh)
# Go (for the control plane and MinIO) and Rust come with the machine image.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APT_PACKAGES=(build-essential perl make pkg-config libssl-dev zlib1g-dev openssl curl
              openjdk-17-jdk-headless maven python3-venv)
# The testbed's node (unless ROUTINE_LOAD_NODE=0): container runtime, CNI plugins, iptables for the pods'
# DNAT, and the image tools (debootstrap for the base rootfs, umoci to pack OCI layers, skopeo to
# turn them into archives containerd imports).
if [[ ${ROUTINE_LOAD_NODE:-1} == 1 ]]; then
  APT_PACKAGES+=(containerd runc containernetworking-plugins iptables debootstrap umoci skopeo)
fi
PYARROW_PIN="${PYARROW_VERSION:-26.0.1}"

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
    missing+=("$p")
  fi
done
# python3-venv only matters when the python3 on PATH is Debian's; a pyenv/python.org build has venv.
if python3 -c 'import venv, ensurepip' 2>/dev/null; then
  missing=("${missing[@]/python3-venv/}")
fi
read -r -a missing <<<"${missing[*]:-}"
if (( ${#missing[@]} > 0 )); then
  log "apt: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt: all prerequisites installed"
fi

for tool in go cargo java mvn openssl python3; do
  command -v "$tool" >/dev/null || die "$tool not found on PATH"
done

if [[ -x $VENV_DIR/bin/python ]] && "$VENV_DIR/bin/python" -c "import pyarrow, sys; sys.exit(pyarrow.__version__ != '$PYARROW_PIN')" 2>/dev/null; then
  log "venv: pyarrow $PYARROW_PIN ready in $VENV_DIR"
else
  log "venv: creating $VENV_DIR with pyarrow $PYARROW_PIN"
  rm -rf "$VENV_DIR"
  python3 -m venv "$VENV_DIR"
  "$VENV_DIR/bin/pip" install -q --disable-pip-version-check "pyarrow==$PYARROW_PIN"
  "$VENV_DIR/bin/python" -c 'import pyarrow, pyarrow.parquet, pyarrow.fs; print("pyarrow", pyarrow.__version__)'
fi

bash "$(dirname "${BASH_SOURCE[0]}")/install-spark.sh"
