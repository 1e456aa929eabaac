#!/usr/bin/env python3
"""Spark as a second independent Delta reader for the end-to-end tests (and `make demo`).

Reads Delta tables with Apache Spark and delta-spark (the JVM Delta implementation, which shares
nothing with delta-rs, the writer, nor with e2e/delta_reader.py), all tables in one Spark session
(the JVM start costs seconds):

    spark_reader.py read TABLE [TABLE ...] [--rows] [--storage-option KEY=VALUE ...]
    spark_reader.py sql STATEMENT [STATEMENT ...]      # e.g. CREATE TABLE delta.`/path` (...)

TABLE is a local path, a file:// URL or s3://bucket/prefix (read through s3a; needs the
hadoop-aws jars on the classpath). `read` prints one JSON object per table, one per line:
    {"table": ..., "version": N, "count": N, "checksum": "sha256 hex", "rows": [...] (with --rows),
     "schema": [{"name", "type", "nullable"}], "partitionColumns": [...],
     "protocol": {"minReaderVersion", "minWriterVersion", "tableFeatures"}}
or {"table": ..., "error": "..."} when Spark can't read it (the other tables are still read).

Values are printed the way e2e/delta_reader.py prints them (dates, timestamps and decimals as
ISO 8601 / plain decimal strings, binary as hex), and the checksum is the same function of the
rows as its "checksum" (sha256 of the sorted canonical JSON rows), so the two readers can be
compared by count and checksum alone.

The Delta jars come from $SPARK_DELTA_JARS (a directory of jars, set by the testbed: Ivy's jars/
directory that e2e/testbed/install-spark.sh filled once), the s3a jars from $SPARK_S3A_JARS;
nothing is resolved at run time.
"""

import argparse
import datetime
import decimal
import glob
import hashlib
import json
import os
import shutil
import sys


def to_json(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def canonical(row):
    return json.dumps(row, sort_keys=True, separators=(",", ":"), default=to_json,
                      ensure_ascii=False)


def checksum(rows):
    h = hashlib.sha256()
    for line in sorted(canonical(r) for r in rows):
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


# Spark creates its (unused) warehouse directory at start; main removes it at the end.
WAREHOUSE = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"rl-spark-warehouse-{os.getpid()}")


def spark_session(options):
    from pyspark.sql import SparkSession

    jars_dir = os.environ.get("SPARK_DELTA_JARS")
    if not jars_dir or not os.path.isdir(jars_dir):
        raise SystemExit(f"spark_reader: SPARK_DELTA_JARS is not a directory ({jars_dir!r}); "
                         "run e2e/testbed/install-spark.sh")
    jars = sorted(glob.glob(os.path.join(jars_dir, "*.jar")))
    # s3a (hadoop-aws and the AWS SDK modules it uses), when the testbed installed them.
    s3a_dir = os.environ.get("SPARK_S3A_JARS")
    if s3a_dir and os.path.isdir(s3a_dir):
        jars += sorted(glob.glob(os.path.join(s3a_dir, "*.jar")))
    # Local mode on loopback only: the driver binds nothing on other interfaces.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    b = (SparkSession.builder.master(os.environ.get("SPARK_READER_MASTER", "local[2]"))
         .appName("routine-load-spark-reader")
         .config("spark.jars", ",".join(jars))
         .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
         .config("spark.sql.catalog.spark_catalog",
                 "org.apache.spark.sql.delta.catalog.DeltaCatalog")
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.sql.shuffle.partitions", "1")
         .config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1")
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         # The Delta log of a test table is small: one partition rebuilds its state.
         .config("spark.databricks.delta.snapshotPartitions", "1")
         .config("spark.driver.memory", os.environ.get("SPARK_READER_MEMORY", "1g"))
         # A short-lived JVM: the C1 compiler only and a serial GC start and finish sooner.
         .config("spark.driver.extraJavaOptions",
                 os.environ.get("SPARK_READER_JAVA_OPTIONS",
                                "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"))
         .config("spark.sql.warehouse.dir", WAREHOUSE))
    # S3: s3a against the storage options' endpoint (path-style, like MinIO needs).
    opt = {k.lower(): v for k, v in options.items()}
    endpoint = opt.get("aws_endpoint_url") or opt.get("endpoint") or os.environ.get(
        "AWS_ENDPOINT_URL")
    if endpoint:
        b = b.config("spark.hadoop.fs.s3a.endpoint", endpoint)
        b = b.config("spark.hadoop.fs.s3a.path.style.access", "true")
        b = b.config("spark.hadoop.fs.s3a.connection.ssl.enabled",
                     "true" if endpoint.startswith("https") else "false")
    for key, conf in (("aws_access_key_id", "access.key"), ("aws_secret_access_key", "secret.key"),
                      ("aws_region", "endpoint.region")):
        value = opt.get(key) or os.environ.get(key.upper())
        if value:
            b = b.config(f"spark.hadoop.fs.s3a.{conf}", value)
    b = b.config("spark.hadoop.fs.s3.impl", "org.apache.hadoop.fs.s3a.S3AFileSystem")
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_path(table):
    if table.startswith("s3://"):
        return "s3a://" + table[len("s3://"):]
    return table


def read_one(spark, table, with_rows):
    path = spark_path(table)
    df = spark.read.format("delta").load(path)
    rows = [r.asDict(recursive=True) for r in df.collect()]
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()[0].asDict()
    version = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").collect()[0]["version"]
    out = {
        "table": table,
        "version": version,
        "count": len(rows),
        "checksum": checksum(rows),
        "schema": [{"name": f.name, "type": f.dataType.simpleString(), "nullable": f.nullable}
                   for f in df.schema.fields],
        "partitionColumns": list(detail.get("partitionColumns") or []),
        "protocol": {
            "minReaderVersion": detail.get("minReaderVersion"),
            "minWriterVersion": detail.get("minWriterVersion"),
            "tableFeatures": sorted(detail.get("tableFeatures") or []),
        },
    }
    if with_rows:
        out["rows"] = rows
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("read")
    r.add_argument("tables", nargs="+")
    r.add_argument("--rows", action="store_true", help="print the rows too")
    r.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    s = sub.add_parser("sql")
    s.add_argument("statements", nargs="+")
    args = p.parse_args(argv)
    options = dict(o.split("=", 1) for o in getattr(args, "storage_option", []))
    spark = spark_session(options)
    failed = False
    try:
        if args.command == "sql":
            for statement in args.statements:
                spark.sql(statement).collect()
            return 0
        for table in args.tables:
            try:
                out = read_one(spark, table, args.rows)
            except Exception as e:  # a Spark/Delta error for this table: report, go on
                failed = True
                msg = str(e).strip().splitlines()
                out = {"table": table, "error": " ".join(msg[:3])[:2000]}
            json.dump(out, sys.stdout, default=to_json, ensure_ascii=False)
            sys.stdout.write("\n")
            sys.stdout.flush()
    finally:
        spark.stop()
        shutil.rmtree(WAREHOUSE, ignore_errors=True)
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
