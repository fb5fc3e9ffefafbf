//! How the `heartwire` process holds its memory: the allocator, its pages, and when
//! it gives back what it no longer uses.
//!
//! An idle server's memory is mostly small allocations that live as long as their
//! connections (bench/NOTES.md, "Where heartwire's bytes go"). Three choices keep it
//! close to what those allocations take.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// mimalloc rather than glibc's allocator: a connection's handshake leaves many
/// short-lived buffers behind, and glibc keeps the holes they leave between the
/// connections that stay, which an idle server's memory then counts. It is built
/// without its own requests for transparent huge pages (`no_thp`), which it would
/// otherwise make before `main` runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps transparent huge pages out of this process, before its first allocation of
/// its own. Backed by 2 MiB pages, each allocator page touched in part counts whole
/// in the process's memory. A kernel that refuses leaves the process as the system
/// sets it.
pub(crate) fn small_pages_only() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// How often a worker thread going idle gives back what it freed.
const GIVE_BACK_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    /// When this thread last gave memory back.
    static GAVE_BACK: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Called by each worker thread as it goes idle: at most every [`GIVE_BACK_EVERY`],
/// the thread's allocator heap frees its empty pages and returns to the system the
/// ones freed long enough ago. mimalloc does so only when a thread allocates, so the
/// buffers of a burst of handshakes would otherwise stay in the memory of a server
/// whose connections then sit idle (bench/NOTES.md: 2.4 to 3.0 KB per connection at
/// 5,000, instead of 1.7 KB).
#[allow(unsafe_code)]
pub(crate) fn give_back_when_idle() {
    let now = Instant::now();
    if gives_back(GAVE_BACK.get(), now) {
        GAVE_BACK.set(Some(now));
        // SAFETY: `mi_collect` takes no pointer; it walks and frees only the calling
        // thread's own heap, which no other thread touches.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

/// Whether a thread that last gave memory back at `last` does so again at `now`.
fn gives_back(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|last| now >= last + GIVE_BACK_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gives_memory_back_at_its_first_pause_then_at_most_every_second() {
        let t0 = Instant::now();
        assert!(gives_back(None, t0));
        assert!(!gives_back(Some(t0), t0));
        assert!(!gives_back(
            Some(t0),
            t0 + GIVE_BACK_EVERY - Duration::from_millis(1)
        ));
        assert!(gives_back(Some(t0), t0 + GIVE_BACK_EVERY));
    }

    #[test]
    fn giving_back_leaves_what_is_in_use_intact() {
        let kept: Vec<Box<[u8; 512]>> = (0..1_000u16).map(|i| Box::new([i as u8; 512])).collect();
        drop((0..1_000).map(|_| vec![1u8; 4096]).collect::<Vec<_>>());
        GAVE_BACK.set(None);
        give_back_when_idle();
        assert!(GAVE_BACK.get().is_some(), "the first pause gives back");
        for (i, block) in kept.iter().enumerate() {
            assert!(
                block.iter().all(|&byte| byte == i as u8),
                "block {i} changed"
            );
        }
    }
}
