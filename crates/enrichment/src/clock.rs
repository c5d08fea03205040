//! UTC time for feed positions, behind a seam so tests can move it.

use chrono::{DateTime, Utc};

/// The source of the UTC time that positions the feed listing.
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
