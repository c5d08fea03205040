//! The interactive mode driven as a user drives it: the `local-pipeline --interactive` binary
//! runs, the commands it prints are run by the real AWS CLI (`awscli`, pinned in
//! requirements-dev.txt), its progress line must show the update reach the output, and Ctrl-C
//! (SIGINT) ends it with a summary in which nothing is lost.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `.venv` that scripts/setup fills, whose `aws` the test runs.
const VENV_BIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin");

struct Pipeline {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Pipeline {
    /// Waits for a progress line containing `needle`.
    fn wait_for(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no progress line with {needle:?} within {within:?}: {e}"),
            }
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a printed command line in a shell, with the `aws` of `.venv` first on the PATH.
fn run_printed(line: &str) -> String {
    let path = format!("{VENV_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-c", line])
        .env("PATH", path)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{line}\nfailed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_seeds_commands_run_by_the_aws_cli_reach_the_output() {
    let suffix = format!(
        "cli{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000_000)
            .unwrap_or(0)
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_local-pipeline"))
        .args(["--interactive", "--rate", "20", "--name-suffix", &suffix])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("local-pipeline starts");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let pipeline = Pipeline { child, stderr: rx };

    // GIVEN the running pipeline, and the commands it printed
    let mut out = BufReader::new(stdout);
    let mut printed = Vec::new();
    let mut line = String::new();
    while printed.len() < 3 {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("stdout") > 0,
            "the pipeline ended before printing its commands; printed {printed:?}"
        );
        if let Some(command) = line.trim_end().strip_prefix("  $ ") {
            printed.push(command.to_owned());
        }
    }
    assert!(printed[0].contains("dynamodb update-item --table-name ProductPriority-"));
    assert!(printed[0].contains("--endpoint-url http://"));
    assert!(printed[1].contains("| aws s3 cp - s3://"));
    pipeline.wait_for("burger→medium", Duration::from_secs(90));

    // WHEN the user runs the seed's update with the AWS CLI
    let updated = run_printed(&printed[0]);
    assert!(
        updated.contains("\"high\""),
        "update-item returns the new item: {updated}"
    );

    // THEN burgers land in priority=high
    pipeline.wait_for("burger→high", Duration::from_secs(60));

    // WHEN the user replaces the S3 reference object, and THEN its flag reaches every shard
    run_printed(&printed[1]);
    pipeline.wait_for("flags 4", Duration::from_secs(60));
    // (and a salad order after each shard's flag, enriched)
    pipeline.wait_for("salad after its flag on 4 shards", Duration::from_secs(90));
    let listing = run_printed(&printed[2]);
    assert!(
        listing.contains("item=burger/priority=high/"),
        "the listing shows the new partition: {listing}"
    );

    // WHEN Ctrl-C
    let pid = pipeline.child.id().to_string();
    let kill = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("summary");
    let mut pipeline = pipeline;
    let status = pipeline.child.wait().expect("exit");

    // THEN it drains, exits cleanly, and its summary accounts for every order
    assert!(status.success(), "exit status {status}; stdout:\n{rest}");
    assert!(
        rest.contains("in = out + held + unmatched + rejected: yes"),
        "{rest}"
    );
    assert!(rest.contains("item=burger/priority=high/"), "{rest}");
    assert_eq!(
        rest.matches("with category=salads; old value after the flag: 0")
            .count(),
        4,
        "every shard's first salad after its flag has the new category, none the old: {rest}"
    );
}
