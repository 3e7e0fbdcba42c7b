#!/usr/bin/env python3
"""Read a sluicegate lake with tools no one here wrote (pyarrow, DuckDB) and check it.

Usage: check_lake.py LAKE_DIR EXPECTED_ETL_ROWS EXPECTED_QUARANTINED

Asserts that pyarrow (Hive-partitioned dataset) and DuckDB both read the ETL zone, agree with
each other, with the audit trail and with the expected counts; that every row sits in the
dt/hr partition of its event time; and that DuckDB reads the quarantine zone (NDJSON + zstd)
and the audit zone. Exits non-zero with a message on the first disagreement.
"""
import sys

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as ds


def fail(msg):
    print(f"check_lake: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    lake, want_etl, want_quarantined = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    # pyarrow: the ETL zone as one Hive-partitioned dataset.
    etl = ds.dataset(f"{lake}/etl", format="parquet", partitioning="hive")
    table = etl.to_table()
    for col in ("source", "table", "dt", "hr", "event_id", "ts"):
        if col not in table.schema.names:
            fail(f"pyarrow: no column {col!r} in {table.schema.names}")
    if table.num_rows != want_etl:
        fail(f"pyarrow reads {table.num_rows} ETL rows, expected {want_etl}")
    ids = table.column("event_id")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        fail("pyarrow: event_id is not unique")
    ts_dt = pc.strftime(table.column("ts"), format="%Y-%m-%d")
    ts_hr = pc.strftime(table.column("ts"), format="%H")
    dt = pc.cast(table.column("dt"), "string")
    hr = pc.cast(pc.cast(table.column("hr"), "int32"), "string")
    if not pc.all(pc.equal(ts_dt, dt)).as_py():
        fail("pyarrow: a row's dt partition differs from its event date")
    if not pc.all(pc.equal(pc.cast(pc.cast(ts_hr, "int32"), "string"), hr)).as_py():
        fail("pyarrow: a row's hr partition differs from its event hour")

    # DuckDB: the same zone through its own reader and Hive partitioning.
    con = duckdb.connect()
    glob = f"{lake}/etl/**/*.parquet"
    n = con.execute(f"select count(*) from read_parquet('{glob}', hive_partitioning = true)").fetchone()[0]
    if n != want_etl:
        fail(f"DuckDB reads {n} ETL rows, expected {want_etl}")
    misplaced = con.execute(
        f"""select count(*) from read_parquet('{glob}', hive_partitioning = true)
            where strftime(ts at time zone 'UTC', '%Y-%m-%d') != cast(dt as varchar)
               or cast(strftime(ts at time zone 'UTC', '%H') as int) != cast(hr as int)"""
    ).fetchone()[0]
    if misplaced:
        fail(f"DuckDB: {misplaced} rows sit outside their event-time partition")
    by_part_duck = dict(
        con.execute(
            f"""select cast(dt as varchar) || ' ' || cast(cast(hr as int) as varchar), count(*)
                from read_parquet('{glob}', hive_partitioning = true) group by all"""
        ).fetchall()
    )
    by_part_arrow = {}
    for d, h in zip(dt.to_pylist(), hr.to_pylist()):
        by_part_arrow[f"{d} {h}"] = by_part_arrow.get(f"{d} {h}", 0) + 1
    if by_part_duck != by_part_arrow:
        fail(f"pyarrow and DuckDB disagree per partition: {by_part_arrow} vs {by_part_duck}")

    # Quarantine (zstd NDJSON) and the audit trail.
    q = con.execute(
        f"select count(*), count(distinct rule) from read_json_auto('{lake}/quarantine/**/*.ndjson.zst')"
    ).fetchone()
    if q[0] != want_quarantined:
        fail(f"DuckDB reads {q[0]} quarantined records, expected {want_quarantined}")
    audit = dict(
        con.execute(
            f"select zone, sum(records) from read_parquet('{lake}/audit/kind=file/**/*.parquet') group by zone"
        ).fetchall()
    )
    if audit.get("etl") != want_etl or audit.get("quarantine") != want_quarantined:
        fail(f"audit file rows {audit} disagree with etl {want_etl} / quarantine {want_quarantined}")
    fetch = con.execute(
        f"""select sum(records_in), sum(records_etl), sum(records_quarantined)
            from read_parquet('{lake}/audit/kind=fetch/**/*.parquet')"""
    ).fetchone()
    if fetch[1] != want_etl or fetch[2] != want_quarantined or fetch[0] != want_etl + want_quarantined:
        fail(f"audit fetch rows {fetch} disagree")
    print(
        f"check_lake: ok: {want_etl} ETL rows in {len(by_part_arrow)} partitions read by pyarrow "
        f"{__import__('pyarrow').__version__} and DuckDB {duckdb.__version__}; "
        f"{q[0]} quarantined ({q[1]} rules); audit agrees"
    )


if __name__ == "__main__":
    main()
