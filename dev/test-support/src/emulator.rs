//! The emulator shared by the tests of one process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use local_emulator::LocalEmulator;

/// The emulator for this test process (see [`LocalEmulator::connect_or_start`]); it lives until
/// the process exits.
///
/// # Panics
/// If no emulator is configured and none can be started: tests that need one cannot run.
pub fn emulator() -> &'static LocalEmulator {
    static EMULATOR: OnceLock<LocalEmulator> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        LocalEmulator::connect_or_start()
            .unwrap_or_else(|e| panic!("no emulator for the tests: {e}"))
    })
}

/// SDK configuration for the shared emulator.
pub async fn sdk_config() -> aws_config::SdkConfig {
    emulator().sdk_config().await
}

/// A name no other test in this run uses: `<prefix>-<time>-<counter>`, lowercase, valid for
/// buckets, tables and streams.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    format!(
        "{prefix}-{nanos}-{}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
