//! The Redis channels of one pub/sub link, and whether an unsubscribe push means the
//! server dropped one by itself (its slot moved away), which ends the link.
//!
//! A name counts as subscribed from the moment its subscribe command is sent, not
//! from its reply: the library hands the reply to the request and the pushes that
//! follow it to the link's queue separately, so a drop that comes right after the
//! subscribe may be read before the reply. Counted only from the reply, that drop
//! would pass for the echo of an unsubscribe, and the link would go on believing in
//! a subscription the server no longer holds: the channel's later messages would
//! never come, and nothing would tell.

use std::collections::HashSet;

/// The link's subscriptions, and the unsubscribes it sent whose echo is still to come.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    subscribed: HashSet<String>,
    unsubscribing: HashSet<String>,
}

impl Subscriptions {
    /// Whether `name` is subscribed (or its subscribe was sent).
    pub(super) fn has(&self, name: &str) -> bool {
        self.subscribed.contains(name)
    }

    /// A subscribe to `name` is about to be sent.
    pub(super) fn sending_subscribe(&mut self, name: &str) {
        self.subscribed.insert(name.to_owned());
    }

    /// The server refused the subscribe to `name`: nothing of it is held.
    pub(super) fn refused(&mut self, name: &str) {
        self.subscribed.remove(name);
    }

    /// An unsubscribe from `name` is about to be sent; false when it is not
    /// subscribed here (nothing to send).
    pub(super) fn sending_unsubscribe(&mut self, name: &str) -> bool {
        if !self.subscribed.remove(name) {
            return false;
        }
        self.unsubscribing.insert(name.to_owned());
        true
    }

    /// An unsubscribe push for `name` came: whether the server dropped a
    /// subscription by itself (true), rather than answering the link's own
    /// unsubscribe or one of a name no longer held.
    pub(super) fn dropped(&mut self, name: &str) -> bool {
        if self.unsubscribing.remove(name) {
            return false;
        }
        self.subscribed.remove(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_read_before_the_subscribes_reply_is_noticed() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.sending_subscribe("hw:{a}#live");
        // The slot moved right after the subscribe: its reply has not been read.
        assert!(subscriptions.dropped("hw:{a}#live"));
        assert!(!subscriptions.has("hw:{a}#live"));
    }

    #[test]
    fn the_echo_of_an_own_unsubscribe_is_no_drop() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.sending_subscribe("hw:{a}#live");
        assert!(subscriptions.sending_unsubscribe("hw:{a}#live"));
        assert!(!subscriptions.dropped("hw:{a}#live"));
        // Nothing is held any more: a second echo (the server had dropped it too) is
        // no drop either, and there is nothing to unsubscribe again.
        assert!(!subscriptions.dropped("hw:{a}#live"));
        assert!(!subscriptions.sending_unsubscribe("hw:{a}#live"));
    }

    #[test]
    fn a_refused_subscribe_holds_nothing() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.sending_subscribe("hw:{a}#live");
        subscriptions.refused("hw:{a}#live");
        assert!(!subscriptions.has("hw:{a}#live"));
        assert!(!subscriptions.dropped("hw:{a}#live"));
    }

    #[test]
    fn subscribing_again_while_an_unsubscribe_is_under_way_keeps_the_new_one() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.sending_subscribe("hw:{a}#live");
        assert!(subscriptions.sending_unsubscribe("hw:{a}#live"));
        subscriptions.sending_subscribe("hw:{a}#live");
        // The unsubscribe's echo comes first, then the server drops the new one.
        assert!(!subscriptions.dropped("hw:{a}#live"));
        assert!(subscriptions.has("hw:{a}#live"));
        assert!(subscriptions.dropped("hw:{a}#live"));
    }
}
