//! The Kinesis records of one GetRecords response, packed: every payload back to back in one
//! buffer, every sequence number back to back in one string, and two end offsets per record.
//!
//! Why: the SDK's `Record` is three allocations (payload, sequence number, partition key) made
//! on the fetch runtime and freed on the owning core, where a free from another thread is the
//! allocator's slow path; with ~1,000 records a response that was most of the fetch path's
//! allocator time. A response packed here is three buffers whatever its size, the payloads
//! base64-decoded straight into theirs ([`Records::push_base64`]); and once the core has handed
//! a response out, its buffers go back to the shard's fetch task to hold a later response
//! ([`Records::reuse`]): a fresh megabyte buffer per response cost the kernel's page zeroing.
//!
//! Keeps what the pipeline reads of a record: its payload, and its sequence number (the
//! checkpoint cursor). Partition key, arrival time and encryption type are not kept.
//!
//! Invariants: records stay in response order; `ends` is non-decreasing in both offsets.
//! Bounds: none of its own — a response holds at most 10,000 records and 10 MiB (the service's
//! limits); [`Records::reuse`] lets the decoder size the buffer once from the body (shrinking a
//! reused one to at most twice that), and growth past it is amortized (never one reallocation
//! per record). The sequence numbers and offsets of 10,000 records are under 2 MiB.

use aws_sdk_kinesis::types::Record;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Records {
    data: Vec<u8>,
    sequences: String,
    /// Per record: the end of its payload in `data`, and of its sequence number in `sequences`.
    ends: Vec<(usize, usize)>,
}

impl Records {
    /// Room for `data_bytes` of payload without growing (a decoder passes an upper bound, so
    /// appending never copies what is already there).
    pub fn with_capacity(data_bytes: usize) -> Records {
        Records::default().reuse(data_bytes)
    }

    /// These buffers emptied, with room for `data_bytes` of payload. A payload buffer more
    /// than twice that large is shrunk to it first, so a reused buffer follows the sizes of
    /// recent responses (a shard that caught up after a backlog of 10 MiB responses does not
    /// keep 10 MiB for its small ones).
    pub fn reuse(mut self, data_bytes: usize) -> Records {
        self.data.clear();
        self.sequences.clear();
        self.ends.clear();
        if self.data.capacity() / 2 > data_bytes {
            self.data.shrink_to(data_bytes);
        }
        self.data.reserve(data_bytes);
        self
    }

    /// The SDK's records, packed (for a body the SDK's deserializer read).
    pub fn from_sdk(records: &[Record]) -> Records {
        let mut out = Records::with_capacity(records.iter().map(|r| r.data().as_ref().len()).sum());
        for r in records {
            out.push(r.data().as_ref(), r.sequence_number());
        }
        out
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Payload bytes of all records.
    pub fn data_bytes(&self) -> usize {
        self.data.len()
    }

    pub fn push(&mut self, data: &[u8], sequence: &str) {
        self.data.extend_from_slice(data);
        self.end_record(sequence);
    }

    /// Append a record whose payload is base64, decoding it in place; nothing is appended if it
    /// is not base64.
    pub fn push_base64(&mut self, base64: &[u8], sequence: &str) -> Result<(), base64_simd::Error> {
        // `base64-simd` reserves exactly what it lacks, which record after record would copy
        // the buffer each time: reserve first (amortized; nothing within `reuse`'s bound).
        self.data.reserve(base64.len() / 4 * 3);
        super::base64_lanes::decode_append(base64, &mut self.data)?;
        self.end_record(sequence);
        Ok(())
    }

    fn end_record(&mut self, sequence: &str) {
        self.sequences.push_str(sequence);
        self.ends.push((self.data.len(), self.sequences.len()));
    }

    /// The `i`-th record's payload and sequence number.
    pub fn get(&self, i: usize) -> (&[u8], &str) {
        let (start, seq_start) = if i == 0 { (0, 0) } else { self.ends[i - 1] };
        let (end, seq_end) = self.ends[i];
        (&self.data[start..end], &self.sequences[seq_start..seq_end])
    }

    /// Every record's payload, in order.
    pub fn payloads(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.get(i).0)
    }

    /// Where the payload buffer is: the same allocation as before means a reused buffer.
    #[cfg(test)]
    pub(crate) fn data_ptr(&self) -> *const u8 {
        self.data.as_ptr()
    }

    /// The last record's sequence number.
    pub fn last_sequence(&self) -> Option<&str> {
        self.len().checked_sub(1).map(|i| self.get(i).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::primitives::Blob;

    #[test]
    fn records_come_back_in_order_with_their_sequence_numbers() {
        let mut r = Records::with_capacity(16);
        assert!(r.is_empty() && r.last_sequence().is_none());
        r.push(b"ab", "1");
        r.push_base64(b"", "22").unwrap(); // an empty payload
        r.push_base64(b"AAEC", "333").unwrap();
        assert!(r.push_base64(b"***", "4").is_err());
        assert_eq!(r.len(), 3, "a payload that is not base64 appends nothing");
        assert_eq!(r.get(0), (&b"ab"[..], "1"));
        assert_eq!(r.get(1), (&b""[..], "22"));
        assert_eq!(r.get(2), (&[0u8, 1, 2][..], "333"));
        assert_eq!(r.payloads().collect::<Vec<_>>(), [&b"ab"[..], b"", &[0, 1, 2]]);
        assert_eq!(r.last_sequence(), Some("333"));
        assert_eq!(r.data_bytes(), 5);
        let r = r.reuse(100);
        assert!(r.is_empty() && r.data_bytes() == 0 && r.last_sequence().is_none());
        assert!(r.data.capacity() >= 100);
        let r = Records::with_capacity(1 << 20).reuse(1000);
        assert!(
            (1000..2000).contains(&r.data.capacity()),
            "a buffer far larger than needed shrinks: {}",
            r.data.capacity()
        );
        let r = r.reuse(600);
        assert!(r.data.capacity() >= 1000, "one less than twice as large is kept");
    }

    #[test]
    fn the_sdks_records_pack_to_the_same() {
        let sdk: Vec<Record> = [("7", &b"x"[..]), ("8", b"yz")]
            .iter()
            .map(|(seq, data)| {
                Record::builder()
                    .sequence_number(*seq)
                    .data(Blob::new(*data))
                    .partition_key("pk")
                    .build()
                    .unwrap()
            })
            .collect();
        let mut want = Records::default();
        want.push(b"x", "7");
        want.push(b"yz", "8");
        assert_eq!(Records::from_sdk(&sdk), want);
    }
}
