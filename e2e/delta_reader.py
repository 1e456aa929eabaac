#!/usr/bin/env python3
"""An independent Delta Lake table reader for the end-to-end tests.

It shares no code with the writer (delta-rs): it replays `_delta_log` itself, from the newest
classic checkpoint (single or multi-part Parquet) and the JSON commits after it, reconciles the
add/remove actions, reads the live Parquet files with pyarrow and adds the partition values.

    delta_reader.py TABLE_URI [--version N] [--storage-option KEY=VALUE ...]

TABLE_URI is a local path, a file:// URL or s3://bucket/prefix. For S3 the options (or the
environment) give: endpoint (S3_ENDPOINT / AWS_ENDPOINT_URL), access_key_id (AWS_ACCESS_KEY_ID),
secret_access_key (AWS_SECRET_ACCESS_KEY), region (AWS_REGION), allow_http.

Prints one JSON object:
    {"version": N, "rows": [{column: value}], "txns": {appId: version}, "schema": [{name, type}],
     "partitionColumns": [...], "files": [path...], "commits": [{"version", "operation", "timestamp", "routineLoad"}],
     "protocol": {...}, "configuration": {...}, "checksum": "sha256 hex"}
Dates, timestamps and decimals are printed as strings (ISO 8601 / plain decimal), binary as hex.
The checksum is sha256 over the sorted canonical JSON rows (keys sorted, no spaces, one row a
line), the same function e2e/spark_reader.py prints, so the two readers compare by checksum.
Exits 2 with a message on stderr when the table can't be read (no log, an unsupported feature).
"""

import argparse
import datetime
import decimal
import hashlib
import json
import os
import re
import sys
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

COMMIT_RE = re.compile(r"^(\d{20})\.json$")
CHECKPOINT_RE = re.compile(r"^(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?\.parquet$")
CHECKPOINT_V2_RE = re.compile(r"^(\d{20})\.checkpoint\.[0-9a-fA-F-]{36}\.(?:parquet|json)$")


class ReaderError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# file systems


def open_filesystem(uri, options):
    """Returns (pyarrow FileSystem, root path inside it)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path) if parsed.scheme == "file" else uri
        return pafs.LocalFileSystem(), os.path.abspath(path).rstrip("/")
    if parsed.scheme in ("s3", "s3a"):
        opt = {k.lower(): v for k, v in options.items()}

        def pick(*keys, env=()):
            for k in keys:
                if opt.get(k):
                    return opt[k]
            for e in env:
                if os.environ.get(e):
                    return os.environ[e]
            return None

        endpoint = pick("endpoint", "aws_endpoint", "aws_endpoint_url", "endpoint_url",
                        env=("AWS_ENDPOINT_URL", "S3_ENDPOINT"))
        kwargs = dict(
            access_key=pick("access_key_id", "aws_access_key_id", env=("AWS_ACCESS_KEY_ID",)),
            secret_key=pick("secret_access_key", "aws_secret_access_key",
                            env=("AWS_SECRET_ACCESS_KEY",)),
            region=pick("region", "aws_region", env=("AWS_REGION", "AWS_DEFAULT_REGION"))
            or "us-east-1",
        )
        if endpoint:
            ep = urlparse(endpoint)
            if ep.scheme:
                kwargs["scheme"] = ep.scheme
                kwargs["endpoint_override"] = ep.netloc + ep.path.rstrip("/")
            else:
                kwargs["endpoint_override"] = endpoint
            kwargs["force_virtual_addressing"] = False
        fs = pafs.S3FileSystem(**{k: v for k, v in kwargs.items() if v is not None})
        return fs, (parsed.netloc + parsed.path).rstrip("/")
    raise ReaderError(f"unsupported table URI scheme: {uri}")


def list_log(fs, root):
    log_dir = root + "/_delta_log"
    try:
        infos = fs.get_file_info(pafs.FileSelector(log_dir, allow_not_found=True))
    except OSError as e:
        raise ReaderError(f"cannot list {log_dir}: {e}") from e
    return log_dir, [i.base_name for i in infos if i.type == pafs.FileType.File]


def read_json_lines(fs, path):
    with fs.open_input_stream(path) as f:
        data = f.read().decode("utf-8")
    return [json.loads(line) for line in data.splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------
# log replay


def choose_checkpoint(names, as_of):
    """The newest complete classic checkpoint at or before as_of: (version, [file names])."""
    single, parts = {}, {}
    for n in names:
        m = CHECKPOINT_RE.match(n)
        if not m:
            continue
        v = int(m.group(1))
        if as_of is not None and v > as_of:
            continue
        if m.group(2) is None:
            single[v] = [n]
        else:
            parts.setdefault((v, int(m.group(3))), []).append(n)
    for (v, total), files in parts.items():
        if len(files) == total:
            single.setdefault(v, sorted(files))
    if not single:
        return None, []
    v = max(single)
    return v, single[v]


def replay(fs, root, as_of=None):
    log_dir, names = list_log(fs, root)
    commits = {}
    for n in names:
        m = COMMIT_RE.match(n)
        if m:
            commits[int(m.group(1))] = n
    if any(CHECKPOINT_V2_RE.match(n) for n in names) and not commits:
        raise ReaderError("only v2 checkpoints found: not supported by this reader")
    if not commits and not any(CHECKPOINT_RE.match(n) for n in names):
        raise ReaderError(f"no Delta log at {log_dir}")
    latest = max(commits) if commits else None
    if as_of is not None:
        if latest is None or as_of > latest:
            raise ReaderError(f"version {as_of} does not exist (latest is {latest})")
        latest = as_of

    state = {"protocol": None, "metaData": None, "files": {}, "txns": {}, "commits": []}

    cp_version, cp_files = choose_checkpoint(names, latest)
    start = 0
    if cp_version is not None:
        for name in cp_files:
            table = pq.read_table(f"{log_dir}/{name}", filesystem=fs)
            for row in table.to_pylist():
                apply_action(state, row, from_checkpoint=True)
        start = cp_version + 1
    if latest is None:
        latest = cp_version
    for v in range(start, latest + 1):
        if v not in commits:
            raise ReaderError(f"commit {v} is missing from {log_dir}")
        for action in read_json_lines(fs, f"{log_dir}/{commits[v]}"):
            apply_action(state, action)
            if action.get("commitInfo") is not None:
                info = action["commitInfo"]
                state["commits"].append({
                    "version": v,
                    "operation": info.get("operation"),
                    "timestamp": info.get("timestamp"),
                    "routineLoad": info.get("routineLoad"),
                })
    if state["metaData"] is None:
        raise ReaderError("the log has no metaData action")
    state["version"] = latest
    return state


def file_key(add_or_remove):
    dv = add_or_remove.get("deletionVector")
    dv_id = None
    if dv:
        dv_id = (dv.get("storageType"), dv.get("pathOrInlineDv"), dv.get("offset"))
    return (add_or_remove["path"], dv_id)


def apply_action(state, action, from_checkpoint=False):
    # A checkpoint row has one non-null column per action; a JSON line has one key.
    if action.get("protocol"):
        state["protocol"] = action["protocol"]
    if action.get("metaData"):
        state["metaData"] = action["metaData"]
    if action.get("txn"):
        t = action["txn"]
        state["txns"][t["appId"]] = t["version"]
    if action.get("add"):
        a = action["add"]
        pv = a.get("partitionValues")
        if isinstance(pv, list):  # checkpoint parquet stores maps as [(key, value)]
            pv = dict(pv)
        a = dict(a, partitionValues=pv or {})
        state["files"][file_key(a)] = a
    if action.get("remove"):
        state["files"].pop(file_key(action["remove"]), None)


# ----------------------------------------------------------------------------------------------
# data


PRIMITIVES = {
    "string": pa.string(), "long": pa.int64(), "integer": pa.int32(), "short": pa.int16(),
    "byte": pa.int8(), "boolean": pa.bool_(), "double": pa.float64(), "float": pa.float32(),
    "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC"),
    "timestamp_ntz": pa.timestamp("us"), "binary": pa.binary(),
}
DECIMAL_RE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def arrow_type(delta_type):
    if isinstance(delta_type, str):
        if delta_type in PRIMITIVES:
            return PRIMITIVES[delta_type]
        m = DECIMAL_RE.match(delta_type)
        if m:
            return pa.decimal128(int(m.group(1)), int(m.group(2)))
    return None  # nested types: taken as stored


def partition_value(raw, delta_type):
    if raw is None:
        return None
    if delta_type == "string":
        return raw
    if raw == "":
        return None
    if delta_type in ("long", "integer", "short", "byte"):
        return int(raw)
    if delta_type in ("double", "float"):
        return float(raw)
    if delta_type == "boolean":
        return raw.lower() == "true"
    if delta_type == "date":
        return datetime.date.fromisoformat(raw)
    if delta_type in ("timestamp", "timestamp_ntz"):
        ts = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if delta_type == "timestamp" and ts.tzinfo is None:
            ts = ts.replace(tzinfo=datetime.timezone.utc)
        return ts
    if isinstance(delta_type, str) and delta_type.startswith("decimal"):
        return decimal.Decimal(raw)
    if delta_type == "binary":
        return raw.encode("latin-1")
    return raw


def data_path(root, path):
    if "://" in path:
        parsed = urlparse(path)
        if parsed.scheme == "file":
            return unquote(parsed.path)
        return parsed.netloc + unquote(parsed.path)
    return root + "/" + unquote(path)


def read_rows(fs, root, state):
    meta = state["metaData"]
    config = meta.get("configuration") or {}
    if config.get("delta.columnMapping.mode", "none") != "none":
        raise ReaderError("column mapping is not supported by this reader")
    schema = json.loads(meta["schemaString"])
    fields = schema["fields"]
    part_cols = meta.get("partitionColumns") or []
    rows = []
    for add in sorted(state["files"].values(), key=lambda a: a["path"]):
        if add.get("deletionVector"):
            raise ReaderError(f"deletion vectors are not supported (file {add['path']})")
        table = pq.read_table(data_path(root, add["path"]), filesystem=fs)
        n = table.num_rows
        columns = {}
        for f in fields:
            name, dtype = f["name"], f["type"]
            atype = arrow_type(dtype)
            if name in part_cols:
                value = partition_value(add["partitionValues"].get(name), dtype)
                columns[name] = pa.array([value] * n, type=atype)
            elif name in table.column_names:
                col = table.column(name)
                if atype is not None and col.type != atype:
                    try:
                        col = col.cast(atype)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                        pass
                columns[name] = col
            else:
                columns[name] = pa.nulls(n, type=atype or pa.null())
        for i in range(n):
            rows.append({name: col[i].as_py() for name, col in columns.items()})
    return fields, part_cols, rows


def to_json(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def checksum(rows):
    h = hashlib.sha256()
    lines = (json.dumps(r, sort_keys=True, separators=(",", ":"), default=to_json,
                        ensure_ascii=False) for r in rows)
    for line in sorted(lines):
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table")
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    options = dict(o.split("=", 1) for o in args.storage_option)
    try:
        fs, root = open_filesystem(args.table, options)
        state = replay(fs, root, args.version)
        fields, part_cols, rows = read_rows(fs, root, state)
    except (ReaderError, OSError, pa.ArrowException) as e:
        print(f"delta_reader: {args.table}: {e}", file=sys.stderr)
        return 2
    out = {
        "version": state["version"],
        "rows": rows,
        "txns": state["txns"],
        "schema": [{"name": f["name"], "type": f["type"]} for f in fields],
        "partitionColumns": part_cols,
        "files": sorted(a["path"] for a in state["files"].values()),
        "commits": state["commits"],
        "protocol": state["protocol"],
        "configuration": state["metaData"].get("configuration") or {},
        "checksum": checksum(rows),
    }
    json.dump(out, sys.stdout, default=to_json)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
