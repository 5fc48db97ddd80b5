//! A streaming histogram of activation values on a range symmetric around 0, as ORT's
//! `HistogramCollector.collect_value` keeps it: the first batch sets the threshold
//! `t = max |x|` and bins `[-t, t]` into `num_bins` equal bins; a later batch with a larger
//! `|x|` grows the range by whole bins on both sides (old counts keep their bins). Unlike ORT,
//! the bin count is bounded: once it passes `2 · num_bins`, neighbouring bins are merged in pairs
//! (the range is first widened by one bin per side when needed so the pairs stay symmetric).

/// Histogram state: counts, half-width, and the extreme values seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    counts: Vec<u64>,
    threshold: f32,
    min: f32,
    max: f32,
    num_bins: usize,
}

impl Histogram {
    /// An empty histogram that starts with `num_bins` bins (even, at least 2).
    pub fn new(num_bins: usize) -> Histogram {
        Histogram {
            counts: Vec::new(),
            threshold: 0.0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            num_bins: num_bins.max(2).next_multiple_of(2),
        }
    }

    /// Adds a batch of finite values (the caller checks finiteness).
    pub fn observe(&mut self, values: &[f32]) {
        if values.is_empty() {
            return;
        }
        let (lo, hi) = values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let t = lo.abs().max(hi.abs());
        if self.counts.is_empty() {
            self.counts = vec![0; self.num_bins];
            self.threshold = t;
        } else if t > self.threshold {
            self.grow(t);
        }
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        let (first, last) = self.span();
        let n = self.counts.len();
        let norm = n as f64 / (last - first);
        for &v in values {
            let x = f64::from(v);
            if x < first || x > last {
                continue;
            }
            let i = (((x - first) * norm) as usize).min(n - 1);
            self.counts[i] += 1;
        }
    }

    /// Widens the range to at least `t`, by whole bins of the current width.
    fn grow(&mut self, t: f32) {
        let n = self.counts.len();
        if self.threshold == 0.0 {
            // ORT rebins the new batch on [-t, t] and adds the old counts bin for bin.
            self.threshold = t;
            return;
        }
        let stride = 2.0 * f64::from(self.threshold) / n as f64;
        let half = ((f64::from(t) - f64::from(self.threshold)) / stride).floor() as usize + 1;
        let mut counts = vec![0u64; n + 2 * half];
        counts[half..half + n].copy_from_slice(&self.counts);
        self.counts = counts;
        self.threshold = (half as f64 * stride + f64::from(self.threshold)) as f32;
        while self.counts.len() > 2 * self.num_bins {
            self.halve();
        }
    }

    /// Merges bins in pairs, padding one empty bin per side first when half the count is odd.
    fn halve(&mut self) {
        let n = self.counts.len();
        if (n / 2) % 2 == 1 {
            let stride = 2.0 * f64::from(self.threshold) / n as f64;
            let mut padded = vec![0u64; n + 2];
            padded[1..=n].copy_from_slice(&self.counts);
            self.counts = padded;
            self.threshold = (f64::from(self.threshold) + stride) as f32;
        }
        self.counts = self.counts.chunks(2).map(|p| p.iter().sum()).collect();
    }

    /// The binned interval: `[-t, t]`, or `[-0.5, 0.5]` when `t` is 0 (numpy's rule).
    fn span(&self) -> (f64, f64) {
        if self.threshold == 0.0 {
            (-0.5, 0.5)
        } else {
            (-f64::from(self.threshold), f64::from(self.threshold))
        }
    }

    /// Bin counts, lowest bin first.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Bin edge `i` of `counts().len() + 1`.
    pub fn edge(&self, i: usize) -> f32 {
        let (first, last) = self.span();
        (first + (last - first) * i as f64 / self.counts.len() as f64) as f32
    }

    /// Centre of bin `i`.
    pub fn center(&self, i: usize) -> f64 {
        let (first, last) = self.span();
        first + (last - first) * (i as f64 + 0.5) / self.counts.len() as f64
    }

    /// Smallest and largest value seen (`None` before any).
    pub fn min_max(&self) -> Option<(f32, f32)> {
        (!self.counts.is_empty()).then_some((self.min, self.max))
    }

    /// Total count.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_batch_bins_symmetric_range() {
        let mut h = Histogram::new(4);
        h.observe(&[-2.0, -0.5, 0.5, 1.0, 2.0]);
        assert_eq!(h.counts(), &[1, 1, 1, 2]);
        assert_eq!((h.edge(0), h.edge(4)), (-2.0, 2.0));
        assert_eq!(h.min_max(), Some((-2.0, 2.0)));
    }

    #[test]
    fn growth_adds_whole_bins_like_ort_merge_histogram() {
        let mut h = Histogram::new(4);
        h.observe(&[-2.0, 2.0]); // stride 1
        h.observe(&[3.5]); // half = floor(1.5) + 1 = 2 -> 8 bins on [-4, 4]
        assert_eq!(h.counts(), &[0, 0, 1, 0, 0, 1, 0, 1]);
        assert_eq!(h.edge(8), 4.0);
    }

    #[test]
    fn growth_past_twice_the_bins_halves_resolution_symmetrically() {
        let mut h = Histogram::new(4);
        h.observe(&[-2.0, 2.0]); // [-2, 2], 4 bins
        h.observe(&[9.5]); // half = 8 -> 20 bins on [-10, 10]; halved to 10, padded to 12, halved to 6
        let n = h.counts().len();
        assert!(n <= 8 && n.is_multiple_of(2), "{n}");
        assert_eq!(h.total(), 3);
        assert_eq!(h.edge(0), -h.edge(n));
        // The value 2.0 sits in a positive bin, -2.0 in the mirrored negative one.
        let pos = (0..n).find(|&i| h.counts()[i] > 0).unwrap();
        assert!(h.center(pos) < 0.0);
        assert!(h.edge(n) >= 9.5);
    }
}
