//! Step 1 for CSV, a column at a time: a chunk of messages is split into fields first, then each
//! source field is converted over the whole chunk. The column's type is matched once per chunk
//! instead of once per field, and one parser runs over many values in a row. The rows, NULLs
//! and error rows (in message order) are the ones converting row by row gives.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::column_builder::{ColumnBuilder, Rejected};
use super::{ErrorRow, FieldFailure, LoadEngine, RowOrigin, SourceMessage, reason, record_row};

/// Messages split before their fields are converted: the fields of a chunk (24 bytes each, 50
/// columns of 256 rows are 300 KiB) stay in the core's cache while each column reads them.
const CHUNK_ROWS: usize = 256;

impl LoadEngine {
    /// Splits and converts `messages` into `builders`, one row per message; records each row's
    /// origin, whether it failed and the error row of each that did.
    pub(super) fn convert_csv<'a>(
        &self,
        messages: &[SourceMessage<'a>],
        builders: &mut [ColumnBuilder],
        errors: &mut Vec<ErrorRow>,
        bad_rows: &mut Vec<bool>,
        origins: &mut Vec<RowOrigin>,
    ) {
        let fields = &self.plan.source_fields;
        let width = fields.len();
        let mut split: Vec<Cow<'a, [u8]>> = Vec::with_capacity(width + 1);
        // Field `i` of row `r` of the chunk at `i * CHUNK_ROWS + r`: a column is contiguous.
        let mut spans: Vec<Cow<'a, [u8]>> = vec![Cow::Borrowed(&[][..]); width * CHUNK_ROWS];
        let mut failures: Vec<Option<FieldFailure>> = Vec::with_capacity(CHUNK_ROWS);
        let mut failed: Vec<bool> = Vec::with_capacity(CHUNK_ROWS);
        let mut column_failures: Vec<(usize, FieldFailure)> = Vec::new();
        for (c, chunk) in messages.chunks(CHUNK_ROWS).enumerate() {
            failures.clear();
            failed.clear();
            for (r, message) in chunk.iter().enumerate() {
                self.csv.split(message.payload, &mut split);
                let failure = match split.len().cmp(&width) {
                    Ordering::Less => Some(FieldFailure::whole_row(reason::FEWER_COLUMNS)),
                    Ordering::Greater => Some(FieldFailure::whole_row(reason::MORE_COLUMNS)),
                    Ordering::Equal => {
                        for (i, field) in split.drain(..).enumerate() {
                            spans[i * CHUNK_ROWS + r] = field;
                        }
                        None
                    }
                };
                failed.push(failure.is_some());
                failures.push(failure);
            }
            // A field that fails makes its row fail from that field on: the later columns see
            // the row as failed and append NULL, as row-by-row conversion pads it.
            for (i, builder) in builders.iter_mut().enumerate() {
                let column = &spans[i * CHUNK_ROWS..][..chunk.len()];
                let texts = column
                    .iter()
                    .zip(&failed)
                    .map(|(text, &failed)| (!failed).then_some(text.as_ref()));
                builder.append_texts(texts, fields[i].nullable, |r, why| {
                    let failure = match why {
                        Rejected::Null => Some(self.null_failure(i)),
                        Rejected::Convert(err) => self.conversion_failure(i, &column[r], err),
                    };
                    if let Some(failure) = failure {
                        column_failures.push((r, failure));
                    }
                });
                for (r, failure) in column_failures.drain(..) {
                    failed[r] = true;
                    failures[r] = Some(failure);
                }
            }
            for (r, failure) in failures.drain(..).enumerate() {
                let m = c * CHUNK_ROWS + r;
                record_row(failure, &messages[m], errors, bad_rows);
                origins.push(RowOrigin { message: m as u32 });
            }
        }
    }
}
