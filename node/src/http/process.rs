//! Figures of the node's own process, read from `/proc` at each scrape.

/// CPU seconds (user + system) the process has used, if `/proc/self/stat` can be read.
pub(super) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds_of(&stat, clock_ticks())
}

/// utime + stime of a `/proc/PID/stat` line, in seconds.
fn cpu_seconds_of(stat: &str, ticks_per_sec: f64) -> Option<f64> {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line are the 12th and 13th after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_sec)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc/self/stat` times.
fn clock_ticks() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

/// File descriptors the process has open, if `/proc/self/fd` can be listed.
pub(super) fn open_files() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// The most file descriptors the process may open (its soft limit).
pub(super) fn max_files() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_read_past_a_name_with_spaces() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0 10 0 0";
        assert_eq!(cpu_seconds_of(stat, 100.0), Some(4.0));
    }

    #[test]
    fn this_process_has_figures() {
        assert!(cpu_seconds().is_some());
        assert!(open_files().unwrap() > 0);
        assert!(max_files().unwrap() > 0);
    }
}
