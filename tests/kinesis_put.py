#!/usr/bin/env python3
"""Produce records into a Kinesis stream (a local moto server in the tests) with boto3, the AWS
SDK for Python: plain records with PutRecords, and KPL-aggregated records made by the
aws-kinesis-agg package (the KPL's own format, written by code sluicegate's authors did not
write). Prints, per user record, one JSON line: shard, sequence number, sub-sequence, event id
and line number, in the order the stream keeps them (the test checks the lake against it).

  kinesis_put.py create --endpoint URL --stream S --shards N
  kinesis_put.py put    --endpoint URL --stream S --input EVENTS.ndjson --first I --count C
                        [--aggregate-every K]   (every K-th batch of 100 goes aggregated; 0: none)
  kinesis_put.py split  --endpoint URL --stream S --shard SHARD_ID
"""
import argparse
import json
import sys
import time

import boto3
from aws_kinesis_agg.aggregator import RecordAggregator


def client(endpoint):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def wait_active(k, stream):
    for _ in range(200):
        if k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.05)
    sys.exit(f"stream {stream} did not become active")


def event_id(line):
    try:
        return json.loads(line).get("event_id")
    except (ValueError, AttributeError):
        return None  # a bad record: the lake's quarantine has it


def put(k, args):
    with open(args.input, "rb") as f:
        lines = f.read().split(b"\n")[args.first : args.first + args.count]
    out = []
    batch_no = 0
    for start in range(0, len(lines), 100):
        batch = lines[start : start + 100]
        numbers = range(args.first + start, args.first + start + len(batch))
        if args.aggregate_every and batch_no % args.aggregate_every == args.aggregate_every - 1:
            # One aggregated record per batch (all user records share its sequence number).
            agg = RecordAggregator()
            for n, line in zip(numbers, batch):
                assert agg.add_user_record(f"pk-{n}", line) is None, "one aggregate per batch"
            pk, ehk, data = agg.clear_and_get().get_contents()
            extra = {"ExplicitHashKey": ehk} if ehk else {}
            r = k.put_record(StreamName=args.stream, PartitionKey=pk, Data=data, **extra)
            for sub, (n, line) in enumerate(zip(numbers, batch)):
                out.append((r["ShardId"], int(r["SequenceNumber"]), sub, event_id(line), n))
        else:
            entries = [{"PartitionKey": f"pk-{n}", "Data": line} for n, line in zip(numbers, batch)]
            r = k.put_records(StreamName=args.stream, Records=entries)
            assert r["FailedRecordCount"] == 0, r
            for res, n, line in zip(r["Records"], numbers, batch):
                out.append((res["ShardId"], int(res["SequenceNumber"]), 0, event_id(line), n))
        batch_no += 1
    out.sort(key=lambda t: (t[0], t[1], t[2]))
    for shard, seq, sub, eid, n in out:
        print(json.dumps({"shard": shard, "seq": str(seq), "sub": sub, "event_id": eid, "line": n}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["create", "put", "split"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--stream", required=True)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--input")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--aggregate-every", type=int, default=0)
    p.add_argument("--shard")
    args = p.parse_args()
    k = client(args.endpoint)
    if args.command == "create":
        k.create_stream(StreamName=args.stream, ShardCount=args.shards)
        wait_active(k, args.stream)
    elif args.command == "put":
        put(k, args)
    else:
        shard = next(s for s in k.list_shards(StreamName=args.stream)["Shards"] if s["ShardId"] == args.shard)
        lo = int(shard["HashKeyRange"]["StartingHashKey"])
        hi = int(shard["HashKeyRange"]["EndingHashKey"])
        k.split_shard(StreamName=args.stream, ShardToSplit=args.shard, NewStartingHashKey=str((lo + hi) // 2))
        wait_active(k, args.stream)


if __name__ == "__main__":
    main()
