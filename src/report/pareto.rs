//! The Pareto front of a trade-off: the points no other point beats on both axes at once. The
//! one implementation every view uses (report charts, the TUI's front marks, the search's
//! front of candidates).

/// Indices of the points on the front of "lower `cost` is better, higher `value` is better",
/// ordered by cost (ties by index). A point is on the front when no other point has a cost at
/// most its own and a value at least its own with one of the two strictly better, so points
/// identical to a front point are on it too. Points with a non-finite coordinate never are.
pub fn front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (points[a], points[b]);
        pa.0.total_cmp(&pb.0)
            .then(pb.1.total_cmp(&pa.1))
            .then(a.cmp(&b))
    });
    let mut out: Vec<usize> = Vec::new();
    for i in order {
        let last = out.last().map(|&j| points[j]);
        let better = last.is_none_or(|l| points[i].1 > l.1);
        if better || last == Some(points[i]) {
            out.push(i);
        }
    }
    out
}

/// For each point, whether it is on [`front`].
pub fn on_front(points: &[(f64, f64)]) -> Vec<bool> {
    let mut on = vec![false; points.len()];
    for i in front(points) {
        on[i] = true;
    }
    on
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_points_nothing_beats_on_both_axes() {
        // (latency, accuracy)
        let pts = [
            (1.0, 0.90), // front: fastest
            (2.0, 0.95), // front
            (2.5, 0.94), // beaten by (2.0, 0.95)
            (3.0, 0.99), // front: most accurate
            (4.0, 0.99), // as accurate as (3.0, 0.99) but slower
            (f64::NAN, 1.0),
            (1.0, 0.90), // identical to the first: on the front too
        ];
        assert_eq!(front(&pts), vec![0, 6, 1, 3]);
        assert_eq!(
            on_front(&pts),
            vec![true, true, false, true, false, false, true]
        );
    }

    #[test]
    fn equal_cost_keeps_the_better_value() {
        assert_eq!(front(&[(1.0, 0.5), (1.0, 0.7)]), vec![1]);
        assert!(front(&[]).is_empty());
        assert!(on_front(&[]).is_empty());
    }
}
