//! The Kinesis target: each lane sends its requests as PutRecords calls (at most
//! [`PUT_RECORDS_MAX`] records each, the service's limit) to a stream, through the AWS SDK
//! (endpoint override for an emulator; credentials from the standard provider chain). Records
//! get distinct partition keys, so they spread over the shards. An entry the service refuses
//! (throttled) counts as refused; a failed call as an error. Nothing is retried: open loop.
//!
//! Bounds: one call in flight per lane.

use crate::events::{Counts, Events};
use crate::lane::Client;
use crate::profile::Slot;
use crate::record::Answer;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use std::sync::Arc;

/// Records one PutRecords call may carry (the service's limit).
pub const PUT_RECORDS_MAX: u32 = 500;

pub struct KinesisClient {
    pub events: Arc<Events>,
    pub client: aws_sdk_kinesis::Client,
    pub stream: String,
    pub first_error: Option<String>,
    plain: String,
}

impl KinesisClient {
    pub fn new(events: Arc<Events>, client: aws_sdk_kinesis::Client, stream: &str) -> KinesisClient {
        KinesisClient {
            events,
            client,
            stream: stream.to_string(),
            first_error: None,
            plain: String::new(),
        }
    }
}

impl Client for KinesisClient {
    type Request = (Vec<PutRecordsRequestEntry>, Vec<bool>, Counts);

    fn first_error(&self) -> Option<String> {
        self.first_error.clone()
    }

    fn prepare(&mut self, slot: Slot) -> Self::Request {
        let (mut entries, mut good) = (Vec::new(), Vec::new());
        let counts = self.events.each(slot, &mut self.plain, |payload, g| {
            let key = format!("{:x}-{}", slot.seq, entries.len());
            entries.push(
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(payload))
                    .partition_key(key)
                    .build()
                    .expect("data and partition key are set"),
            );
            good.push(g);
        });
        (entries, good, counts)
    }

    async fn send(&mut self, (entries, good, counts): Self::Request) -> Answer {
        let put = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await;
        match put {
            Ok(out) => {
                let mut a = Answer::default();
                for (r, g) in out.records().iter().zip(&good) {
                    if r.error_code().is_some() {
                        a.refused += 1;
                    } else {
                        a.accepted += 1;
                        a.accepted_good += u64::from(*g);
                    }
                }
                a
            }
            Err(e) => {
                self.first_error.get_or_insert_with(|| sluicegate::aws::error_chain(&e));
                Answer {
                    refused: counts.records,
                    error: true,
                    ..Answer::default()
                }
            }
        }
    }
}
