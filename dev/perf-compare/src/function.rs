//! A function as a process behind its own [`RuntimeApi`], as Lambda runs it: start-up to the
//! first request for an event, handler time per invocation, CPU time and peak resident memory
//! read from `/proc`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::runtime_api::{Answer, RuntimeApi};

/// How to start a function.
#[derive(Clone, Debug)]
pub struct FunctionSpec {
    /// A short name for reports.
    pub name: String,
    /// The program (a `bootstrap`-like binary, or `python3`).
    pub program: PathBuf,
    /// Its arguments (`-m awslambdaric module.handler` for Python).
    pub args: Vec<String>,
    /// Working directory, if not the current one.
    pub cwd: Option<PathBuf>,
    /// Environment on top of the inherited one (the function's configuration).
    pub env: Vec<(String, String)>,
}

/// A function process that answers [`LocalFunction::invoke`].
#[derive(Debug)]
pub struct LocalFunction {
    spec: FunctionSpec,
    api: RuntimeApi,
    child: Child,
    started: Instant,
}

/// One invocation's result.
#[derive(Clone, Debug)]
pub struct Invoked {
    /// The answer.
    pub answer: Answer,
    /// From handing out the event to the answer.
    pub elapsed: Duration,
}

impl Invoked {
    /// The response as JSON, or an error naming the function's error document.
    pub fn json(&self) -> Result<Value, String> {
        match &self.answer {
            Answer::Response(b) if b.is_empty() => Ok(Value::Null),
            Answer::Response(b) => serde_json::from_slice(b)
                .map_err(|e| format!("response is not JSON ({e}): {}", String::from_utf8_lossy(b))),
            Answer::Error(b) => Err(String::from_utf8_lossy(b).into_owned()),
        }
    }
}

/// Process statistics from `/proc/<pid>`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time of all threads.
    pub cpu: Duration,
    /// Peak resident set size (`VmHWM`), bytes.
    pub peak_rss: u64,
}

impl LocalFunction {
    /// Starts the process with `AWS_LAMBDA_RUNTIME_API` and the variables Lambda sets.
    pub async fn spawn(spec: FunctionSpec) -> std::io::Result<LocalFunction> {
        let api = RuntimeApi::start().await?;
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", &spec.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", spec.name),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("_HANDLER", spec.args.last().cloned().unwrap_or_default())
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(dir) = &spec.cwd {
            command.current_dir(dir);
        }
        let started = Instant::now();
        let child = command.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot start {} ({}): {e}",
                    spec.name,
                    spec.program.display()
                ),
            )
        })?;
        Ok(LocalFunction {
            spec,
            api,
            child,
            started,
        })
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Time from the process start to its first request for an event.
    pub async fn ready(&self, timeout: Duration) -> Result<Duration, String> {
        let at = self
            .api
            .ready(timeout)
            .await
            .map_err(|e| format!("{}: {e}", self.spec.name))?;
        Ok(at.saturating_duration_since(self.started))
    }

    /// Invokes the function with `event`.
    pub async fn invoke(&self, event: &Value) -> Result<Invoked, String> {
        let payload = Bytes::from(serde_json::to_vec(event).map_err(|e| e.to_string())?);
        let start = Instant::now();
        let answer = self
            .api
            .invoke(payload)
            .await
            .map_err(|e| format!("{}: {e}", self.spec.name))?;
        Ok(Invoked {
            answer,
            elapsed: start.elapsed(),
        })
    }

    /// CPU time and peak RSS so far.
    pub fn stats(&self) -> Result<ProcessStats, String> {
        let pid = self
            .child
            .id()
            .ok_or_else(|| format!("{} has exited", self.spec.name))?;
        let process = procfs::process::Process::new(pid as i32)
            .map_err(|e| format!("{}: /proc/{pid}: {e}", self.spec.name))?;
        let stat = process.stat().map_err(|e| e.to_string())?;
        let status = process.status().map_err(|e| e.to_string())?;
        let ticks = procfs::ticks_per_second() as f64;
        Ok(ProcessStats {
            cpu: Duration::from_secs_f64((stat.utime + stat.stime) as f64 / ticks),
            peak_rss: status.vmhwm.unwrap_or(0) * 1024,
        })
    }

    /// Stops the process.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
