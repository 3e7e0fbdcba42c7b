//! A core's encoder task: sealed ETL buffers → Parquet files, handed to the outbox.
//!
//! It builds Arrow columns from the archived rows in chunks of [`ENCODE_CHUNK_ROWS`] (reading
//! spilled segments back first), frees each chunk's ring space as soon as it is in Arrow, and
//! yields between chunks, so a large file never stalls the core's partitions for long. Its
//! histogram records busy time only. Bounds: one sealed buffer at a time; the queue feeding it
//! is `core::SEALED_QUEUE_MAX`.

use super::context::CoreCtx;
use crate::buffer::Sealed;
use crate::load::parquet::{ParquetEncoder, ENCODE_CHUNK_ROWS};
use crate::telemetry::StageId;
use glommio::channels::local_channel;

pub(super) async fn encoder_task(ctx: CoreCtx, rx: local_channel::LocalReceiver<(Sealed, String)>) {
    let clock = ctx.shared.clock.clone();
    while let Some((sealed, key)) = rx.recv().await {
        let table = &ctx.shared.plan.tables[sealed.key.table as usize];
        // Busy time only: the time other tasks run while this one yields is not encoding.
        let mut busy_ns = 0;
        let rows = sealed.records();
        let mut cols = ctx
            .pipe
            .borrow()
            .buffers()
            .columns(sealed.key.table, ENCODE_CHUNK_ROWS.min(rows));
        let mut consumed = 0;
        let encoded = (async {
            let mut enc: Option<ParquetEncoder> = None;
            let mut off = 0;
            while off < rows {
                let t = clock.monotonic_ns();
                let n = ENCODE_CHUNK_ROWS.min(rows - off);
                let next = ENCODE_CHUNK_ROWS.min(rows - off - n);
                for run in sealed.locs[off..off + n].chunk_by(|a, b| a.seg == b.seg) {
                    let seg = run[0].seg;
                    if let Err(e) = ctx.read_back(run).await {
                        return Err(crate::load::parquet::EncodeError(format!(
                            "reading spilled segment {seg}: {e}"
                        )));
                    }
                    // The run's records are in Arrow now: give their ring space back at once.
                    let mut pipe = ctx.pipe.borrow_mut();
                    pipe.buffers()
                        .append_rows(run, &mut cols)
                        .map_err(|e| crate::load::parquet::EncodeError(format!("spilled segment {seg}: {e}")))?;
                    pipe.consume(run);
                    pipe.buffers_mut().ring_mut().evict_readback(seg);
                    consumed += run.len();
                }
                let chunk = cols.finish(next);
                let enc = match &mut enc {
                    Some(e) => e,
                    None => {
                        let props = crate::load::parquet::props_for_batch(&table.writer_props, &chunk);
                        enc.insert(ParquetEncoder::try_new(table.arrow_schema.clone(), props)?)
                    }
                };
                enc.write(&chunk)?;
                off += n;
                busy_ns += clock.monotonic_ns() - t;
                glommio::executor().yield_if_needed().await;
            }
            let t = clock.monotonic_ns();
            let bytes = enc.expect("a sealed buffer holds at least one record").finish();
            busy_ns += clock.monotonic_ns() - t;
            bytes
        })
        .await;
        ctx.pipe.borrow_mut().consume(&sealed.locs[consumed..]);
        match encoded {
            Ok(bytes) => {
                let file = {
                    let mut pipe = ctx.pipe.borrow_mut();
                    pipe.hist.record(StageId::Encode, busy_ns);
                    pipe.etl_file(sealed, key, bytes)
                };
                ctx.submit_file(file).await;
            }
            Err(e) => ctx.fail(format!("{key}: {e}"), true),
        }
    }
}
