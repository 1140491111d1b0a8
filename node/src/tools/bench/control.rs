//! What every benchmark shares while it runs: a stop signal (Ctrl-C, so that what was measured
//! so far is still reported), a progress bar on stderr, and readings of the broker process.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Linux reports process CPU time in clock ticks of 1/100 s (USER_HZ, fixed for user space).
const TICKS_PER_SEC: f64 = 100.0;

/// A delivery that does not come within this long after the last one is counted as lost.
pub const QUIET: Duration = Duration::from_secs(2);

/// A running benchmark's controls.
#[derive(Debug, Clone)]
pub struct Control {
    /// Cancelled by Ctrl-C: the benchmark stops and reports what it measured.
    pub stop: CancellationToken,
    /// Progress for a person watching (hidden in tests and when stderr is not a terminal).
    pub progress: ProgressBar,
}

impl Control {
    /// Controls for a command line run: Ctrl-C stops the benchmark, a progress bar of `len`
    /// steps draws on stderr with `template` (indicatif syntax).
    pub fn for_terminal(len: u64, template: &str) -> Self {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        let progress = ProgressBar::new(len);
        progress.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        progress.enable_steady_tick(Duration::from_millis(200));
        Self { stop, progress }
    }

    /// Controls with no terminal and no signal handler (tests).
    pub fn quiet() -> Self {
        Self {
            stop: CancellationToken::new(),
            progress: ProgressBar::hidden(),
        }
    }
}

/// Waits until `count()` reaches `expected`, stops moving for `quiet`, or `stop` is
/// cancelled: how a run waits for the deliveries of what it sent.
pub async fn wait_for_count(
    count: impl Fn() -> u64,
    expected: u64,
    quiet: Duration,
    stop: &CancellationToken,
) {
    let (mut seen, mut since) = (count(), std::time::Instant::now());
    while seen < expected && since.elapsed() < quiet && !stop.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = count();
        if now != seen {
            (seen, since) = (now, std::time::Instant::now());
        }
    }
}

/// CPU time and resident memory of the broker process over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BrokerUsage {
    /// User plus system CPU seconds the broker spent during the run.
    pub cpu_seconds: f64,
    /// Resident memory at the start, bytes.
    pub rss_before: u64,
    /// Resident memory at the end, bytes.
    pub rss_after: u64,
}

/// Readings of the broker process taken at the start of a run.
#[derive(Debug, Clone, Copy)]
pub struct BrokerWatch {
    pid: u32,
    cpu_ticks: u64,
    rss: u64,
}

impl BrokerWatch {
    /// Starts watching `pid` (nothing without one).
    pub fn start(pid: Option<u32>) -> Option<Self> {
        pid.map(|pid| Self {
            pid,
            cpu_ticks: cpu_ticks_of(pid),
            rss: crate::process_memory::resident_bytes_of(pid),
        })
    }

    /// What the broker used since `start`.
    pub fn finish(self) -> BrokerUsage {
        BrokerUsage {
            cpu_seconds: cpu_ticks_of(self.pid).saturating_sub(self.cpu_ticks) as f64
                / TICKS_PER_SEC,
            rss_before: self.rss,
            rss_after: crate::process_memory::resident_bytes_of(self.pid),
        }
    }
}

/// User plus system CPU ticks of a process, from /proc/PID/stat (0 where unavailable).
fn cpu_ticks_of(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    tick(11) + tick(12)
}

/// The table rows for a broker's usage, `work` units done (messages, connections) naming
/// `unit`.
pub fn usage_rows(usage: Option<&BrokerUsage>, work: f64, unit: &str) -> Vec<(String, String)> {
    let Some(u) = usage else {
        return Vec::new();
    };
    let mib = |b: u64| b as f64 / 1_048_576.0;
    let mut rows = vec![
        ("broker CPU".to_owned(), format!("{:.2} s", u.cpu_seconds)),
        (
            "broker RSS".to_owned(),
            format!(
                "{:.1} MiB -> {:.1} MiB",
                mib(u.rss_before),
                mib(u.rss_after)
            ),
        ),
    ];
    if u.cpu_seconds > 0.0 {
        rows.push((
            format!("{unit}/CPU-s"),
            super::report::thousands(work / u.cpu_seconds),
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_cpu_and_memory() {
        let pid = std::process::id();
        let watch = BrokerWatch::start(Some(pid)).unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let usage = watch.finish();
        assert!(usage.cpu_seconds > 0.0, "{usage:?}");
        assert!(usage.rss_before > 0 && usage.rss_after > 0);
        assert!(BrokerWatch::start(None).is_none());
        assert_eq!(cpu_ticks_of(u32::MAX), 0);
    }
}
