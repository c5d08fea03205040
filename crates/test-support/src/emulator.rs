//! Finding or starting the emulator.

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The emulator the tests talk to.
#[derive(Debug, Clone)]
pub struct Emulator {
    /// Its endpoint, e.g. `http://127.0.0.1:5000`.
    pub endpoint: String,
}

/// The emulator for this test process: `AWS_ENDPOINT_URL` if set, else a moto server started
/// on a free loopback port (the `MOTO_SERVER` variable names the executable, default
/// `moto_server` on the PATH). It is stopped when the test process exits.
///
/// # Panics
/// If no emulator is configured and none can be started: tests that need one cannot run.
pub fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| match std::env::var("AWS_ENDPOINT_URL") {
        Ok(endpoint) if !endpoint.is_empty() => Emulator { endpoint },
        _ => start_moto(),
    })
}

fn start_moto() -> Emulator {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port for the emulator");
    let exe = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_owned());
    // A watchdog shell stops the server once this test process is gone, so a plain `cargo test`
    // leaves nothing running.
    let script = format!(
        "\"{exe}\" -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 1; done; kill $m 2>/dev/null",
        parent = std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the emulator ({exe}): {e}; install it with `pip install -r tests/requirements.txt` or set AWS_ENDPOINT_URL"));
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the emulator ({exe}) did not listen on 127.0.0.1:{port} within 60 s; is moto[server] installed (tests/requirements.txt)?"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Emulator {
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

/// SDK configuration for the emulator: its endpoint, region `us-east-1`, dummy credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&emulator().endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "test-support",
        ))
        .load()
        .await
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
