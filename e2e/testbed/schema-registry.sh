#!/usr/bin/env bash
# A Confluent-compatible schema registry on loopback: Apicurio Registry, whose /apis/ccompat/v7
# API is the Confluent Schema Registry REST API (subjects, versions, schemas by id, config,
# compatibility), with in-memory storage (an H2 in-memory database; nothing is persisted).
#
# Apicurio publishes its runnable distribution on Maven Central as
# io.apicurio:apicurio-registry-app:<version>:tar.gz:all: in 3.x a Quarkus fast-jar
# (quarkus-run.jar, lib/, app/, quarkus/), in 2.x a legacy jar (<artifact>-runner.jar, lib/).
# `build` fetches it through Maven and unpacks it; nothing is compiled. 3.x needs Java 21 or
# newer (its classes are class-file version 65); the script picks such a JVM (see find_java).
# 2.x (SCHEMA_REGISTRY_VERSION=2.6.13.Final) runs on Java 17.
#
#   schema-registry.sh build     fetch + unpack the distribution into
#                                $RL_CACHE/schema-registry-<version>/ (once; offline once cached)
#   schema-registry.sh up [--env-file FILE]
#                                build, start in the background on 127.0.0.1:$SCHEMA_REGISTRY_PORT,
#                                wait until the ccompat API answers, record the PID; a no-op when
#                                already up. With --env-file, (re)write the `export SCHEMA_REGISTRY_*`
#                                lines of FILE (the testbed's env file). testbed.sh up runs this
#                                when ROUTINE_LOAD_SCHEMA_REGISTRY=1; testbed.sh down runs `down`.
#   schema-registry.sh down      stop exactly the recorded PID and remove the state dir
#   schema-registry.sh env       print SCHEMA_REGISTRY_URL=... (and the version); fails when not up
#   schema-registry.sh status    say whether it is up and answering (exit 1 if not)
#   schema-registry.sh check     register two compatible versions of an Avro schema under a fresh
#                                subject, read them back by id and by version, reject an
#                                incompatible one, delete the subject (exit 1 on any mismatch)
#
# State dir: ${SCHEMA_REGISTRY_STATE:-$RL_STATE/schema-registry} (pid, log, env). The log is
# $SCHEMA_REGISTRY_STATE/schema-registry.log.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCHEMA_REGISTRY_VERSION="${SCHEMA_REGISTRY_VERSION:-3.3.3}"   # io.apicurio:apicurio-registry-app on Maven Central
SCHEMA_REGISTRY_PORT="${SCHEMA_REGISTRY_PORT:-28081}"
# Quarkus' management interface (metrics, health) is compiled into 3.x; it binds a second port.
SCHEMA_REGISTRY_MANAGEMENT_PORT="${SCHEMA_REGISTRY_MANAGEMENT_PORT:-28082}"
# C1 only: start-up to the first answered request takes ~4 s instead of ~7 s on 2 cores.
SCHEMA_REGISTRY_JAVA_OPTS="${SCHEMA_REGISTRY_JAVA_OPTS:--Xms64m -Xmx384m -XX:TieredStopAtLevel=1}"
SCHEMA_REGISTRY_START_TIMEOUT="${SCHEMA_REGISTRY_START_TIMEOUT:-120}"
DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

SR_DIR="$RL_CACHE/schema-registry-$SCHEMA_REGISTRY_VERSION"
SR_APP="$SR_DIR/quarkus-app"
SR_STATE="${SCHEMA_REGISTRY_STATE:-$RL_STATE/schema-registry}"
SR_PID="$SR_STATE/schema-registry.pid"
SR_CMD="$SR_STATE/schema-registry.cmd"
SR_LOG="$SR_STATE/schema-registry.log"
SR_ENV="$SR_STATE/schema-registry.env"

# ---------------------------------------------------------------------------------------------
# build

# launcher: the jar `java -jar` runs (3.x fast-jar: quarkus-run.jar; 2.x legacy jar: *-runner.jar)
launcher() {
  local j
  for j in "$SR_APP/quarkus-run.jar" "$SR_APP/apicurio-registry-app-$SCHEMA_REGISTRY_VERSION-runner.jar"; do
    [[ -f $j ]] && { echo "$j"; return; }
  done
  return 1
}

cmd_build() {
  if [[ -f $SR_DIR/.complete ]] && launcher >/dev/null; then
    log "schema registry (Apicurio $SCHEMA_REGISTRY_VERSION): cached in $SR_APP"
    return
  fi
  command -v mvn >/dev/null || die "mvn is not installed"
  command -v tar >/dev/null || die "tar is not installed"
  local start; start=$(date +%s)
  local tmp="$SR_DIR.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp/logs" "$tmp/download"
  log "schema registry: mvn dependency:copy io.apicurio:apicurio-registry-app:$SCHEMA_REGISTRY_VERSION:tar.gz:all from Maven Central"
  # -C: fail on a checksum mismatch. Run outside any project (the goal needs none). The tarball
  # also stays in the local Maven repository, so a rebuild of a deleted cache needs no network.
  ( cd "$tmp" && run_logged "$tmp/logs/mvn.log" mvn -B -C "$DEPENDENCY_PLUGIN:copy" \
      -Dartifact="io.apicurio:apicurio-registry-app:$SCHEMA_REGISTRY_VERSION:tar.gz:all" \
      -DoutputDirectory="$tmp/download" ) || die "fetching the Apicurio distribution failed (log: $tmp/logs/mvn.log)"
  local tarball="$tmp/download/apicurio-registry-app-$SCHEMA_REGISTRY_VERSION-all.tar.gz"
  [[ -f $tarball ]] || die "mvn did not produce $tarball"
  mkdir -p "$tmp/quarkus-app"
  tar xzf "$tarball" -C "$tmp/quarkus-app"
  rm -rf "$tmp/download"
  SR_APP="$tmp/quarkus-app" launcher >/dev/null || die "the distribution has no quarkus-run.jar nor *-runner.jar"
  date -u +%FT%TZ >"$tmp/.complete"
  rm -rf "$SR_DIR"
  mv "$tmp" "$SR_DIR"
  log "schema registry (Apicurio $SCHEMA_REGISTRY_VERSION): ready in $SR_APP ($(since "$start"), $(du -sh "$SR_APP" | cut -f1))"
}

# ---------------------------------------------------------------------------------------------
# java

java_major() {
  "$1" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1
}

# find_java: $SCHEMA_REGISTRY_JAVA, else the first of $JAVA_HOME, PATH, /usr/lib/jvm/* (newest
# first) whose major version is at least what the registry version needs (3.x: 21, 2.x: 11)
find_java() {
  local need=11
  (( ${SCHEMA_REGISTRY_VERSION%%.*} >= 3 )) && need=21
  if [[ -n ${SCHEMA_REGISTRY_JAVA:-} ]]; then
    local m; m=$(java_major "$SCHEMA_REGISTRY_JAVA")
    (( ${m:-0} >= need )) || die "SCHEMA_REGISTRY_JAVA=$SCHEMA_REGISTRY_JAVA is Java ${m:-?}; Apicurio $SCHEMA_REGISTRY_VERSION needs $need+"
    echo "$SCHEMA_REGISTRY_JAVA"; return
  fi
  local candidates=() j
  [[ -n ${JAVA_HOME:-} ]] && candidates+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null && candidates+=("$(command -v java)")
  while IFS= read -r j; do candidates+=("$j"); done < <(ls -d /usr/lib/jvm/*/bin/java 2>/dev/null | sort -rV)
  for j in "${candidates[@]}"; do
    [[ -x $j ]] || continue
    local m; m=$(java_major "$j")
    if (( ${m:-0} >= need )); then echo "$j"; return; fi
  done
  die "no Java $need+ found (tried: ${candidates[*]:-none}); set SCHEMA_REGISTRY_JAVA"
}

# ---------------------------------------------------------------------------------------------
# run

url() { echo "http://127.0.0.1:$1/apis/ccompat/v7"; }

recorded_port() { sed -n 's|^SCHEMA_REGISTRY_URL=http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$SR_ENV" 2>/dev/null || true; }

# alive: the recorded PID runs and is still the JVM we started (not a recycled PID)
alive() {
  local pid; pid=$(cat "$SR_PID" 2>/dev/null || true)
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  local expect; expect=$(cat "$SR_CMD" 2>/dev/null || true)
  [[ -z $expect ]] || still_runs "$pid" "$expect"
}

# healthy PORT: the ccompat API answers
healthy() {
  curl -sf --max-time 3 -o /dev/null "$(url "$1")/subjects"
}

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

write_env_file() {
  local file="$1" tmp="$1.tmp"
  [[ -f $file ]] || die "--env-file $file does not exist"
  { grep -v '^export SCHEMA_REGISTRY_' "$file" || true; sed 's/^/export /' "$SR_ENV"; } >"$tmp"
  mv "$tmp" "$file"
  log "schema registry: SCHEMA_REGISTRY_URL written to $file"
}

cmd_up() {
  local env_file=""
  if [[ ${1:-} == --env-file ]]; then
    [[ -n ${2:-} ]] || die "usage: $0 up [--env-file FILE]"
    env_file="$2"
  fi
  local port; port=$(recorded_port)
  if [[ -n $port ]] && alive && healthy "$port"; then
    log "schema registry already up: $(url "$port")"
    [[ -z $env_file ]] || write_env_file "$env_file"
    return
  fi
  if [[ -f $SR_PID ]]; then
    log "schema registry state exists but is not healthy: stopping what it recorded"
    cmd_down
  fi
  cmd_build
  local java; java=$(find_java)
  for p in "$SCHEMA_REGISTRY_PORT" "$SCHEMA_REGISTRY_MANAGEMENT_PORT"; do
    port_free "$p" || die "port 127.0.0.1:$p is already in use (set SCHEMA_REGISTRY_PORT / SCHEMA_REGISTRY_MANAGEMENT_PORT)"
  done
  mkdir -p "$SR_STATE"
  log "schema registry: starting Apicurio $SCHEMA_REGISTRY_VERSION (Java $(java_major "$java"), in-memory storage) on 127.0.0.1:$SCHEMA_REGISTRY_PORT"
  local start; start=$(date +%s)
  # Vert.x's file cache and the JVM's temp dir live in the state dir (`down` removes them).
  mkdir -p "$SR_STATE/tmp"
  # shellcheck disable=SC2206
  local cmd=("$java" $SCHEMA_REGISTRY_JAVA_OPTS -Djava.awt.headless=true
    -Djava.io.tmpdir="$SR_STATE/tmp" -Dvertx.cacheDirBase="$SR_STATE/vertx-cache"
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$SCHEMA_REGISTRY_PORT"
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$SCHEMA_REGISTRY_MANAGEMENT_PORT"
    -jar "$(launcher)")
  # setsid execs java: $! is the JVM's PID. 8>&- 9>&-: the JVM must not inherit a lock fd
  # (this script's, or testbed.sh's when it calls this one).
  ( cd "$SR_STATE" && exec setsid "${cmd[@]}" >"$SR_LOG" 2>&1 </dev/null 8>&- 9>&- ) &
  local pid=$!
  echo "$pid" >"$SR_PID"
  launcher >"$SR_CMD"
  printf 'SCHEMA_REGISTRY_URL=%s\nSCHEMA_REGISTRY_VERSION=%s\n' "$(url "$SCHEMA_REGISTRY_PORT")" \
    "apicurio-$SCHEMA_REGISTRY_VERSION" >"$SR_ENV"
  while ! healthy "$SCHEMA_REGISTRY_PORT"; do
    # kill -0, not alive: until the subshell has exec'd, its command line is not yet java's
    if ! kill -0 "$pid" 2>/dev/null; then
      log "schema registry exited; last lines of its log:"
      tail -n 30 "$SR_LOG" >&2 || true
      rm -f "$SR_PID" "$SR_ENV"
      die "schema registry did not start"
    fi
    if (( $(date +%s) - start > SCHEMA_REGISTRY_START_TIMEOUT )); then
      tail -n 30 "$SR_LOG" >&2 || true
      stop_recorded
      rm -f "$SR_PID" "$SR_ENV"
      die "schema registry not ready after ${SCHEMA_REGISTRY_START_TIMEOUT}s (log: $SR_LOG)"
    fi
    sleep 0.2
  done
  log "schema registry ready ($(since "$start"), pid $pid): $(url "$SCHEMA_REGISTRY_PORT") (log: $SR_LOG)"
  [[ -z $env_file ]] || write_env_file "$env_file"
}

# stop_recorded: TERM the recorded JVM (KILL after 15 s); the state dir stays
stop_recorded() {
  local pid; pid=$(cat "$SR_PID" 2>/dev/null || true)
  if [[ -n $pid ]] && alive; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$(( $(date +%s) + 15 ))
    while kill -0 "$pid" 2>/dev/null && (( $(date +%s) < deadline )); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "schema registry ($pid) did not stop in 15s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "schema registry stopped (pid $pid)"
  else
    log "schema registry was not running"
  fi
}

cmd_down() {
  if [[ ! -d $SR_STATE ]]; then
    log "schema registry is not up (no $SR_STATE)"
    return
  fi
  stop_recorded
  rm -rf "$SR_STATE"
}

cmd_env() {
  [[ -f $SR_ENV ]] || die "schema registry is not up (no $SR_ENV): run $0 up"
  cat "$SR_ENV"
}

cmd_status() {
  local port; port=$(recorded_port)
  if [[ -n $port ]] && alive && healthy "$port"; then
    echo "schema-registry: healthy (pid $(cat "$SR_PID")) $(url "$port")"
  elif alive; then
    echo "schema-registry: running but not ready (pid $(cat "$SR_PID"))"; return 1
  else
    echo "schema-registry: not running"; return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# check: the Confluent-compatible calls a producer/consumer (and the loader) make

cmd_check() {
  local port; port=$(recorded_port)
  [[ -n $port ]] && healthy "$port" || die "schema registry is not up: run $0 up"
  local base; base=$(url "$port")
  local subject="testbed-check-$(date +%s)-$$-value"
  local ct='Content-Type: application/vnd.schemaregistry.v1+json'
  local v1='{"type":"record","name":"r","fields":[{"name":"a","type":"long"}]}'
  local v2='{"type":"record","name":"r","fields":[{"name":"a","type":"long"},{"name":"b","type":["null","string"],"default":null}]}'
  local bad='{"type":"record","name":"r","fields":[{"name":"a","type":"string"}]}'
  # body SCHEMA_JSON -> {"schema":"<escaped>"}
  body() { printf '{"schema":"%s"}' "$(printf '%s' "$1" | sed 's/"/\\"/g')"; }
  # req METHOD PATH [DATA] -> "<status> <body>"
  req() {
    local out code
    out=$(curl -s --max-time 10 -w '\n%{http_code}' -X "$1" -H "$ct" ${3:+--data "$3"} "$base$2")
    code=${out##*$'\n'}
    echo "$code ${out%$'\n'*}"
  }
  # re TEXT: TEXT as an extended regular expression matching itself
  re() { printf '%s' "$1" | sed 's/[][{}()|.*+?^$\\]/\\&/g'; }
  expect() { # expect WHAT ACTUAL WANT-REGEX... (all must match; JSON field order varies)
    local what="$1" actual="$2" want; shift 2
    for want in "$@"; do
      [[ $actual =~ $want ]] || { log "check FAILED: $what: got: $actual"; return 1; }
    done
    log "check ok: $what"
  }
  local r id1 id2
  expect "PUT  /config/$subject BACKWARD" "$(req PUT "/config/$subject" '{"compatibility":"BACKWARD"}')" '^200 .*BACKWARD'
  r=$(req POST "/subjects/$subject/versions" "$(body "$v1")")
  expect "POST /subjects/$subject/versions (v1)" "$r" '^200 \{"id":[0-9]+\}$'
  id1=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' <<<"$r")
  r=$(req POST "/subjects/$subject/versions" "$(body "$v2")")
  expect "POST /subjects/$subject/versions (v2, compatible)" "$r" '^200 \{"id":[0-9]+\}$'
  id2=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' <<<"$r")
  [[ $id1 != "$id2" ]] || { log "check FAILED: v1 and v2 got the same id $id1"; return 1; }
  expect "POST /subjects/$subject/versions (v1 again: same id)" \
    "$(req POST "/subjects/$subject/versions" "$(body "$v1")")" "^200 \\{\"id\":$id1\\}\$"
  # the "schema" field first; 2.x adds "references":[] after it
  expect "GET  /schemas/ids/$id1" "$(req GET "/schemas/ids/$id1")" "^200 $(re "$(body "$v1")" | sed 's/\\}$//')(,.*)?\\}\$"
  expect "GET  /schemas/ids/$id2" "$(req GET "/schemas/ids/$id2")" "^200 $(re "$(body "$v2")" | sed 's/\\}$//')(,.*)?\\}\$"
  if (( ${SCHEMA_REGISTRY_VERSION%%.*} >= 3 )); then   # 2.x has no /schemas/ids/{id}/schema
    expect "GET  /schemas/ids/$id1/schema" "$(req GET "/schemas/ids/$id1/schema")" "^200 $(re "$v1")\$"
  fi
  expect "GET  /subjects/$subject/versions" "$(req GET "/subjects/$subject/versions")" '^200 \[1,2\]$'
  expect "GET  /subjects/$subject/versions/latest" "$(req GET "/subjects/$subject/versions/latest")" \
    '^200 ' '"version":2[,}]' "\"id\":$id2[,}]"
  expect "POST /subjects/$subject (lookup v1)" "$(req POST "/subjects/$subject" "$(body "$v1")")" \
    '^200 ' '"version":1[,}]' "\"id\":$id1[,}]"
  expect "POST /compatibility/subjects/$subject/versions/latest (incompatible)" \
    "$(req POST "/compatibility/subjects/$subject/versions/latest" "$(body "$bad")")" '^200 ' '"is_compatible":false[,}]'
  expect "POST /subjects/$subject/versions (incompatible: 409)" \
    "$(req POST "/subjects/$subject/versions" "$(body "$bad")")" '^409 .*"error_code":409'
  expect "GET  /schemas/ids/999999 (40403)" "$(req GET /schemas/ids/999999)" '^404 .*"error_code":40403'
  expect "DELETE /subjects/$subject" "$(req DELETE "/subjects/$subject")" '^200 \[1,2\]$'
  expect "DELETE /subjects/$subject?permanent=true" "$(req DELETE "/subjects/$subject?permanent=true")" '^200 \[1,2\]$'
  log "schema registry check passed ($base, ids $id1 and $id2)"
}

# One build/up/down at a time per cache.
lock() {
  mkdir -p "$RL_CACHE"
  exec 8>"$RL_CACHE/schema-registry.lock"
  if ! flock -n 8; then
    log "waiting for another schema-registry.sh (lock $RL_CACHE/schema-registry.lock)"
    flock 8
  fi
}

case "${1:-}" in
  build) lock; cmd_build ;;
  up) lock; shift; cmd_up "$@" ;;
  down) lock; cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  check) cmd_check ;;
  *) echo "usage: $0 build|up [--env-file FILE]|down|env|status|check" >&2; exit 2 ;;
esac
