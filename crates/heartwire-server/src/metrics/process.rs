//! The process's own figures, `process_*` as Prometheus clients name them, read from
//! `/proc/self` at each scrape: resident memory, CPU time, open and allowed file
//! descriptors, threads and start time. On a system without `/proc` they are left
//! out.

use std::fmt::Write as _;

/// The `process_*` families, in Prometheus text format (empty without `/proc`).
pub(super) fn render() -> String {
    let mut out = String::new();
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return out;
    };
    // The fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |number: usize| fields.get(number - 3).and_then(|v| v.parse::<f64>().ok());
    let ticks = clock_ticks_per_second();
    let mut family = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
    };
    let cpu = field(14)
        .zip(field(15))
        .map(|(user, system)| (user + system) / ticks);
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        cpu,
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        status_kib("VmRSS:").map(|kib| kib * 1024.0),
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        field(23),
    );
    family(
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
        field(20),
    );
    let boot = boot_time();
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        field(22)
            .zip(boot)
            .map(|(start, boot)| boot + start / ticks),
    );
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count() as f64)
        .ok();
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        open,
    );
    family(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        max_fds(),
    );
    out
}

/// A size in KiB from `/proc/self/status`, such as `VmRSS:`.
fn status_kib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// `sysconf(_SC_CLK_TCK)`: Linux's USER_HZ, 100 on every architecture.
fn clock_ticks_per_second() -> f64 {
    100.0
}

/// The system's boot time, from `/proc/stat`'s `btime`.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The soft limit of open files, from `/proc/self/limits`.
fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_figures_are_read_from_proc() {
        let text = render();
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_threads",
            "process_start_time_seconds",
        ] {
            let value: f64 = text
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{family} ")))
                .unwrap_or_else(|| panic!("no {family} in {text}"))
                .parse()
                .expect("a number");
            assert!(value >= 0.0, "{family} {value}");
        }
        let rss = text
            .lines()
            .find_map(|line| line.strip_prefix("process_resident_memory_bytes "))
            .and_then(|value| value.parse::<f64>().ok())
            .expect("resident memory");
        assert!(
            rss > 1_000_000.0,
            "a test process holds more than 1 MB: {rss}"
        );
    }
}
