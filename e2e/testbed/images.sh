#!/usr/bin/env bash
# Images for the testbed's node, without Docker and without a registry:
#
#   images.sh pause                 the pause (sandbox) image: pause.c of k8s.io/kubernetes, gcc -static
#   images.sh base                  the runtime base of docker/Dockerfile: a debootstrap --variant=minbase
#                                   rootfs of its Debian release with its apt packages, as an OCI layer
#   images.sh import-pause SOCK     import the pause image into the containerd at SOCK (namespace k8s.io)
#   images.sh build SOCK            the operator and worker images from docker/Dockerfile's targets and
#                                   the binaries in $CARGO_TARGET_DIR/debug (debug info stripped), imported
#                                   under the chart's tags; skipped per image when its binary is unchanged
#
# What goes into an image (release, packages, user, workdir, labels, copied binary, ports,
# entrypoint) is read from docker/Dockerfile by dockerfile_image.py, which refuses instructions it
# cannot reproduce: the Dockerfile stays the one description of the images. Base and pause images
# are cached in $RL_CACHE keyed by their inputs; per-testbed work files live in $RL_STATE/images.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="$(cd "$RL_TESTBED_DIR/../.." && pwd)"
DOCKERFILE="$ROOT/docker/Dockerfile"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RL_CACHE/target}"
PAUSE_DIR="$RL_CACHE/pause-$K8S_VERSION"
PAUSE_IMAGE="localhost/routine-load/pause:$K8S_VERSION"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WORK="$RL_STATE/images"

for tool in umoci skopeo debootstrap ctr gcc; do
  command -v "$tool" >/dev/null || die "$tool not found (install-prereqs.sh installs it unless ROUTINE_LOAD_NODE=0)"
done

spec() { python3 "$RL_TESTBED_DIR/dockerfile_image.py" "$DOCKERFILE" "$1"; }
field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(" ".join(v) if isinstance(v,list) and all(isinstance(x,str) for x in v) else (v if isinstance(v,str) else json.dumps(v)))' "$1" "$2"; }

build_pause() {
  [[ -f $PAUSE_DIR/pause.tar ]] && { log "pause image: cached ($PAUSE_DIR)"; return; }
  local start; start=$(date +%s)
  local src; src=$(cd "$K8S_DIR/src" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  [[ -f $src ]] || die "pause.c not found at $src (build the control plane first: build-k8s.sh kubernetes)"
  local tmp="$PAUSE_DIR.tmp"; rm -rf "$tmp"; mkdir -p "$tmp/rootfs"
  gcc -Os -static -o "$tmp/rootfs/pause" "$src" -DVERSION="$K8S_VERSION"
  strip "$tmp/rootfs/pause"
  umoci init --layout "$tmp/oci"
  umoci new --image "$tmp/oci:pause"
  umoci insert --image "$tmp/oci:pause" "$tmp/rootfs/pause" /pause
  umoci config --image "$tmp/oci:pause" --config.user 65535:65535 --config.entrypoint /pause
  skopeo copy -q "oci:$tmp/oci:pause" "docker-archive:$tmp/pause.tar:$PAUSE_IMAGE"
  rm -rf "$tmp/oci" "$tmp/rootfs" "$PAUSE_DIR"; mv "$tmp" "$PAUSE_DIR"
  log "pause image: built in $(since "$start")"
}

base_dir() {
  local s; s=$(spec worker)
  local key; key=$(printf '%s %s' "$(field "$s" release)" "$(field "$s" packages)" | sha256sum | cut -c1-12)
  echo "$RL_CACHE/image-base-$(field "$s" release)-$key"
}

build_base() {
  local dir; dir=$(base_dir)
  [[ -f $dir/.complete ]] && { log "base image: cached ($dir)"; return; }
  local start; start=$(date +%s)
  local s; s=$(spec worker)
  local release pkgs; release=$(field "$s" release); pkgs=$(field "$s" packages)
  local tmp="$dir.tmp"; rm -rf "$tmp"; mkdir -p "$tmp"
  log "base image: debootstrap --variant=minbase $release + ${pkgs// /,} (about a minute)"
  run_logged "$tmp/debootstrap.log" debootstrap --variant=minbase --include="${pkgs// /,}" \
    "$release" "$tmp/rootfs" "$DEBIAN_MIRROR"
  # what debian:<release>-slim leaves out, and apt's lists (the Dockerfile removes them too)
  rm -rf "$tmp/rootfs"/var/lib/apt/lists/* "$tmp/rootfs"/var/cache/apt/* "$tmp/rootfs"/var/log/* \
    "$tmp/rootfs"/usr/share/{doc,man,info,locale} "$tmp/rootfs"/var/cache/debconf/*-old
  umoci init --layout "$tmp/oci"
  umoci new --image "$tmp/oci:base"
  umoci unpack --image "$tmp/oci:base" "$tmp/bundle" >/dev/null
  rm -rf "$tmp/bundle/rootfs"; mv "$tmp/rootfs" "$tmp/bundle/rootfs"
  umoci repack --image "$tmp/oci:base" "$tmp/bundle"
  umoci config --image "$tmp/oci:base" \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  rm -rf "$tmp/bundle" "$dir"; mv "$tmp" "$dir"
  date -u +%FT%TZ >"$dir/.complete"
  log "base image: built in $(since "$start") ($(du -sh "$dir/oci" | cut -f1) compressed)"
}

import_pause() {
  local sock=$1
  ctr --address "$sock" -n k8s.io images ls -q | grep -xF "$PAUSE_IMAGE" >/dev/null && return
  ctr --address "$sock" -n k8s.io images import --no-unpack=false "$PAUSE_DIR/pause.tar" >/dev/null
  # the kubelet must never garbage-collect or try to pull the sandbox image
  ctr --address "$sock" -n k8s.io images label "$PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null
}

# chart_ref COMPONENT: the image reference the chart's defaults render
chart_ref() {
  local repo tag
  repo=$(awk -v c="$1:" '$0 ~ "^"c {in_c=1; next} /^[a-z]/ {in_c=0} in_c && /repository:/ {print $2; exit}' "$ROOT/charts/routine-load/values.yaml")
  tag=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/charts/routine-load/Chart.yaml")
  echo "$repo:$tag"
}

build_image() {
  local sock=$1 target=$2 start; start=$(date +%s)
  local s; s=$(spec "$target")
  local copies; copies=$(field "$s" copies)
  local src dst
  read -r src dst < <(python3 -c 'import json,sys; c=json.loads(sys.argv[1]); assert len(c)==1 and len(c[0])==2, c; print(c[0][0], c[0][1])' "$copies")
  local bin="$CARGO_TARGET_DIR/debug/$(basename "$src")"
  [[ -x $bin ]] || die "$bin is not built (cargo build --workspace --all-targets)"
  local ref; ref=$(chart_ref "$target")
  local key; key="$(stat -c '%s %Y' "$bin") $(sha256sum "$DOCKERFILE" | cut -c1-16) $(basename "$(base_dir)")"
  if [[ $(cat "$WORK/$target.key" 2>/dev/null) == "$key" ]] &&
     ctr --address "$sock" -n k8s.io images ls -q | grep -xF "$ref" >/dev/null; then
    log "image $ref: up to date"
    return
  fi
  mkdir -p "$WORK"
  rm -rf "$WORK/$target"; mkdir -p "$WORK/$target"
  cp -a "$(base_dir)/oci" "$WORK/$target/oci"
  objcopy --strip-debug "$bin" "$WORK/$target/$(basename "$src")"
  umoci insert --image "$WORK/$target/oci:base" "$WORK/$target/$(basename "$src")" "$dst" >/dev/null
  local args=(--config.user "$(field "$s" user)" --config.workingdir "$(field "$s" workdir)")
  local e p
  for e in $(field "$s" entrypoint); do args+=(--config.entrypoint "$e"); done
  for p in $(field "$s" expose); do args+=(--config.exposedports "$p/tcp"); done
  while IFS= read -r e; do [[ -n $e ]] && args+=(--config.label "$e"); done < <(
    python3 -c 'import json,sys; [print(f"{k}={v}") for k,v in json.loads(sys.argv[1])["labels"].items()]' "$s")
  umoci config --image "$WORK/$target/oci:base" "${args[@]}"
  skopeo copy -q "oci:$WORK/$target/oci:base" "docker-archive:$WORK/$target/image.tar:$ref"
  ctr --address "$sock" -n k8s.io images import "$WORK/$target/image.tar" >/dev/null
  rm -rf "$WORK/$target"
  echo "$key" >"$WORK/$target.key"
  log "image $ref: built and imported in $(since "$start")"
}

case "${1:-}" in
  pause) build_pause ;;
  base) build_base ;;
  import-pause) [[ $# -eq 2 ]] || die "usage: $0 import-pause SOCK"; build_pause; import_pause "$2" ;;
  build) [[ $# -eq 2 ]] || die "usage: $0 build SOCK"; build_base
         build_image "$2" operator; build_image "$2" worker ;;
  ref) chart_ref "$2" ;;
  *) die "usage: $0 pause | base | import-pause SOCK | build SOCK" ;;
esac
