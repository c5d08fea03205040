//! The comparison's report: the table of ratios ours/peer, the figures behind them, and the
//! plots.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::live::LiveResult;
use crate::plot::{cdf, lines, Series};
use crate::sequential::{Floor, PeakMemory, SideFigures, Startup, Throughput};
use crate::stats::{median, ms, quantile, ratio};

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// Items in the reference table.
    pub items: usize,
    /// The command line that produced it.
    pub command: String,
    /// Start-up per function.
    pub startup: Vec<Startup>,
    /// The batch loop.
    pub throughput: Throughput,
    /// Each consumer's own batch code with its AWS calls replaced by memory: CPU per record,
    /// ours then the peer's.
    pub enrichment_cpu: (Duration, Duration),
    /// Peak memory per function.
    pub memory: Vec<PeakMemory>,
    /// Live runs: one consumer per side, then two.
    pub live: Vec<LiveResult>,
    /// Our consumer against the floor binary, when that phase ran.
    pub floor: Option<Floor>,
}

/// A section heading and the header of its table.
fn heading(out: &mut String, title: &str, columns: &[&str]) {
    let _ = writeln!(out, "\n## {title}\n");
    let _ = writeln!(out, "| {} |", columns.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(columns.len()));
}

/// A row of two durations, ours and the other side's, and their ratio.
fn duration_row(out: &mut String, measure: &str, ours: Duration, theirs: Duration) {
    let _ = writeln!(
        out,
        "| {measure} | {} | {} | {} |",
        ms(ours),
        ms(theirs),
        ratio(ours.as_secs_f64(), theirs.as_secs_f64())
    );
}

fn startup_of(r: &Report, name: &str) -> Duration {
    r.startup
        .iter()
        .find(|s| s.name == name)
        .map(|s| median(&s.samples))
        .unwrap_or_default()
}

fn cpu_per_record(t: &Throughput, s: &SideFigures) -> f64 {
    let cpu = s.end.cpu.saturating_sub(s.cpu_after_load);
    cpu.as_secs_f64() / t.matched.max(1) as f64
}

fn times(s: &SideFigures, after_change: bool) -> Vec<Duration> {
    s.batch_times
        .iter()
        .zip(&s.after_change)
        .filter(|(_, c)| **c == after_change)
        .map(|(t, _)| *t)
        .collect()
}

fn mean_requests(s: &SideFigures, after_change: bool) -> f64 {
    let v: Vec<u64> = s
        .refresh_requests
        .iter()
        .zip(&s.after_change)
        .filter(|(_, c)| **c == after_change)
        .map(|(r, _)| *r)
        .collect();
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<u64>() as f64 / v.len() as f64
    }
}

/// Propagation of the single-consumer run of one side.
fn propagation(live: &[LiveResult], ours: bool) -> (Vec<Duration>, usize) {
    let c = live
        .iter()
        .filter(|l| l.options.consumers == 1)
        .flat_map(|l| &l.consumers)
        .find(|c| c.ours == ours);
    let samples: Vec<Duration> = c
        .map(|c| c.propagation.iter().flatten().copied().collect())
        .unwrap_or_default();
    let missing = c.map_or(0, |c| c.propagation.iter().filter(|p| p.is_none()).count());
    (samples, missing)
}

/// Our consumer against the floor binary: CPU per record, handler time, and what ours does that
/// the floor does not (its S3 requests and output bytes).
fn floor_section(out: &mut String, f: &Floor) {
    heading(
        out,
        "CPU per record against the floor",
        &["measure", "ours", "floor", "ours / floor"],
    );
    let (o, p) = f.per_record();
    let _ = writeln!(
        out,
        "| process CPU per record, {} batches of {} orders after a warm-up (KPL de-aggregation on; ours writes to S3) | {:.2} µs | {:.2} µs | {} |",
        f.batches,
        f.batch_size,
        o.as_secs_f64() * 1e6,
        p.as_secs_f64() * 1e6,
        ratio(o.as_secs_f64(), p.as_secs_f64())
    );
    duration_row(
        out,
        &format!("handler time per {}-order batch (median)", f.batch_size),
        median(&f.ours_times),
        median(&f.floor_times),
    );
    let batches = f.batches.max(1) as f64;
    let puts = f.ours_requests.get("s3/PutObject").copied().unwrap_or(0);
    let others: u64 = f.ours_requests.values().sum::<u64>() - puts;
    let _ = writeln!(
        out,
        "| AWS requests per batch: PutObject; others (mean) | {:.1}; {:.1} | 0; 0 | — |",
        puts as f64 / batches,
        others as f64 / batches
    );
    let _ = writeln!(
        out,
        "| output bytes per record (ours: to S3; the floor: kept in memory) | {:.0} | — | — |",
        f.ours_output_bytes as f64 / f.records().max(1) as f64
    );
    let _ = writeln!(
        out,
        "| ours, own batch code per record in-process, AWS calls replaced by memory (no runtime, no S3) | {:.2} µs | — | — |",
        f.ours_in_memory.as_secs_f64() * 1e6
    );
}

impl Report {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let t = &self.throughput;
        let mut out = String::new();
        let _ = writeln!(out, "# Comparison with the original design: one run\n");
        let _ = writeln!(
            out,
            "`{}` — table of {} items; {} measured batches of {} orders ({} with a reference item) after a first batch that loads the table; {} reference changes in the batch loop.\n",
            self.command, self.items, t.batches, t.batch_size, t.matched, t.changes
        );
        let _ = writeln!(out, "## Ratios, ours / peer\n");
        let _ = writeln!(
            out,
            "| measure | ours | peer | ours / peer |\n|---|---|---|---|"
        );
        let batch_loop = !t.ours.batch_times.is_empty();
        if batch_loop {
            let (ours_cpu, peer_cpu) = (cpu_per_record(t, &t.ours), cpu_per_record(t, &t.peer));
            let _ = writeln!(
                out,
                "| consumer CPU per enriched record (changes included) | {:.2} µs | {:.2} µs | {} |",
                ours_cpu * 1e6,
                peer_cpu * 1e6,
                ratio(ours_cpu, peer_cpu)
            );
        }
        let (eo, ep) = self.enrichment_cpu;
        // Phases that did not run leave their rows out.
        let _ = (!ep.is_zero()).then(|| writeln!(
            out,
            "| enrichment CPU per record: the consumer's own batch code, AWS calls replaced by memory, 1,000-order batch | {:.2} µs | {:.2} µs | {} |",
            eo.as_secs_f64() * 1e6,
            ep.as_secs_f64() * 1e6,
            ratio(eo.as_secs_f64(), ep.as_secs_f64())
        ));
        for (label, change) in [
            ("no change since the last batch", false),
            ("first batch after a change", true),
        ] {
            let (o, p) = (times(&t.ours, change), times(&t.peer, change));
            if o.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "| handler time per {}-order batch, {label} (median; p95) | {}; {} | {}; {} | {} |",
                t.batch_size,
                ms(median(&o)),
                ms(quantile(&o, 0.95)),
                ms(median(&p)),
                ms(quantile(&p, 0.95)),
                ratio(median(&o).as_secs_f64(), median(&p).as_secs_f64())
            );
            let (ro, rp) = (
                mean_requests(&t.ours, change),
                mean_requests(&t.peer, change),
            );
            let _ = writeln!(
                out,
                "| AWS requests per micro-batch other than output writes, {label} (mean) | {ro:.2} | {rp:.2} | {} |",
                ratio(ro, rp)
            );
        }
        if batch_loop {
            let per_change = |s: &SideFigures| s.items_read as f64 / t.changes.max(1) as f64;
            let _ = writeln!(
                out,
                "| DynamoDB items read per change, per consumer | {:.1} | {:.1} | {} |",
                per_change(&t.ours),
                per_change(&t.peer),
                ratio(per_change(&t.ours), per_change(&t.peer))
            );
            duration_row(
                &mut out,
                "change function time per stream record (median)",
                median(&t.ours.change_times),
                median(&t.peer.change_times),
            );
        }
        for (ours, peer, what) in [
            ("orders-consumer", "peer-consumer", "consumer"),
            ("change-handler", "peer-flag-lambda", "change function"),
        ]
        .into_iter()
        .filter(|_| !self.startup.is_empty())
        {
            duration_row(
                &mut out,
                &format!("start to ready for the first event, {what} (median)"),
                startup_of(self, ours),
                startup_of(self, peer),
            );
        }
        if !self.live.is_empty() {
            let (o, om) = propagation(&self.live, true);
            let (p, pm) = propagation(&self.live, false);
            for (q, label) in [(0.5, "p50"), (0.95, "p95")] {
                duration_row(
                    &mut out,
                    &format!("propagation, table write to first enriched record with the new value, {label}"),
                    quantile(&o, q),
                    quantile(&p, q),
                );
            }
            if om + pm > 0 {
                let _ = writeln!(out, "| spread-out changes never seen | {om} | {pm} | — |");
            }
        }
        for consumers in [1, 2] {
            let runs: Vec<&LiveResult> = self
                .live
                .iter()
                .filter(|l| l.options.consumers == consumers)
                .collect();
            let Some(first) = runs.first() else { continue };
            let lost = |ours: bool| -> usize {
                runs.iter()
                    .flat_map(|l| &l.consumers)
                    .filter(|c| c.ours == ours)
                    .map(|c| c.burst_lost)
                    .sum()
            };
            let _ = writeln!(
                out,
                "| changes lost in a burst of {} ({} ms apart), {consumers} consumer(s), summed over consumers | {} of {} | {} of {} | — |",
                first.options.burst,
                first.options.burst_spacing.as_millis(),
                lost(true),
                first.options.burst * consumers,
                lost(false),
                first.options.burst * consumers,
            );
        }
        let ours_mem = self.memory.iter().find(|m| m.name == "orders-consumer");
        let peer_mem = self.memory.iter().find(|m| m.name == "peer-consumer");
        if let (Some(o), Some(p)) = (ours_mem, peer_mem) {
            let _ = writeln!(
                out,
                "| consumer peak RSS after a 1,000-order batch | {:.1} MiB | {:.1} MiB | {} |",
                o.peak as f64 / 1048576.0,
                p.peak as f64 / 1048576.0,
                ratio(o.peak as f64, p.peak as f64)
            );
        }

        if let Some(f) = &self.floor {
            floor_section(&mut out, f);
        }

        if !self.startup.is_empty() {
            heading(
                &mut out,
                "Start-up against the minimal lambda_runtime binary",
                &["function", "median", "p90", "/ lambda-hello"],
            );
        }
        let hello = startup_of(self, "lambda-hello").as_secs_f64();
        for s in &self.startup {
            let m = median(&s.samples);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} |",
                s.name,
                ms(m),
                ms(quantile(&s.samples, 0.9)),
                m.as_secs_f64() / hello.max(1e-9)
            );
        }

        if !self.memory.is_empty() {
            heading(
                &mut out,
                "Peak resident memory on a 1,000-record batch",
                &["function", "batch", "after start-up", "after the batch"],
            );
        }
        for m in &self.memory {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} MiB | {:.1} MiB |",
                m.name,
                m.batch,
                m.idle as f64 / 1048576.0,
                m.peak as f64 / 1048576.0
            );
        }

        if !self.live.is_empty() {
            heading(
                &mut out,
                "Live pipeline, per consumer",
                &[
                    "run",
                    "consumer",
                    "invocations",
                    "propagation p50",
                    "p95",
                    "max",
                    "never seen",
                    "burst changes lost",
                ],
            );
        }
        for live in &self.live {
            for c in &live.consumers {
                let s: Vec<Duration> = c.propagation.iter().flatten().copied().collect();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} of {} |",
                    live.options.label,
                    c.name,
                    c.invocations,
                    ms(quantile(&s, 0.5)),
                    ms(quantile(&s, 0.95)),
                    ms(quantile(&s, 1.0)),
                    c.propagation.len() - s.len(),
                    c.burst_lost,
                    live.options.burst
                );
            }
        }

        if batch_loop {
            heading(
                &mut out,
                "Requests in the batch loop, whole run",
                &[
                    "side",
                    "function",
                    "requests by operation",
                    "DynamoDB items read after the load",
                ],
            );
        }
        for (side, s) in [("ours", &t.ours), ("peer", &t.peer)]
            .into_iter()
            .filter(|_| batch_loop)
        {
            let _ = writeln!(
                out,
                "| {side} | consumer | {:?} | {} |",
                s.requests, s.items_read
            );
            let _ = writeln!(
                out,
                "| {side} | change function | {:?} | — |",
                s.change_requests
            );
        }
        out
    }

    /// Writes `report.md`, `propagation.svg` and `handler-time.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        let mut series = Vec::new();
        for live in &self.live {
            for c in &live.consumers {
                if live.options.consumers == 1 {
                    let s: Vec<Duration> = c.propagation.iter().flatten().copied().collect();
                    series.push(Series {
                        name: c.name.clone(),
                        points: cdf(&s),
                    });
                }
            }
        }
        lines(
            &dir.join("propagation.svg"),
            &format!(
                "Propagation, table write to first enriched record ({} items)",
                self.items
            ),
            "milliseconds",
            "fraction of changes",
            &series,
        )?;
        let t = &self.throughput;
        let per_batch = |s: &SideFigures| -> Vec<(f64, f64)> {
            s.batch_times
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    (
                        (i + 1) as f64,
                        t.batch_size as f64 / d.as_secs_f64().max(1e-9),
                    )
                })
                .collect()
        };
        lines(
            &dir.join("throughput.svg"),
            &format!(
                "Orders per second of handler time, per {}-order batch ({} items, {} changes)",
                t.batch_size, self.items, t.changes
            ),
            "batch",
            "orders / s",
            &[
                Series {
                    name: "ours".into(),
                    points: per_batch(&t.ours),
                },
                Series {
                    name: "peer (original design)".into(),
                    points: per_batch(&t.peer),
                },
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            items: 5,
            command: "compare".into(),
            startup: Vec::new(),
            throughput: Throughput::default(),
            enrichment_cpu: (Duration::ZERO, Duration::ZERO),
            memory: Vec::new(),
            live: Vec::new(),
            floor: None,
        }
    }

    #[test]
    fn phases_that_did_not_run_leave_their_rows_out() {
        let md = report().markdown();
        for row in [
            "start to ready",
            "enrichment CPU",
            "CPU per enriched",
            "items read per change",
        ] {
            assert!(!md.contains(&format!("| {row}")), "{row} in:\n{md}");
        }
        assert!(
            !md.contains("## Start-up")
                && !md.contains("## Live pipeline")
                && !md.contains("## CPU per record against the floor"),
            "{md}"
        );
    }

    #[test]
    fn the_floor_phase_has_its_rows_and_ratio() {
        let mut r = report();
        r.floor = Some(Floor {
            batch_size: 5000,
            batches: 2,
            ours_cpu: Duration::from_millis(25),
            floor_cpu: Duration::from_millis(20),
            ours_times: vec![Duration::from_millis(300)],
            floor_times: vec![Duration::from_millis(100)],
            ours_requests: [
                ("s3/PutObject".to_owned(), 60),
                ("s3/GetObject".to_owned(), 2),
            ]
            .into_iter()
            .collect(),
            ours_output_bytes: 1_500_000,
            ours_in_memory: Duration::from_nanos(1500),
        });
        let md = r.markdown();
        assert!(md.contains("## CPU per record against the floor"), "{md}");
        assert!(
            md.contains("2 batches of 5000 orders after a warm-up (KPL de-aggregation on; ours writes to S3) | 2.50 µs | 2.00 µs | 1.25 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| handler time per 5000-order batch (median) | 300.0 ms | 100.0 ms | 3.00 |"
            ),
            "{md}"
        );
        assert!(md.contains("| 30.0; 1.0 | 0; 0 |"), "{md}");
        assert!(
            md.contains(
                "| output bytes per record (ours: to S3; the floor: kept in memory) | 150 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("AWS calls replaced by memory (no runtime, no S3) | 1.50 µs |"),
            "{md}"
        );
    }

    #[test]
    fn a_phase_that_ran_has_its_row_and_ratio() {
        let mut r = report();
        r.enrichment_cpu = (Duration::from_nanos(1000), Duration::from_nanos(4000));
        r.startup = vec![
            Startup {
                name: "orders-consumer".into(),
                samples: vec![Duration::from_millis(6)],
            },
            Startup {
                name: "peer-consumer".into(),
                samples: vec![Duration::from_millis(240)],
            },
        ];
        let md = r.markdown();
        assert!(
            md.contains("| 1.00 µs | 4.00 µs | 0.250 (4.0× less) |"),
            "{md}"
        );
        assert!(
            md.contains(
                "start to ready for the first event, consumer (median) | 6.0 ms | 240.0 ms"
            ),
            "{md}"
        );
    }
}
