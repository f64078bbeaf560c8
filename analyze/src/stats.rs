//! Latency distributions and the significance test used to flag regressions.
//!
//! Distributions are HdrHistograms (memory independent of the number of samples). Two
//! distributions are compared with the Mann-Whitney U test computed directly on the
//! histograms' buckets (ties get average ranks, with the tie correction in the variance), using
//! the normal approximation — fine for the sample sizes (≥ 30 by default) where we flag at all.

use hdrhistogram::Histogram;
use serde::Serialize;

/// 1 µs .. 1 hour at 2 significant digits: a few KiB per histogram.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, 3_600_000_000));
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// The candidate's figure over the baseline's (`b / a`); none when the baseline's is 0.
pub(crate) fn ratio(a: u64, b: u64) -> Option<f64> {
    (a > 0).then(|| b as f64 / a as f64)
}

/// Mann-Whitney U test of `a` against `b`: (z, two-sided p). z > 0 when `a` tends larger.
pub fn mann_whitney(a: &Histogram<u64>, b: &Histogram<u64>) -> Option<(f64, f64)> {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if n1 == 0.0 || n2 == 0.0 {
        return None;
    }
    // Merge the two bucket lists by value.
    let mut ia = a
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .peekable();
    let mut ib = b
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .peekable();
    let mut rank = 0.0f64;
    let mut ra = 0.0f64;
    let mut ties = 0.0f64;
    loop {
        let (va, vb) = (ia.peek().map(|x| x.0), ib.peek().map(|x| x.0));
        let v = match (va, vb) {
            (None, None) => break,
            (Some(x), None) => x,
            (None, Some(y)) => y,
            (Some(x), Some(y)) => x.min(y),
        };
        let ca = if va == Some(v) {
            ia.next().map_or(0, |x| x.1)
        } else {
            0
        } as f64;
        let cb = if vb == Some(v) {
            ib.next().map_or(0, |x| x.1)
        } else {
            0
        } as f64;
        let t = ca + cb;
        let avg = rank + (t + 1.0) / 2.0;
        ra += ca * avg;
        ties += t * t * t - t;
        rank += t;
    }
    let u = ra - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let mu = n1 * n2 / 2.0;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)).max(1.0));
    if var <= 0.0 {
        return Some((0.0, 1.0));
    }
    let z = (u - mu) / var.sqrt();
    Some((z, erfc(z.abs() / std::f64::consts::SQRT_2)))
}

/// Complementary error function (Numerical Recipes' erfcc, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = new_histogram();
        for v in values {
            record(&mut h, v);
        }
        h
    }

    #[test]
    fn erfc_known_values() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-6);
        assert!((erfc(1.0) - 0.157_299_2).abs() < 1e-6);
        assert!((erfc(-1.0) - 1.842_700_8).abs() < 1e-6);
    }

    #[test]
    fn same_distribution_is_not_significant() {
        let a = hist((0..500).map(|i| 100 + (i * 7919) % 50));
        let b = hist((0..500).map(|i| 100 + (i * 104_729) % 50));
        let (_, p) = mann_whitney(&a, &b).unwrap();
        assert!(p > 0.05, "p = {p}");
    }

    #[test]
    fn shifted_distribution_is_significant_and_signed() {
        let a = hist((0..200).map(|i| 150 + i % 40));
        let b = hist((0..200).map(|i| 100 + i % 40));
        let (z, p) = mann_whitney(&a, &b).unwrap();
        assert!(p < 1e-6 && z > 0.0, "z {z} p {p}");
        let (z2, _) = mann_whitney(&b, &a).unwrap();
        assert!(z2 < 0.0);
    }

    #[test]
    fn percentiles() {
        let p = Percentiles::of(&hist(1..=100));
        assert_eq!(p.count, 100);
        assert!((49..=51).contains(&p.p50_us));
        assert!((98..=100).contains(&p.p99_us));
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }
}
