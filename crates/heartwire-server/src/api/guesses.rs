//! Wrong API keys, counted per client address, so the key cannot be guessed at the
//! API or at the admin page's login.
//!
//! Each address may present [`GUESS_BURST`] wrong keys, and then one more every
//! [`GUESS_EVERY`]. A key presented takes one guess from its address's allowance
//! *before* it is compared, and a right key gives it back, so requests sent at once
//! cannot share one guess, and a right key costs nothing. An address with no guess
//! left is refused with 429 and `Retry-After`, its key not compared, so that answer
//! says nothing of whether the key was right.
//!
//! The table holds at most [`ADDRESSES_KEPT`] addresses; when it is full, addresses
//! whose allowance has refilled are forgotten first. A new address that finds it
//! still full is not counted: a guesser with more addresses than that in use at once
//! is slowed only by the key's length (at least 16 bytes).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::admission::TokenBucket;
use crate::config::Rate;

/// Wrong keys an address may present at once.
pub(crate) const GUESS_BURST: u32 = 10;
/// How often an address past its burst may present one more.
pub(crate) const GUESS_EVERY: Duration = Duration::from_secs(6);
/// Addresses counted at once.
const ADDRESSES_KEPT: usize = 10_000;

/// Wrong keys per client address.
#[derive(Debug, Default)]
pub(crate) struct KeyGuesses {
    by_address: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl KeyGuesses {
    /// Takes a guess of `address` at `now`, for a key about to be compared; when it
    /// has none left, how long until it has one.
    pub(crate) fn take(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut by_address = self.by_address.lock().expect("key guesses poisoned");
        if !by_address.contains_key(&address) && by_address.len() >= ADDRESSES_KEPT {
            by_address.retain(|_, bucket| !bucket.is_full(now));
            if by_address.len() >= ADDRESSES_KEPT {
                return Ok(());
            }
        }
        let rate = Rate {
            count: 1,
            per: GUESS_EVERY,
        };
        by_address
            .entry(address)
            .or_insert_with(|| TokenBucket::new(rate, GUESS_BURST, now).expect("a limited rate"))
            .take(now)
    }

    /// The key `address` presented was right, or no key could be read: the guess
    /// taken for it is given back.
    pub(crate) fn give_back(&self, address: IpAddr) {
        let mut by_address = self.by_address.lock().expect("key guesses poisoned");
        if let Some(bucket) = by_address.get_mut(&address) {
            bucket.give_back();
        }
    }
}

/// The answer to an address past its allowance: 429, `Retry-After` and a sentence.
pub(crate) fn refusal(wait: Duration) -> Response {
    let mut response = ApiError::too_many_wrong_keys(wait).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after(wait));
    response
}

/// The `Retry-After` value for `wait`.
fn retry_after(wait: Duration) -> HeaderValue {
    HeaderValue::from(retry_after_secs(wait))
}

/// `wait` in whole seconds, rounded up, at least one.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn an_address_past_its_burst_waits_and_others_are_not_touched() {
        let guesses = KeyGuesses::default();
        let t0 = Instant::now();
        for _ in 0..GUESS_BURST {
            assert_eq!(guesses.take(ip(1), t0), Ok(()));
        }
        assert_eq!(guesses.take(ip(1), t0), Err(GUESS_EVERY));
        assert_eq!(guesses.take(ip(2), t0), Ok(()));
        // One more guess per period, no more.
        let later = t0 + GUESS_EVERY;
        assert_eq!(guesses.take(ip(1), later), Ok(()));
        assert_eq!(guesses.take(ip(1), later), Err(GUESS_EVERY));
    }

    #[test]
    fn right_keys_cost_nothing() {
        let guesses = KeyGuesses::default();
        let t0 = Instant::now();
        for _ in 0..3 * GUESS_BURST {
            assert_eq!(guesses.take(ip(1), t0), Ok(()));
            guesses.give_back(ip(1));
        }
        // A right key from an address never counted is nothing to give back.
        guesses.give_back(ip(2));
        assert_eq!(guesses.take(ip(2), t0), Ok(()));
    }

    #[test]
    fn a_full_table_forgets_the_forgiven_first() {
        let guesses = KeyGuesses::default();
        let t0 = Instant::now();
        for n in 0..ADDRESSES_KEPT {
            let address = IpAddr::from(u32::try_from(n).unwrap().to_be_bytes());
            guesses.take(address, t0).unwrap();
        }
        // Every address is still counted: a new one is not, and nothing is forgotten.
        for _ in 0..2 * GUESS_BURST {
            assert_eq!(guesses.take(ip(9), t0), Ok(()));
        }
        assert_eq!(guesses.by_address.lock().unwrap().len(), ADDRESSES_KEPT);
        // Once their one wrong key is forgiven, they make room.
        let later = t0 + GUESS_EVERY;
        for _ in 0..GUESS_BURST {
            guesses.take(ip(9), later).unwrap();
        }
        assert_eq!(guesses.by_address.lock().unwrap().len(), 1);
        assert!(guesses.take(ip(9), later).is_err());
    }
}
