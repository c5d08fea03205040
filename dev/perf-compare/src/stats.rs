//! Small statistics for the report.

use std::time::Duration;

/// The `q` quantile (0.0..=1.0, nearest rank) of `samples`; zero when empty.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of `samples`.
pub fn median(samples: &[Duration]) -> Duration {
    quantile(samples, 0.5)
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// `ours / peer`, as text with the direction spelled out.
pub fn ratio(ours: f64, peer: f64) -> String {
    if peer == 0.0 && ours == 0.0 {
        "equal (both 0)".to_owned()
    } else if peer == 0.0 {
        "∞ (peer 0)".to_owned()
    } else {
        let r = ours / peer;
        if r > 0.0 && r < 1.0 {
            format!("{r:.3} ({:.1}× less)", 1.0 / r)
        } else {
            format!("{r:.2}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&s, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&s, 0.95), Duration::from_millis(95));
        assert_eq!(quantile(&s, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
        assert_eq!(
            median(&[Duration::from_millis(7)]),
            Duration::from_millis(7)
        );
    }

    #[test]
    fn ratios_say_which_way() {
        assert_eq!(ratio(1.0, 4.0), "0.250 (4.0× less)");
        assert_eq!(ratio(2.0, 1.0), "2.00");
        assert_eq!(ratio(0.0, 0.0), "equal (both 0)");
        assert_eq!(ratio(0.0, 5.0), "0.00");
    }
}
