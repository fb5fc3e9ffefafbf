//! A mailbox of the API's own, for the broker's answers to one call.
//!
//! The broker answers through a [`Mailbox`] and never waits, for connections and for
//! the API alike: a call makes an inbox, hands its mailbox to the broker (as the
//! origin of a publish, the asker of a presence request, or the subscriber that
//! reads the history) and waits here for the answer, within [`ANSWER_TIMEOUT`].

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use super::error::ApiError;
use crate::id::new_connection_id;
use crate::mailbox::{Mailbox, Outbound};

/// How long a call waits for the broker (Redis may be far away, or away).
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The broker's answers to one call.
#[derive(Debug)]
pub(crate) struct Inbox {
    mailbox: Arc<Mailbox>,
    deadline: Instant,
}

impl Inbox {
    /// An inbox that holds up to `capacity` answers and waits until
    /// [`ANSWER_TIMEOUT`] from now.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            mailbox: Arc::new(Mailbox::new(new_connection_id(), capacity)),
            deadline: Instant::now() + ANSWER_TIMEOUT,
        }
    }

    /// The mailbox to hand to the broker.
    pub(crate) fn mailbox(&self) -> Arc<Mailbox> {
        self.mailbox.clone()
    }

    /// The next answer; 503 once the deadline has passed or the inbox overflowed.
    pub(crate) async fn next(&self) -> Result<Outbound, ApiError> {
        match tokio::time::timeout_at(self.deadline, receive(&self.mailbox)).await {
            Ok(Some(item)) => Ok(item),
            Ok(None) => Err(ApiError::unavailable(
                "the channel is too busy to read now; ask again",
            )),
            Err(_) => Err(ApiError::unavailable(format!(
                "the broker did not answer within {} s; send the request again",
                ANSWER_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// The next item of `mailbox`, waiting for it; `None` once the mailbox overflowed
/// (it then takes nothing more).
pub(crate) async fn receive(mailbox: &Mailbox) -> Option<Outbound> {
    poll_fn(|cx| {
        if mailbox.signal().is_some() {
            return Poll::Ready(None);
        }
        if let Some(item) = mailbox.take() {
            return Poll::Ready(Some(item));
        }
        mailbox.register(cx);
        match mailbox.take() {
            Some(item) => Poll::Ready(Some(item)),
            None if mailbox.signal().is_some() => Poll::Ready(None),
            None => Poll::Pending,
        }
    })
    .await
}
