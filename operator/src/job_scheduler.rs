//! JobScheduler decisions (StarRocks FE): how many tasks a job runs and which Kafka partitions
//! each task loads. Pure functions; the controller applies their results.

use std::collections::BTreeSet;

/// Number of tasks for a job: `min(desiredConcurrentNumber, partitions, live workers, cap)`.
/// Zero when any of them is zero (nothing to load, or nowhere to run it).
pub fn task_count(
    desired_concurrent_number: i32,
    partitions: usize,
    live_workers: usize,
    operator_cap: usize,
) -> usize {
    let desired = usize::try_from(desired_concurrent_number).unwrap_or(0);
    desired.min(partitions).min(live_workers).min(operator_cap)
}

/// Splits `partitions` into `tasks` groups whose sizes differ by at most one, keeping each
/// partition in the group it had in `current` where balance allows, so a re-split moves as few
/// partitions as possible. Groups are returned sorted, each sorted.
pub fn split_partitions(partitions: &[i32], tasks: usize, current: &[Vec<i32>]) -> Vec<Vec<i32>> {
    if tasks == 0 {
        return Vec::new();
    }
    let wanted: BTreeSet<i32> = partitions.iter().copied().collect();
    let n = wanted.len();
    // Group g may hold `base + 1` partitions if g < extra, else `base`.
    let (base, extra) = (n / tasks, n % tasks);
    let capacity = |g: usize| base + usize::from(g < extra);

    // Keep the largest current groups first, so the ones that stay are the ones that hold most.
    let mut kept: Vec<Vec<i32>> = current
        .iter()
        .map(|g| {
            let mut g: Vec<i32> = g.iter().copied().filter(|p| wanted.contains(p)).collect();
            g.sort_unstable();
            g.dedup();
            g
        })
        .filter(|g| !g.is_empty())
        .collect();
    kept.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    kept.truncate(tasks);

    let mut groups: Vec<Vec<i32>> = vec![Vec::new(); tasks];
    let mut placed: BTreeSet<i32> = BTreeSet::new();
    for (g, old) in kept.iter().enumerate() {
        for &p in old.iter().take(capacity(g)) {
            if placed.insert(p) {
                groups[g].push(p);
            }
        }
    }
    let mut unplaced = wanted.iter().copied().filter(|p| !placed.contains(p));
    for (g, group) in groups.iter_mut().enumerate() {
        while group.len() < capacity(g) {
            match unplaced.next() {
                Some(p) => group.push(p),
                None => break,
            }
        }
        group.sort_unstable();
    }
    groups.retain(|g| !g.is_empty());
    groups.sort();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_count_is_the_minimum_of_its_limits() {
        let cases = [
            // desired, partitions, workers, cap, expected
            (3, 10, 5, 100, 3),
            (3, 2, 5, 100, 2),
            (3, 10, 1, 100, 1),
            (5, 10, 5, 4, 4),
            (1, 0, 5, 100, 0),
            (3, 10, 0, 100, 0),
            (0, 10, 5, 100, 0),
            (-1, 10, 5, 100, 0),
        ];
        for (desired, partitions, workers, cap, expected) in cases {
            assert_eq!(
                task_count(desired, partitions, workers, cap),
                expected,
                "desired={desired} partitions={partitions} workers={workers} cap={cap}"
            );
        }
    }

    #[test]
    fn splits_are_balanced_and_cover_every_partition_once() {
        // partitions, tasks, expected groups
        type Case<'a> = (&'a [i32], usize, &'a [&'a [i32]]);
        let cases: &[Case] = &[
            (&[0, 1, 2, 3, 4, 5], 3, &[&[0, 1], &[2, 3], &[4, 5]]),
            (&[0, 1, 2, 3, 4], 2, &[&[0, 1, 2], &[3, 4]]),
            (&[0], 3, &[&[0]]),
            (&[], 2, &[]),
            (&[5, 1, 3], 1, &[&[1, 3, 5]]),
        ];
        for (partitions, tasks, expected) in cases {
            let split = split_partitions(partitions, *tasks, &[]);
            let expected: Vec<Vec<i32>> = expected.iter().map(|g| g.to_vec()).collect();
            assert_eq!(split, expected, "{partitions:?} into {tasks}");
        }
    }

    #[test]
    fn resplit_keeps_partitions_where_they_are() {
        // A partition added to the topic goes to the smallest group; nothing else moves.
        let current = vec![vec![0, 1], vec![2, 3]];
        let split = split_partitions(&[0, 1, 2, 3, 4], 2, &current);
        assert_eq!(split, vec![vec![0, 1, 4], vec![2, 3]]);

        // Concurrency 2 -> 3 takes one partition from each full group.
        let split = split_partitions(&[0, 1, 2, 3, 4, 5], 3, &[vec![0, 1, 2], vec![3, 4, 5]]);
        let total: usize = split.iter().map(Vec::len).sum();
        assert_eq!(total, 6);
        assert!(split.iter().all(|g| g.len() == 2), "{split:?}");
        assert!(
            split.contains(&vec![0, 1]) && split.contains(&vec![3, 4]),
            "{split:?}"
        );

        // Concurrency 3 -> 1 merges all.
        let split = split_partitions(&[0, 1, 2], 1, &[vec![0], vec![1], vec![2]]);
        assert_eq!(split, vec![vec![0, 1, 2]]);

        // A partition removed from the subscription disappears.
        let split = split_partitions(&[0, 1], 2, &[vec![0, 2], vec![1]]);
        assert_eq!(split, vec![vec![0], vec![1]]);
    }
}
