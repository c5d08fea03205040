//! The demo's Kafka-protocol broker with `--source kafka`: `scripts/kafka-broker` (librdkafka's
//! mock cluster, from the pinned `confluent-kafka` wheel) started for the run with the orders
//! topic, and stopped with it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// The broker process, stopped when dropped (and when this process ends: it serves until its
/// stdin closes).
#[derive(Debug)]
pub struct KafkaBroker {
    child: Child,
    /// Its bootstrap servers.
    pub bootstrap_servers: Vec<String>,
}

impl KafkaBroker {
    /// Starts the broker with `topic` of `partitions` partitions, through the Python of
    /// `scripts/setup`'s virtual environment (`python3` on the PATH that `scripts/demo` sets).
    pub fn start(topic: &str, partitions: u32) -> Result<KafkaBroker> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/kafka-broker");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--until-stdin-closes")
            .arg(format!("{topic}:{partitions}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {script} (run through scripts/demo, which installs its Python packages)"))?;
        let stdout = child.stdout.take().context("the broker's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the broker's address")?;
        let servers: Vec<String> = (line.trim().split(','))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if servers.is_empty() {
            let _ = child.kill();
            bail!("the Kafka broker did not start (is confluent-kafka installed? scripts/setup installs it)");
        }
        Ok(KafkaBroker {
            child,
            bootstrap_servers: servers,
        })
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
