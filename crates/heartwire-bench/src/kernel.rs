//! What the kernel holds for sockets, machine-wide: the TCP buffer pages of
//! `/proc/net/sockstat` and the slab caches a socket's objects come from
//! (`/proc/slabinfo`, readable by root only), and the load average beside each figure.
//!
//! Both ends of a benchmark connection are on this machine, so a difference between two
//! samples counts the generator's sockets as well as the server's: the scenarios divide
//! it by the number of sockets, not of connections.

use anyhow::Context;

/// The slab caches that grow with each TCP socket: the socket itself, its inode, its
/// open file, and its epoll registration.
const SOCKET_CACHES: [&str; 5] = [
    "TCP",
    "sock_inode_cache",
    "filp",
    "eventpoll_epi",
    "eventpoll_pwq",
];

/// The kernel's socket memory at one moment, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SocketMemory {
    /// Pages of TCP send and receive buffers (`TCP: … mem`), in bytes.
    pub(crate) buffers: u64,
    /// The objects of [`SOCKET_CACHES`] in use, in bytes.
    pub(crate) slab: u64,
}

impl SocketMemory {
    /// Reads both now.
    pub(crate) fn sample() -> anyhow::Result<Self> {
        let sockstat = std::fs::read_to_string("/proc/net/sockstat")?;
        let slabinfo = std::fs::read_to_string("/proc/slabinfo")
            .context("cannot read /proc/slabinfo (root only)")?;
        Ok(Self {
            buffers: tcp_pages(&sockstat).context("no TCP mem in /proc/net/sockstat")? * PAGE,
            slab: socket_slab_bytes(&slabinfo),
        })
    }

    /// The growth from `before`, in bytes (a cache that shrank counts as no growth).
    pub(crate) fn growth_since(self, before: Self) -> u64 {
        self.buffers.saturating_sub(before.buffers) + self.slab.saturating_sub(before.slab)
    }
}

/// The page size of the machines measured (x86-64 Linux).
const PAGE: u64 = 4096;

fn tcp_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|line| line.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    words.find(|word| *word == "mem")?;
    words.next()?.parse().ok()
}

/// Active objects × object size over the socket caches.
fn socket_slab_bytes(slabinfo: &str) -> u64 {
    slabinfo
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            if !SOCKET_CACHES.contains(&name) {
                return None;
            }
            let active: u64 = fields.next()?.parse().ok()?;
            let _total = fields.next()?;
            let size: u64 = fields.next()?.parse().ok()?;
            Some(active * size)
        })
        .sum()
}

/// The load average over the last minute (the machine is shared: it goes beside every
/// figure).
pub(crate) fn load_average() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/loadavg")?;
    text.split_whitespace()
        .next()
        .and_then(|load| load.parse().ok())
        .context("odd /proc/loadavg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcp_pages_and_the_socket_caches() {
        let sockstat = "sockets: used 22\nTCP: inuse 2 orphan 0 tw 0 alloc 2 mem 93\n";
        assert_eq!(tcp_pages(sockstat), Some(93));
        let slabinfo = "slabinfo - version: 2.1\n\
            # name <active_objs> <num_objs> <objsize> …\n\
            TCPv6 26 26 2496 13 8 : tunables 0 0 0 : slabdata 2 2 0\n\
            TCP 104 117 2368 13 8 : tunables 0 0 0 : slabdata 9 9 0\n\
            filp 713 735 192 21 1 : tunables 0 0 0 : slabdata 35 35 0\n\
            dentry 10 10 192 21 1 : tunables 0 0 0 : slabdata 1 1 0\n";
        assert_eq!(socket_slab_bytes(slabinfo), 104 * 2368 + 713 * 192);
    }
}
