//! A task's error window (StarRocks: at most `maxErrorNumber` error rows, and at most
//! `maxFilterRatio` of the rows, per window of 10 x `maxBatchRows` rows). Only committed
//! batches count; the batch that would pass a limit is not committed and pauses the job.

use routine_load_api::job::ERROR_WINDOW_FACTOR;

#[derive(Debug, Clone)]
pub struct ErrorWindow {
    size: u64,
    max_errors: u64,
    max_ratio: f64,
    rows: u64,
    errors: u64,
    first_error: Option<String>,
}

/// A batch would pass the window's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    /// StarRocks' words, with the rows and the first error.
    pub reason: String,
}

impl ErrorWindow {
    pub fn new(max_batch_rows: i64, max_error_number: i64, max_filter_ratio: f64) -> Self {
        Self {
            size: (max_batch_rows.max(1) as u64)
                .saturating_mul(ERROR_WINDOW_FACTOR as u64)
                .max(1),
            max_errors: max_error_number.max(0) as u64,
            max_ratio: max_filter_ratio,
            rows: 0,
            errors: 0,
            first_error: None,
        }
    }

    /// Checks a batch of `rows` rows with `errors` error rows against the window, without
    /// counting it. `first_error` describes the batch's first error row.
    pub fn check(&self, rows: u64, errors: u64, first_error: Option<&str>) -> Result<(), Exceeded> {
        let (mut w_rows, mut w_errors, mut first) =
            (self.rows, self.errors, self.first_error.as_deref());
        if w_rows >= self.size {
            (w_rows, w_errors, first) = (0, 0, None);
        }
        let w_rows = w_rows.saturating_add(rows);
        let w_errors = w_errors.saturating_add(errors);
        let first = first.or(first_error).unwrap_or_default();
        let ratio = if w_rows == 0 {
            0.0
        } else {
            w_errors as f64 / w_rows as f64
        };
        let why = if w_errors > self.max_errors {
            format!(
                "current error rows: {w_errors} is more than max error num: {}",
                self.max_errors
            )
        } else if self.max_ratio < 1.0 && ratio > self.max_ratio {
            format!(
                "error ratio {ratio:.4} ({w_errors} of {w_rows} rows) is more than max filter ratio: {}",
                self.max_ratio
            )
        } else {
            return Ok(());
        };
        Err(Exceeded {
            reason: format!("{why} in the last {w_rows} rows; first error: {first}"),
        })
    }

    /// Counts a committed batch.
    pub fn commit(&mut self, rows: u64, errors: u64, first_error: Option<&str>) {
        if self.rows >= self.size {
            self.rows = 0;
            self.errors = 0;
            self.first_error = None;
        }
        self.rows = self.rows.saturating_add(rows);
        self.errors = self.errors.saturating_add(errors);
        if self.first_error.is_none() {
            self.first_error = first_error.map(str::to_string);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_window() {
        // (maxErrorNumber, maxFilterRatio, committed batches (rows, errors), batch, ok)
        type Case = (&'static str, i64, f64, Vec<(u64, u64)>, (u64, u64), bool);
        let cases: Vec<Case> = vec![
            ("no errors allowed", 0, 1.0, vec![], (10, 1), false),
            ("clean batch", 0, 1.0, vec![], (10, 0), true),
            ("up to the max", 5, 1.0, vec![(100, 3)], (100, 2), true),
            ("past the max", 5, 1.0, vec![(100, 3)], (100, 3), false),
            // Window 10 x 200000 rows: a full window starts a new one.
            ("new window", 5, 1.0, vec![(2_000_000, 5)], (100, 5), true),
            ("ratio", 100, 0.1, vec![(100, 5)], (100, 20), false),
            ("ratio kept", 100, 0.2, vec![(100, 5)], (100, 20), true),
        ];
        for (name, max_err, ratio, committed, (rows, errors), ok) in cases {
            let mut w = ErrorWindow::new(200_000, max_err, ratio);
            for (r, e) in committed {
                w.commit(r, e, Some("first"));
            }
            let got = w.check(rows, errors, Some("this batch"));
            assert_eq!(got.is_ok(), ok, "{name}: {got:?}");
        }
    }

    #[test]
    fn reason_names_the_rows_and_the_first_error() {
        let mut w = ErrorWindow::new(200_000, 2, 1.0);
        w.commit(50, 2, Some("column count mismatch"));
        let e = w.check(10, 1, Some("later")).unwrap_err();
        assert_eq!(
            e.reason,
            "current error rows: 3 is more than max error num: 2 in the last 60 rows; first error: column count mismatch"
        );
    }

    #[test]
    fn no_overflow_at_the_crd_maximum() {
        let mut w = ErrorWindow::new(i64::MAX, i64::MAX, 1.0);
        w.commit(u64::MAX, 0, None);
        assert!(w.check(u64::MAX, 1, None).is_ok());
    }
}
