#!/usr/bin/env python3
"""moto's server with its Kinesis resharding made to behave as the service documents it.

moto 5.2 differs from the service in three ways a resharding consumer sees:
- SplitShard moves the parent's records into the children (Kinesis leaves them in the parent,
  which a consumer reads to its end before the children);
- PutRecord(s) keeps routing to a shard after it was split (the first shard whose hash range
  holds the key, closed or not); Kinesis writes only to open shards;
- GetRecords on a closed shard never ends (a next iterator is always returned); Kinesis returns
  no NextShardIterator once a closed shard's last record was read: the signal a consumer reads
  the children on.
This wrapper patches those three and runs moto's server with the given arguments (the same as
`moto_server`'s).
"""
import sys

from moto.kinesis import models
from moto.kinesis.utils import decompose_shard_iterator
from moto.server import main

_get_shard_for_key = models.Stream.get_shard_for_key


def get_shard_for_key(self, partition_key, explicit_hash_key):
    shard = _get_shard_for_key(self, partition_key, explicit_hash_key)  # validates the key
    if shard is None or shard.is_open:
        return shard
    if explicit_hash_key:
        key = int(explicit_hash_key)
    else:
        key = int(models.md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    for s in self.shards.values():
        if s.is_open and s.starting_hash <= key < s.ending_hash:
            return s
    return None


_get_records = models.KinesisBackend.get_records


def get_records(self, stream_arn, shard_iterator, limit):
    next_iterator, records, millis_behind = _get_records(self, stream_arn, shard_iterator, limit)
    stream_name, shard_id, last = decompose_shard_iterator(next_iterator)
    shard = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name).get_shard(shard_id)
    if not shard.is_open and int(last) >= shard.get_max_sequence_number():
        next_iterator = None
    return next_iterator, records, millis_behind


_split_shard = models.Stream.split_shard


def split_shard(self, shard_to_split, new_starting_hash_key):
    parent = self.shards[shard_to_split]
    kept = parent.records
    self.put_record = lambda *args, **kwargs: None  # moto re-puts the parent's records: skip
    try:
        _split_shard(self, shard_to_split, new_starting_hash_key)
    finally:
        del self.put_record
    parent.records = kept


models.Stream.split_shard = split_shard
models.Stream.get_shard_for_key = get_shard_for_key
models.KinesisBackend.get_records = get_records

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
