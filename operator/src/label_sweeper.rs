//! Frees the labels of old finished imports (StarRocks `label_keep_max_second`): a `Load` that
//! ended (FINISHED or CANCELLED) longer than the keep time ago is deleted, so its label can be
//! used again. An unfinished `Load` is never deleted here: the worker that takes its label next
//! resolves it from the table.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use routine_load_api::Load;
use tracing::{info, warn};

use crate::job_controller::Context;

/// StarRocks' default `label_keep_max_second`: 3 days.
pub const DEFAULT_LABEL_KEEP: Duration = Duration::from_secs(3 * 24 * 3600);

/// Loads listed per request.
const PAGE: u32 = 500;

/// How often the sweep runs for a keep time: half of it, between 1 s and 5 minutes (a label
/// is freed at most that long after its keep time).
pub fn sweep_period(keep: Duration) -> Duration {
    (keep / 2).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

/// Pure: whether a `Load` is past its keep time at `now`. Only an ended import expires, counted
/// from when it ended (`loadFinishTime`; without one, from the object's creation).
pub fn expired(load: &Load, now: Timestamp, keep: Duration) -> bool {
    let Some(status) = &load.status else {
        return false;
    };
    if !status.state.is_final() {
        return false;
    }
    let Some(since) = status
        .load_finish_time
        .as_ref()
        .or(load.metadata.creation_timestamp.as_ref())
    else {
        return false;
    };
    now.duration_since(since.0).as_secs_f64() > keep.as_secs_f64()
}

/// Runs the sweep while this replica leads.
pub async fn run(ctx: Arc<Context>, keep: Duration) {
    let period = sweep_period(keep);
    info!(
        keep_seconds = keep.as_secs(),
        period_seconds = period.as_secs(),
        "deleting ended Loads past the label keep time"
    );
    loop {
        tokio::time::sleep(period).await;
        if !ctx.gate.holds() {
            continue;
        }
        if let Err(e) = sweep(&ctx, keep).await {
            warn!(error = %e, "sweeping expired Loads (labels past ROUTINE_LOAD_LABEL_KEEP_MAX_SECONDS)");
        }
    }
}

/// One sweep over the Loads of the watched namespace(s), a page at a time.
async fn sweep(ctx: &Context, keep: Duration) -> Result<(), kube::Error> {
    let all: Api<Load> = ctx.config.api(&ctx.client);
    let mut lp = ListParams::default().limit(PAGE);
    loop {
        let page = all.list(&lp).await?;
        let now = Timestamp::now();
        for load in page.items.iter().filter(|l| expired(l, now, keep)) {
            if !ctx.gate.holds() {
                return Ok(());
            }
            delete(ctx, load).await;
        }
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => return Ok(()),
        }
    }
}

/// Deletes exactly the Load that was judged: a Load taken again under the label since (another
/// UID) or changed since (another resourceVersion) is left alone.
async fn delete(ctx: &Context, load: &Load) {
    let ns = load.namespace().unwrap_or_default();
    let label = load.name_any();
    let api: Api<Load> = Api::namespaced(ctx.client.clone(), &ns);
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: load.uid(),
            resource_version: load.resource_version(),
        }),
        ..Default::default()
    };
    let state = load.status.as_ref().map(|s| s.state.as_str()).unwrap_or("");
    match api.delete(&label, &dp).await {
        Ok(_) => {
            info!(namespace = %ns, label = %label, state, "deleted a Load past the label keep time; its label is free")
        }
        // Gone already, or changed since it was listed (judged again next sweep).
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => {
            warn!(namespace = %ns, label = %label, error = %e, "deleting a Load past the label keep time")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use routine_load_api::load::{LoadSpec, LoadState, LoadStatus, LoadType};

    const KEEP: Duration = Duration::from_secs(100);

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    /// A Load created at `created`, in `state` (`None`: no status yet), ended at `finished`.
    fn load(created: i64, state: Option<LoadState>, finished: Option<i64>) -> Load {
        let mut l = Load::new(
            "l",
            LoadSpec {
                table: "t".into(),
                load_type: LoadType::StreamLoad,
                timeout_seconds: None,
            },
        );
        l.metadata.creation_timestamp = Some(Time(at(created)));
        l.status = state.map(|state| LoadStatus {
            state,
            load_finish_time: finished.map(|f| Time(at(f))),
            ..Default::default()
        });
        l
    }

    #[test]
    fn only_ended_loads_past_the_keep_time_expire() {
        use LoadState::*;
        let now = at(1000);
        // (case, load, expired at `now` with a keep time of 100 s)
        let cases = [
            ("no status yet", load(0, None, None), false),
            ("prepare, long ago", load(0, Some(Prepare), None), false),
            ("loading, long ago", load(0, Some(Loading), None), false),
            (
                "loading with a finish time",
                load(0, Some(Loading), Some(0)),
                false,
            ),
            (
                "finished past keep",
                load(0, Some(Finished), Some(800)),
                true,
            ),
            (
                "finished within keep",
                load(0, Some(Finished), Some(950)),
                false,
            ),
            (
                "finished exactly keep ago",
                load(0, Some(Finished), Some(900)),
                false,
            ),
            (
                "cancelled past keep",
                load(0, Some(Cancelled), Some(850)),
                true,
            ),
            (
                "cancelled within keep",
                load(0, Some(Cancelled), Some(990)),
                false,
            ),
            (
                "created long ago, finished recently: finish time counts",
                load(0, Some(Finished), Some(990)),
                false,
            ),
            (
                "no finish time: creation past keep",
                load(800, Some(Finished), None),
                true,
            ),
            (
                "no finish time: creation within keep",
                load(950, Some(Cancelled), None),
                false,
            ),
            (
                "finish time in the future (clock skew)",
                load(0, Some(Finished), Some(2000)),
                false,
            ),
        ];
        for (case, l, want) in cases {
            assert_eq!(expired(&l, now, KEEP), want, "{case}");
        }
        let mut no_times = load(0, Some(Finished), None);
        no_times.metadata.creation_timestamp = None;
        assert!(!expired(&no_times, now, KEEP), "no time at all: kept");
    }

    #[test]
    fn the_sweep_runs_every_half_keep_time_within_bounds() {
        let s = Duration::from_secs;
        for (keep, period) in [
            (s(0), s(1)),
            (s(1), s(1)),
            (s(10), s(5)),
            (s(600), s(300)),
            (DEFAULT_LABEL_KEEP, s(300)),
        ] {
            assert_eq!(sweep_period(keep), period, "keep {keep:?}");
        }
    }
}
