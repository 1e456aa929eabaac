//! Decoding one batch on several threads: the messages are cut into contiguous runs, each run
//! is loaded by its own engine (same plan) on its own scoped thread, and the parts are joined
//! back in message order. Every step of a load works row by row (or message by message for
//! JSON arrays), so the parts in order are what a single engine gives: the same rows in the
//! same order, the same error rows in the same order, the counters summed. The parts' rows are
//! not copied into one batch: the writer takes the parts one after another.

use std::sync::Arc;

use deltalake::arrow::record_batch::RecordBatch;

use super::{BatchCounters, EngineError, ErrorRow, LoadEngine, LoadedBatch, SourceMessage};

/// Fewer messages than this per thread are not worth a thread.
const MIN_MESSAGES_PER_THREAD: usize = 16 * 1024;

impl LoadEngine {
    /// Another engine for the same plan (for another decoding thread).
    pub fn fork(&self) -> LoadEngine {
        LoadEngine {
            // The same schema registry and schemas (format avro).
            avro: self.avro.clone(),
            ..LoadEngine::new(Arc::clone(&self.plan))
        }
    }
}

/// Engines for `threads` decoding threads from `engine` (at least one: `engine` itself).
pub fn decoding_engines(engine: LoadEngine, threads: usize) -> Vec<LoadEngine> {
    let forks: Vec<LoadEngine> = (1..threads).map(|_| engine.fork()).collect();
    std::iter::once(engine).chain(forks).collect()
}

/// How `messages` messages are cut for `engines` engines: contiguous runs, as even as
/// possible, each of at least [`MIN_MESSAGES_PER_THREAD`] (so small batches use one thread).
fn runs(messages: usize, engines: usize) -> Vec<std::ops::Range<usize>> {
    let n = engines.min(messages / MIN_MESSAGES_PER_THREAD).max(1);
    let (size, extra) = (messages / n, messages % n);
    let mut start = 0;
    (0..n)
        .map(|i| {
            let len = size + usize::from(i < extra);
            let run = start..start + len;
            start += len;
            run
        })
        .collect()
}

/// A batch loaded in parts: its rows are the parts' rows in order.
#[derive(Debug)]
pub struct LoadedParts {
    /// Rows to write, in the table's schema, in message order.
    pub parts: Vec<RecordBatch>,
    /// Rows not loaded, with reasons, in message order.
    pub errors: Vec<ErrorRow>,
    pub counters: BatchCounters,
}

impl LoadedParts {
    /// The rows to write.
    pub fn num_rows(&self) -> usize {
        self.parts.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Loads `messages` with `engines` (the first on the calling thread, the others on scoped
/// threads): in order, the rows and error rows `engines[0].load(messages)` gives.
pub fn load_in_parallel(
    engines: &mut [LoadEngine],
    messages: &[SourceMessage<'_>],
) -> Result<LoadedParts, EngineError> {
    let runs = runs(messages.len(), engines.len());
    if runs.len() <= 1 {
        return engines[0].load(messages).map(|one| join(vec![one]));
    }
    let parts: Vec<Result<LoadedBatch, EngineError>> = std::thread::scope(|s| {
        let (first, rest) = engines.split_first_mut().expect("at least one engine");
        let handles: Vec<_> = rest
            .iter_mut()
            .zip(&runs[1..])
            .map(|(engine, run)| {
                let run = &messages[run.clone()];
                s.spawn(move || engine.load(run))
            })
            .collect();
        let mut parts = vec![first.load(&messages[runs[0].clone()])];
        parts.extend(
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
        );
        parts
    });
    Ok(join(parts.into_iter().collect::<Result<Vec<_>, _>>()?))
}

/// The parts of one batch, in message order.
fn join(parts: Vec<LoadedBatch>) -> LoadedParts {
    let mut errors = Vec::with_capacity(parts.iter().map(|p| p.errors.len()).sum());
    let mut counters = BatchCounters::default();
    let mut batches = Vec::with_capacity(parts.len());
    for p in parts {
        counters.add(&p.counters);
        errors.extend(p.errors);
        batches.push(p.batch);
    }
    LoadedParts {
        parts: batches,
        errors,
        counters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cut_batches_into_even_contiguous_runs_of_a_minimum_size() {
        let m = MIN_MESSAGES_PER_THREAD;
        let cases: &[(usize, usize, &[usize])] = &[
            // (messages, engines, run lengths)
            (0, 2, &[0]),
            (10, 1, &[10]),
            (10, 4, &[10]),
            (2 * m - 1, 2, &[2 * m - 1]),
            (2 * m, 2, &[m, m]),
            (2 * m + 1, 2, &[m + 1, m]),
            (3 * m + 2, 2, &[(3 * m + 2) / 2, (3 * m + 2) / 2]),
            (3 * m, 4, &[m, m, m]),
            (200_000, 2, &[100_000, 100_000]),
            (5, 0, &[5]),
        ];
        for &(messages, engines, lengths) in cases {
            let got = runs(messages, engines);
            let got_lengths: Vec<usize> = got.iter().map(|r| r.len()).collect();
            assert_eq!(
                got_lengths, lengths,
                "{messages} messages, {engines} engines"
            );
            assert_eq!(got.first().map(|r| r.start), Some(0));
            assert_eq!(got.last().map(|r| r.end), Some(messages));
            assert!(got.windows(2).all(|w| w[0].end == w[1].start));
        }
    }
}
