//! One timer for every connection of a server, instead of a tokio `Sleep` each.
//!
//! A connection asks to be woken at its next deadline ([`Timers::wake_at`]); the
//! deadlines are rounded up to ticks of [`TICK`], and one driver task sleeps until
//! the earliest tick that has wakers and wakes them all. What is due is still
//! decided by each connection's sans-IO machine with the time it reads when woken:
//! only the wake-up is shared. A deadline is thus met up to one tick late, never
//! early.
//!
//! A connection holds one entry at most, keyed by its id: arming an earlier
//! deadline moves it, and a connection that ends takes it out. An idle connection
//! costs an entry of a B-tree (its id, tick and waker) instead of a boxed `Sleep`
//! (112 B) and its place in tokio's timer wheel.

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::time::Sleep;

use crate::id::ConnectionId;

/// The resolution of the shared timer, in milliseconds: deadlines are met up to
/// this late.
const TICK_MS: u64 = 8;
const TICK: Duration = Duration::from_millis(TICK_MS);

/// A tick: the number of [`TICK`]s since the timers were made, never zero (a
/// deadline at the origin is met at the first tick), so that a connection's
/// `Option<Tick>` takes no more room than a tick.
pub(crate) type Tick = NonZeroU64;

/// The wake-ups of a server's connections. See the [module docs](self).
pub(crate) struct Timers {
    shared: Arc<Shared>,
}

struct Shared {
    origin: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Who to wake, by tick and connection.
    due: BTreeMap<(Tick, ConnectionId), Waker>,
    /// The driver, once spawned, with the tick it sleeps until (`None`: no entry).
    driver: Option<(Waker, Option<Tick>)>,
    spawned: bool,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                origin: Instant::now(),
                state: Mutex::default(),
            }),
        }
    }
}

impl Timers {
    /// The tick at which `deadline` has passed.
    pub(crate) fn tick_of(&self, deadline: Instant) -> Tick {
        let since = deadline.saturating_duration_since(self.shared.origin);
        let ticks = since.as_nanos().div_ceil(TICK.as_nanos());
        let ticks = u64::try_from(ticks).unwrap_or(u64::MAX);
        Tick::new(ticks).unwrap_or(Tick::MIN)
    }

    /// When `tick` begins.
    pub(crate) fn instant_of(&self, tick: Tick) -> Instant {
        self.shared.origin + tick_duration(tick)
    }

    /// Wakes `waker` once `tick` has begun, instead of the wake-up connection `id`
    /// asked for at `previous` (if it did and it has not come yet). Must be called
    /// within a tokio runtime: the first call spawns the driver.
    pub(crate) fn wake_at(
        &self,
        id: ConnectionId,
        tick: Tick,
        previous: Option<Tick>,
        waker: &Waker,
    ) {
        let mut state = self.shared.state.lock();
        if let Some(previous) = previous {
            state.due.remove(&(previous, id));
        }
        state.due.insert((tick, id), waker.clone());
        if !state.spawned {
            state.spawned = true;
            drop(state);
            tokio::spawn(Driver {
                shared: Arc::downgrade(&self.shared),
                sleep: Box::pin(tokio::time::sleep_until(self.instant_of(tick).into())),
            });
            return;
        }
        let wake_driver = match &state.driver {
            Some((_, Some(until))) => tick < *until,
            Some((_, None)) => true,
            None => false,
        };
        if wake_driver {
            let (driver, _) = state.driver.take().expect("matched above");
            drop(state);
            driver.wake();
        }
    }

    /// Forgets the wake-up connection `id` asked for at `tick`.
    pub(crate) fn cancel(&self, id: ConnectionId, tick: Tick) {
        self.shared.state.lock().due.remove(&(tick, id));
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The driver ends once it finds the timers gone.
        if let Some((driver, _)) = self.state.get_mut().driver.take() {
            driver.wake();
        }
    }
}

fn tick_duration(tick: Tick) -> Duration {
    Duration::from_millis(tick.get().saturating_mul(TICK_MS))
}

/// The task that sleeps until the earliest tick with wakers and wakes them. It holds
/// the timers weakly, and ends when they are dropped.
struct Driver {
    shared: Weak<Shared>,
    sleep: Pin<Box<Sleep>>,
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Bounded: each round either wakes the due entries (at least one) or
        // returns; the entries are finite.
        loop {
            let Some(shared) = self.shared.upgrade() else {
                return Poll::Ready(());
            };
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(shared.origin);
            let now_tick = u64::try_from(elapsed.as_nanos() / TICK.as_nanos()).unwrap_or(u64::MAX);
            let mut state = shared.state.lock();
            let later = state
                .due
                .split_off(&(Tick::MIN.saturating_add(now_tick), 0));
            let due = std::mem::replace(&mut state.due, later);
            let next = state.due.first_key_value().map(|(&(tick, _), _)| tick);
            state.driver = Some((cx.waker().clone(), next));
            drop(state);
            for waker in due.into_values() {
                waker.wake();
            }
            let Some(next) = next else {
                return Poll::Pending;
            };
            let at = shared.origin + tick_duration(next);
            self.sleep.as_mut().reset(at.into());
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    /// Far longer than any wake-up these tests ask for.
    const PATIENCE: Duration = Duration::from_secs(10);

    impl Timers {
        fn entries(&self) -> usize {
            self.shared.state.lock().due.len()
        }
    }

    /// Asks `timers` to wake connection `id` at `tick` (after one at `previous`),
    /// and returns when it is woken.
    async fn woken(
        timers: &Timers,
        id: ConnectionId,
        tick: Tick,
        previous: Option<Tick>,
    ) -> Instant {
        let mut asked = false;
        let wake = poll_fn(|cx| {
            if asked {
                return Poll::Ready(Instant::now());
            }
            asked = true;
            timers.wake_at(id, tick, previous, cx.waker());
            Poll::Pending
        });
        tokio::time::timeout(PATIENCE, wake)
            .await
            .expect("woken well within the patience")
    }

    #[tokio::test]
    async fn a_connection_is_woken_once_its_deadline_has_passed_never_before() {
        let timers = Timers::default();
        let deadline = Instant::now() + Duration::from_millis(50);
        let tick = timers.tick_of(deadline);
        assert!(timers.instant_of(tick) >= deadline);
        assert!(timers.instant_of(tick) < deadline + TICK);
        assert!(woken(&timers, 1, tick, None).await >= deadline);
        assert_eq!(timers.entries(), 0, "a wake-up that came is forgotten");
    }

    #[tokio::test]
    async fn an_earlier_deadline_replaces_the_later_one_and_wakes_on_time() {
        let timers = Timers::default();
        let later = timers.tick_of(Instant::now() + PATIENCE * 100);
        let mut asked = false;
        // The driver is spawned sleeping until the later tick.
        poll_fn(|cx| {
            if !asked {
                asked = true;
                timers.wake_at(7, later, None, cx.waker());
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(())
        })
        .await;
        tokio::task::yield_now().await;
        let deadline = Instant::now() + Duration::from_millis(30);
        let earlier = timers.tick_of(deadline);
        assert!(woken(&timers, 7, earlier, Some(later)).await >= deadline);
        assert_eq!(timers.entries(), 0, "the later wake-up was replaced");
    }

    #[tokio::test]
    async fn a_cancelled_wake_up_is_forgotten() {
        let timers = Timers::default();
        let tick = timers.tick_of(Instant::now() + PATIENCE);
        let mut asked = false;
        poll_fn(|cx| {
            if !asked {
                asked = true;
                timers.wake_at(3, tick, None, cx.waker());
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(())
        })
        .await;
        assert_eq!(timers.entries(), 1);
        timers.cancel(3, tick);
        assert_eq!(timers.entries(), 0);
    }
}
