//! Wall-clock UTC time, behind a seam so tests can move it.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// The source of the UTC time: it names change files (producers) and positions the feed
/// listing (consumers). Tests pass clocks they control.
pub trait Clock: Send + Sync + 'static {
    /// The current UTC time.
    fn now(&self) -> DateTime<Utc>;

    /// This clock as a [`SharedClock`] (a shared clock is not wrapped again).
    fn shared(self) -> SharedClock
    where
        Self: Sized,
    {
        SharedClock::new(self)
    }
}

/// Any [`Clock`], shared: one type whatever the clock, cheap to clone. Everything that takes
/// "now" holds one, so a test's clock or an [`OffsetClock`] replaces the system clock without a
/// type parameter on every type that reads it (nothing on a hot path reads the clock).
#[derive(Clone)]
pub struct SharedClock(Arc<dyn Clock>);

impl SharedClock {
    /// Shares `clock`.
    pub fn new(clock: impl Clock) -> SharedClock {
        SharedClock(Arc::new(clock))
    }
}

impl Default for SharedClock {
    /// The system clock.
    fn default() -> Self {
        SharedClock::new(SystemClock)
    }
}

impl fmt::Debug for SharedClock {
    /// Does not read the clock (a test's clock may move when read).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedClock")
    }
}

impl Clock for SharedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }

    fn shared(self) -> SharedClock {
        self
    }
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock corrected by a fixed offset: S3's time, measured once (see
/// [`OffsetClock::measure`]). Outside AWS a machine's clock may lag S3's by more than the
/// consumers' margin; a change file named from such a clock would sort below the consumers'
/// look-back and never be listed. So a writer that runs outside AWS (the redrive command on an
/// operator's machine) takes "now" from S3's `Date` header, as the design notes require.
#[derive(Clone, Copy, Debug, Default)]
pub struct OffsetClock {
    offset: chrono::Duration,
}

impl OffsetClock {
    /// The system clock plus `offset`.
    pub fn new(offset: chrono::Duration) -> Self {
        OffsetClock { offset }
    }

    /// What is added to the system clock.
    pub fn offset(&self) -> chrono::Duration {
        self.offset
    }

    /// Measures S3's clock against this machine's with one HEAD of a key that does not exist
    /// (`probe_key` in `bucket`; the 404's `Date` header is S3's time, whole seconds). An
    /// offset within a second (the header's resolution) is taken as none.
    ///
    /// # Errors
    /// [`MeasureError`] when the response has no parseable `Date` header (e.g. the bucket is
    /// unreachable: the SDK's error is then its source).
    pub async fn measure(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        probe_key: &str,
    ) -> Result<OffsetClock, MeasureError> {
        let before = Utc::now();
        let result = s3.head_object().bucket(bucket).key(probe_key).send().await;
        let after = Utc::now();
        let (date, failure) = match result {
            Ok(_) => (None, None),
            Err(e) => (
                e.raw_response()
                    .and_then(|r| r.headers().get("date"))
                    .map(str::to_owned),
                Some(e),
            ),
        };
        let Some(date) = date else {
            return Err(MeasureError::NoDate {
                bucket: bucket.to_owned(),
                key: probe_key.to_owned(),
                source: failure.map(Box::new),
            });
        };
        let server = DateTime::parse_from_rfc2822(&date)
            .map_err(|source| MeasureError::NotADate {
                date: date.clone(),
                source,
            })?
            .with_timezone(&Utc);
        Ok(OffsetClock::new(offset_from(server, before, after)))
    }
}

/// Why [`OffsetClock::measure`] could not measure S3's clock.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// The HEAD's answer had no `Date` header: the request failed before S3 answered (its
    /// error is the source), or it succeeded (the probe key exists; no error to read it from).
    #[error("no Date header from s3://{bucket}/{key} to measure S3's clock by")]
    NoDate {
        /// The bucket probed.
        bucket: String,
        /// The key probed.
        key: String,
        /// The failed HEAD, if it failed.
        #[source]
        source: Option<Box<HeadObjectFailure>>,
    },
    /// The `Date` header is not an RFC 2822 date.
    #[error("S3's Date header {date:?} is not a date: {source}")]
    NotADate {
        /// The header's value.
        date: String,
        /// Why it does not parse.
        #[source]
        source: chrono::ParseError,
    },
}

/// The SDK's error for a failed HeadObject.
type HeadObjectFailure =
    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::head_object::HeadObjectError>;

/// The offset of a server whose `Date` (whole seconds, so up to 1 s behind its clock) was
/// answered between `before` and `after` on this clock; none when within a second.
fn offset_from(
    server: DateTime<Utc>,
    before: DateTime<Utc>,
    after: DateTime<Utc>,
) -> chrono::Duration {
    let local = before + (after - before) / 2;
    let offset = server + chrono::Duration::milliseconds(500) - local;
    if offset.num_milliseconds().abs() <= 1000 {
        chrono::Duration::zero()
    } else {
        offset
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_clock_is_the_system_clock_moved() {
        let clock = OffsetClock::new(chrono::Duration::seconds(-30));
        let before = Utc::now();
        let shifted = clock.now();
        let after = Utc::now();
        let back = chrono::Duration::seconds(30);
        assert!(before - back <= shifted && shifted <= after - back);
    }

    #[test]
    fn the_offset_is_the_servers_lead_or_lag_beyond_the_headers_second() {
        let t = |s: &str| DateTime::parse_from_rfc2822(s).unwrap().with_timezone(&Utc);
        let local = t("Tue, 01 Dec 2026 16:10:00 GMT");
        let later = local + chrono::Duration::milliseconds(40);
        // This machine lags 40 s: the offset moves it forward.
        let lead = offset_from(t("Tue, 01 Dec 2026 16:10:40 GMT"), local, later);
        assert_eq!(lead.num_seconds(), 40);
        let lag = offset_from(t("Tue, 01 Dec 2026 16:09:30 GMT"), local, later);
        assert_eq!(lag.num_seconds(), -29);
        // The same second: no offset.
        assert_eq!(offset_from(local, local, later), chrono::Duration::zero());
    }

    #[test]
    fn the_system_clock_reads_the_time_now() {
        let before = Utc::now();
        let now = SystemClock.now();
        assert!(before <= now && now <= Utc::now());
    }
}
