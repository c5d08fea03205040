//! Wall-clock UTC time, behind a seam so tests can move it.

use chrono::{DateTime, Utc};

/// The source of the UTC time: it names change files (producers) and positions the feed
/// listing (consumers). Tests pass clocks they control.
pub trait Clock: Send + Sync + 'static {
    /// The current UTC time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_the_time_now() {
        let before = Utc::now();
        let now = SystemClock.now();
        assert!(before <= now && now <= Utc::now());
    }
}
