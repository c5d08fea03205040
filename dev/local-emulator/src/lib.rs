//! The local AWS emulator: moto's server mode on loopback.
//!
//! The local pipeline and the integration tests talk to the emulator through the real AWS SDK.
//! [`LocalEmulator::connect_or_start`] uses `AWS_ENDPOINT_URL` when it is set (the test command
//! starts one emulator for a whole run and sets it); otherwise it starts `moto_server` on a free
//! loopback port and stops it when dropped, or when this process exits.
//!
//! The executable is `$MOTO_SERVER`, else the repository's `.venv/bin/moto_server` (made by
//! `scripts/setup`), else `moto_server` on the PATH.
//!
//! [`provision`] creates in the emulator what `infra/template.yaml` declares. It is the
//! workspace's one provisioning code: the local pipeline's demo and the tests (through
//! `test-support`) both use it, and this crate's `tests/template.rs` checks it against the
//! template. It lives here rather than in `local-pipeline` because nothing depends on the local
//! pipeline (design notes, section 9).

pub mod provision;

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one SDK attempt against the emulator may go unanswered before it is retried.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the emulator cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The executable could not be started.
    #[error("cannot start the emulator {exe:?}: {source}; run scripts/setup (installs moto[server]) or set AWS_ENDPOINT_URL")]
    Spawn {
        /// What was run.
        exe: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// It started but did not listen in time.
    #[error("the emulator {exe:?} did not listen on 127.0.0.1:{port} within {secs} s")]
    NotListening {
        /// What was run.
        exe: String,
        /// The port it was given.
        port: u16,
        /// How long we waited.
        secs: u64,
    },
    /// No free port.
    #[error("no free loopback port: {0}")]
    NoPort(#[source] std::io::Error),
}

/// A running (or already configured) emulator.
#[derive(Debug)]
pub struct LocalEmulator {
    endpoint: String,
    child: Option<Child>,
}

impl LocalEmulator {
    /// Uses `AWS_ENDPOINT_URL` if set and non-empty, else starts a private emulator.
    pub fn connect_or_start() -> Result<LocalEmulator, EmulatorError> {
        match std::env::var("AWS_ENDPOINT_URL") {
            Ok(endpoint) if !endpoint.trim().is_empty() => Ok(LocalEmulator {
                endpoint,
                child: None,
            }),
            _ => LocalEmulator::start(),
        }
    }

    /// Starts `moto_server` on a free loopback port and waits until it listens.
    pub fn start() -> Result<LocalEmulator, EmulatorError> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(EmulatorError::NoPort)?
            .port();
        let exe = moto_executable();
        let mut child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // Its own process group: a Ctrl-C at the terminal goes to the pipeline, which then
            // drains the stream through the emulator before stopping it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| EmulatorError::Spawn {
                exe: exe.clone(),
                source,
            })?;
        spawn_watchdog(child.id());
        let started = Instant::now();
        let limit = Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > limit || matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                return Err(EmulatorError::NotListening {
                    exe,
                    port,
                    secs: limit.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(LocalEmulator {
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        })
    }

    /// The endpoint URL, e.g. `http://127.0.0.1:5000`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether this value started the emulator (and so stops it when dropped).
    pub fn is_owned(&self) -> bool {
        self.child.is_some()
    }

    /// SDK configuration for the emulator: its endpoint, region `us-east-1` (the emulator's
    /// stream records say that region), dummy credentials, and an attempt timeout. The emulator
    /// answers in milliseconds even on a busy machine; an attempt it leaves unanswered is ended
    /// after [`ATTEMPT_TIMEOUT`] and retried by the SDK, instead of being waited on for ever
    /// (the SDK sets no read timeout of its own).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::from_keys(
                "testing", "testing", None,
            ))
            .load()
            .await
    }
}

impl Drop for LocalEmulator {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn moto_executable() -> String {
    if let Ok(exe) = std::env::var("MOTO_SERVER") {
        if !exe.trim().is_empty() {
            return exe;
        }
    }
    let venv: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        ".venv",
        "bin",
        "moto_server",
    ]
    .iter()
    .collect();
    if venv.exists() {
        return venv.to_string_lossy().into_owned();
    }
    "moto_server".to_owned()
}

/// Stops the emulator once this process is gone, even if it never runs `Drop` (a static in a
/// test binary, a killed demo).
fn spawn_watchdog(emulator_pid: u32) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null && kill -0 {emulator_pid} 2>/dev/null; do sleep 1; done; kill {emulator_pid} 2>/dev/null",
        parent = std::process::id()
    );
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
