//! The process's resident memory, as the kernel counts it (`VmRSS` of
//! `/proc/self/status`, in KiB: no page size to know).

/// Resident memory in bytes; `None` without `/proc` (the memory bound is then never
/// crossed).
pub(super) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_resident_memory_of_this_process_is_read() {
        let bytes = super::resident_bytes().expect("/proc/self/status has VmRSS");
        assert!(
            bytes > 1_000_000,
            "a test process holds more than 1 MB: {bytes}"
        );
    }
}
