//! Memory readings from /proc: this process's resident memory, another's, the machine's.

/// Resident memory of this process, bytes (0 where /proc is unavailable).
pub fn resident_bytes() -> u64 {
    read_kib("/proc/self/status", "VmRSS:")
}

/// The machine's memory, bytes (0 where /proc is unavailable).
pub fn total_bytes() -> u64 {
    read_kib("/proc/meminfo", "MemTotal:")
}

/// Resident memory of process `pid`, bytes (0 where /proc is unavailable).
pub fn resident_bytes_of(pid: u32) -> u64 {
    read_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// A `KEY: N kB` line of a /proc file, in bytes.
fn read_kib(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_readings() {
        assert!(total_bytes() > 0);
        assert!(resident_bytes() > 0);
        assert_eq!(resident_bytes_of(u32::MAX), 0, "no such process");
    }
}
