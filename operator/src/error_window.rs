//! The job-wide error window (StarRocks FE `RoutineLoadJob.updateNumOfData`): error rows are
//! counted over the rows of the whole job, not of one task, in windows of `10 x maxBatchRows`
//! rows. The job pauses when a window holds more than `maxErrorNumber` error rows, or a larger
//! share of error rows than `maxFilterRatio`; a window that fills up without that starts a new
//! one. The operator computes it from the tasks' cumulative counters (committed batches only),
//! so it doesn't reset when a task restarts or moves; it restarts with each job generation
//! (a spec edit) and each resume. Pure.

use routine_load_api::job::{ERROR_WINDOW_FACTOR, ErrorWindowStart};

/// The job's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowLimits {
    pub max_error_number: i64,
    pub max_batch_rows: i64,
    pub max_filter_ratio: f64,
}

/// The window after this reconcile, and why it pauses the job (if it does).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowCheck {
    pub start: ErrorWindowStart,
    pub exceeded: Option<String>,
}

/// Pure: the window at the job's cumulative `(total_rows, error_rows)`. `running`: the job was
/// RUNNING or NEED_SCHEDULE (a job resuming starts a new window).
pub fn check(
    previous: Option<ErrorWindowStart>,
    running: bool,
    generation: i64,
    total_rows: i64,
    error_rows: i64,
    limits: WindowLimits,
) -> WindowCheck {
    let fresh = ErrorWindowStart {
        generation,
        total_rows,
        error_rows,
    };
    let start = match previous {
        Some(p)
            if running
                && p.generation == generation
                && p.total_rows <= total_rows
                && p.error_rows <= error_rows =>
        {
            p
        }
        _ => fresh,
    };
    let rows = total_rows - start.total_rows;
    let errors = error_rows - start.error_rows;
    let window = limits.max_batch_rows.saturating_mul(ERROR_WINDOW_FACTOR);
    let ratio = if rows > 0 {
        errors as f64 / rows as f64
    } else {
        0.0
    };
    if errors > limits.max_error_number || ratio > limits.max_filter_ratio {
        let why = if errors > limits.max_error_number {
            format!("more than maxErrorNumber {}", limits.max_error_number)
        } else {
            format!("a ratio above maxFilterRatio {}", limits.max_filter_ratio)
        };
        return WindowCheck {
            start,
            exceeded: Some(format!(
                "the job's error window is exceeded: {errors} error rows in {rows} rows of the \
                 job (all tasks) since its window began ({why}; a window is 10 x maxBatchRows \
                 = {window} rows, job generation {generation}); see errorLogUrls for the rows"
            )),
        };
    }
    if rows > window {
        return WindowCheck {
            start: fresh,
            exceeded: None,
        };
    }
    WindowCheck {
        start,
        exceeded: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: WindowLimits = WindowLimits {
        max_error_number: 5,
        max_batch_rows: 200_000,
        max_filter_ratio: 1.0,
    };

    fn start(generation: i64, total_rows: i64, error_rows: i64) -> Option<ErrorWindowStart> {
        Some(ErrorWindowStart {
            generation,
            total_rows,
            error_rows,
        })
    }

    #[test]
    fn windows_count_the_whole_job() {
        // name, previous start, running, generation, (job total rows, job error rows), limits,
        // expected (start, exceeded)
        type Case = (
            &'static str,
            Option<ErrorWindowStart>,
            bool,
            i64,
            (i64, i64),
            WindowLimits,
            (Option<ErrorWindowStart>, bool),
        );
        let cases: Vec<Case> = vec![
            (
                "first look: the window starts at the job's counters",
                None,
                true,
                1,
                (100, 2),
                LIMITS,
                (start(1, 100, 2), false),
            ),
            (
                "3 tasks x 3 error rows = 9 > 5: exceeded (per task it would be 3 <= 5)",
                start(1, 0, 0),
                true,
                1,
                (3_000, 9),
                LIMITS,
                (start(1, 0, 0), true),
            ),
            (
                "3 tasks x 1 error row = 3 <= 5: fine",
                start(1, 0, 0),
                true,
                1,
                (3_000, 3),
                LIMITS,
                (start(1, 0, 0), false),
            ),
            (
                "exactly maxErrorNumber is allowed",
                start(1, 0, 0),
                true,
                1,
                (3_000, 5),
                LIMITS,
                (start(1, 0, 0), false),
            ),
            (
                "a full window (more than 10 x maxBatchRows) without too many errors starts anew",
                start(1, 0, 0),
                true,
                1,
                (2_000_001, 4),
                LIMITS,
                (start(1, 2_000_001, 4), false),
            ),
            (
                "only errors since the window began count",
                start(1, 2_000_001, 4),
                true,
                1,
                (2_100_000, 9),
                LIMITS,
                (start(1, 2_000_001, 4), false),
            ),
            (
                "rows of an older generation don't count after an edit",
                start(1, 0, 0),
                true,
                2,
                (3_000, 9),
                LIMITS,
                (start(2, 3_000, 9), false),
            ),
            (
                "a resumed job starts a new window",
                start(1, 0, 0),
                false,
                1,
                (3_000, 9),
                LIMITS,
                (start(1, 3_000, 9), false),
            ),
            (
                "counters that went back (a task lost) restart the window",
                start(1, 5_000, 3),
                true,
                1,
                (4_000, 9),
                LIMITS,
                (start(1, 4_000, 9), false),
            ),
            (
                "maxFilterRatio: 20 errors in 100 rows > 0.1",
                start(1, 0, 0),
                true,
                1,
                (100, 20),
                WindowLimits {
                    max_error_number: 1_000,
                    max_filter_ratio: 0.1,
                    ..LIMITS
                },
                (start(1, 0, 0), true),
            ),
            (
                "maxFilterRatio: 5 errors in 100 rows <= 0.1",
                start(1, 0, 0),
                true,
                1,
                (100, 5),
                WindowLimits {
                    max_error_number: 1_000,
                    max_filter_ratio: 0.1,
                    ..LIMITS
                },
                (start(1, 0, 0), false),
            ),
        ];
        for (name, previous, running, generation, (total, errors), limits, (want, exceeded)) in
            cases
        {
            let got = check(previous, running, generation, total, errors, limits);
            assert_eq!(Some(got.start), want, "{name}");
            assert_eq!(
                got.exceeded.is_some(),
                exceeded,
                "{name}: {:?}",
                got.exceeded
            );
        }
        let msg = check(start(1, 0, 0), true, 1, 3_000, 9, LIMITS)
            .exceeded
            .expect("exceeded");
        assert!(
            msg.contains("9 error rows in 3000 rows") && msg.contains("maxErrorNumber 5"),
            "{msg}"
        );
    }
}
