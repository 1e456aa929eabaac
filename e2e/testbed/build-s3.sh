#!/usr/bin/env bash
# Builds MinIO (the S3-compatible server of the testbed) from its Go module into the cache.
# MinIO publishes no semver tags, so the version is a module pseudo-version (see lib.sh); its
# go.mod has no replace directives, so a plain `go install` works. The ldflags are the ones
# MinIO's buildscripts/gen-ldflags.go sets, derived from the pseudo-version's time and commit.
# MinIO honours conditional writes (PUT with If-None-Match: * answers 412 when the key exists),
# which delta-rs 1.x relies on for safe concurrent commits; e2e/tests/s3.rs shows it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_go

out="$MINIO_DIR/bin"
if [[ -x $out/minio && -f $MINIO_DIR/.complete ]]; then
  log "minio $MINIO_VERSION: cached in $out"
  exit 0
fi
start=$(date +%s)
mkdir -p "$MINIO_DIR/logs" "$out.tmp"
# v0.0.0-20260212201848-7aac2a2c5b7c -> 2026-02-12T20:18:48Z, commit 7aac2a2c5b7c
stamp=$(echo "$MINIO_VERSION" | sed -n 's/^v0\.0\.0-\([0-9]\{14\}\)-\([0-9a-f]\{12\}\)$/\1/p')
commit=${MINIO_VERSION##*-}
ld="-s -w"
if [[ -n $stamp ]]; then
  iso="${stamp:0:4}-${stamp:4:2}-${stamp:6:2}T${stamp:8:2}:${stamp:10:2}:${stamp:12:2}Z"
  ld+=" -X github.com/minio/minio/cmd.Version=$iso"
  ld+=" -X github.com/minio/minio/cmd.ReleaseTag=RELEASE.${iso//:/-}"
  ld+=" -X github.com/minio/minio/cmd.CopyrightYear=${stamp:0:4}"
  ld+=" -X github.com/minio/minio/cmd.CommitID=$commit -X github.com/minio/minio/cmd.ShortCommitID=$commit"
fi
log "minio $MINIO_VERSION: compiling (go install -p $GO_BUILD_P; cold: several minutes)"
(cd "$MINIO_DIR" && run_logged "$MINIO_DIR/logs/build.log" env CGO_ENABLED=0 GOBIN="$out.tmp" \
   GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
   go install -p "$GO_BUILD_P" -trimpath -ldflags "$ld" "github.com/minio/minio@$MINIO_VERSION")
rm -rf "$out"; mv "$out.tmp" "$out"
"$out/minio" --version >/dev/null
date -u +%FT%TZ > "$MINIO_DIR/.complete"
log "minio $MINIO_VERSION: built in $(since "$start") -> $out"
