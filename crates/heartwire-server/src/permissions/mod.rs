//! Channel permissions: whether a connection may subscribe to a channel, publish on
//! it, see who is on it, or have its history replayed.
//!
//! Every endpoint asks [`check`] (the native `/ws`, the django-websocket-redis
//! `/ws/{facility}`, and presence). A request passes three steps, in order:
//!
//! 1. [`identity_channels`]: `user:{name}:…`, `group:{name}:…` and `session:{key}:…`
//!    belong to that user, the members of that group, the holder of that session;
//!    any other connection is refused, whatever the rules say;
//! 2. the connection's own patterns (the JWT's `channels` claim, placeholders bound
//!    to the connection's own values): a channel that matches one is allowed;
//! 3. the [`rule`]s of `[[channels]]`: the first whose [`pattern`] matches decides.
//!    When there are rules and none matches, the channel is refused; without rules,
//!    every channel is allowed.
//!
//! A refusal is a [`Forbidden`] with a sentence that names the channel and why.

pub(crate) mod identity_channels;
mod pattern;
mod rule;

use crate::auth::Identity;
use identity_channels::{belongs_to, is_owner, owner_of};

pub use pattern::ChannelPattern;
pub use rule::{ChannelRule, Permission};

/// What a connection asks to do on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Receive its messages.
    Subscribe,
    /// Send a message to its subscribers.
    Publish,
    /// Learn who is subscribed (the `presence` request, `join` and `leave`).
    Presence,
    /// Have the messages it missed replayed on subscribing.
    History,
}

impl Action {
    /// The action as a sentence says it, before the channel.
    fn verb(self) -> &'static str {
        match self {
            Action::Subscribe => "subscribe to",
            Action::Publish => "publish on",
            Action::Presence => "see who is on",
            Action::History => "replay the history of",
        }
    }

    fn permission(self, rule: &ChannelRule) -> &Permission {
        match self {
            Action::Subscribe => &rule.subscribe,
            Action::Publish => &rule.publish,
            Action::Presence => &rule.presence,
            Action::History => &rule.history,
        }
    }
}

/// A refused request: the sentence says which channel, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forbidden {
    /// A sentence naming the channel and the reason.
    pub(crate) reason: String,
}

/// Whether `identity` (`None`: anonymous) may do `action` on `channel` under `rules`.
/// See the [module docs](self) for the steps.
pub(crate) fn check(
    rules: &[ChannelRule],
    identity: Option<&Identity>,
    action: Action,
    channel: &str,
) -> Result<(), Forbidden> {
    let refuse = |why: String| {
        Err(Forbidden {
            reason: format!("cannot {} {channel}: {why}", action.verb()),
        })
    };
    if let Some((audience, owner)) = owner_of(channel) {
        if !is_owner(identity, audience, owner) {
            return refuse(belongs_to(channel, audience, owner));
        }
    }
    if let Some(identity) = identity {
        let granted = identity.channels.iter().any(|claimed| {
            ChannelPattern::parse(claimed)
                .is_ok_and(|pattern| rule::owns(identity, &pattern, channel))
        });
        if granted {
            return Ok(());
        }
    }
    if rules.is_empty() {
        return Ok(());
    }
    let Some(rule) = rules.iter().find(|rule| rule.pattern.matches(channel)) else {
        return refuse("no rule of [[channels]] matches it".into());
    };
    let permission = action.permission(rule);
    if permission.allows(identity, &rule.pattern, channel) {
        Ok(())
    } else {
        refuse(format!(
            "the rule for {} allows {}",
            rule.pattern,
            permission.who()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml: &str) -> Vec<ChannelRule> {
        #[derive(serde::Deserialize)]
        struct File {
            channels: Vec<ChannelRule>,
        }
        toml::from_str::<File>(toml).unwrap().channels
    }

    /// The example of docs/SECURITY.md.
    fn example() -> Vec<ChannelRule> {
        rules(
            r#"
            [[channels]]
            pattern = "user:{user}:*"
            subscribe = "owner"
            publish = "server"

            [[channels]]
            pattern = "room:*"
            subscribe = "anyone"
            publish = "authenticated"
            presence = "authenticated"

            [[channels]]
            pattern = "ops:*"
            subscribe = "group:staff"
            publish = "group:staff"
            presence = "group:staff"
            history = "group:staff"

            [[channels]]
            pattern = "*"
            subscribe = "authenticated"
            history = "server"
            "#,
        )
    }

    fn identity(user: &str, groups: &[&str], claims: &[&str]) -> Identity {
        Identity {
            user: user.into(),
            groups: groups.iter().map(|group| (*group).into()).collect(),
            session_key: Some(format!("key-of-{user}")),
            expires_at: None,
            channels: claims.iter().map(|claim| (*claim).into()).collect(),
        }
    }

    fn allowed(
        rules: &[ChannelRule],
        who: Option<&Identity>,
        action: Action,
        channel: &str,
    ) -> bool {
        check(rules, who, action, channel).is_ok()
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = example();
        let ada = identity("ada", &[], &[]);
        // room:* comes before *, which would refuse anonymous subscribers.
        assert!(allowed(&rules, None, Action::Subscribe, "room:1"));
        assert!(!allowed(&rules, None, Action::Subscribe, "news"));
        assert!(allowed(&rules, Some(&ada), Action::Subscribe, "news"));
        // *'s history = "server" does not reach room:*, whose history is its subscribe.
        assert!(allowed(&rules, None, Action::History, "room:1"));
        assert!(!allowed(&rules, Some(&ada), Action::History, "news"));
    }

    #[test]
    fn each_action_reads_its_own_permission() {
        let rules = example();
        let ada = identity("ada", &[], &[]);
        let staff = identity("sam", &["staff"], &[]);
        assert!(!allowed(&rules, None, Action::Publish, "room:1"));
        assert!(allowed(&rules, Some(&ada), Action::Publish, "room:1"));
        assert!(!allowed(&rules, None, Action::Presence, "room:1"));
        assert!(allowed(&rules, Some(&ada), Action::Presence, "room:1"));
        for action in [
            Action::Subscribe,
            Action::Publish,
            Action::Presence,
            Action::History,
        ] {
            assert!(
                allowed(&rules, Some(&staff), action, "ops:alerts"),
                "{action:?}"
            );
            assert!(
                !allowed(&rules, Some(&ada), action, "ops:alerts"),
                "{action:?}"
            );
        }
        // Left out of the user rule: presence and the publish of `*` do not apply.
        assert!(!allowed(
            &rules,
            Some(&ada),
            Action::Presence,
            "user:ada:chat"
        ));
        assert!(!allowed(
            &rules,
            Some(&ada),
            Action::Publish,
            "user:ada:chat"
        ));
        assert!(allowed(
            &rules,
            Some(&ada),
            Action::Subscribe,
            "user:ada:chat"
        ));
        assert!(allowed(
            &rules,
            Some(&ada),
            Action::History,
            "user:ada:chat"
        ));
    }

    #[test]
    fn once_a_rule_exists_an_unmatched_channel_is_refused() {
        let rules = rules(
            r#"
            [[channels]]
            pattern = "room:*"
            subscribe = "anyone"
            "#,
        );
        let ada = identity("ada", &["staff"], &[]);
        let refusal = check(&rules, Some(&ada), Action::Subscribe, "news").unwrap_err();
        assert_eq!(
            refusal.reason,
            "cannot subscribe to news: no rule of [[channels]] matches it"
        );
        assert!(allowed(&[], None, Action::Publish, "news"));
    }

    #[test]
    fn identity_channels_are_their_owners_whatever_the_rules() {
        let open = rules(
            r#"
            [[channels]]
            pattern = "*"
            subscribe = "anyone"
            publish = "anyone"
            "#,
        );
        let ada = identity("ada", &["staff"], &[]);
        for rules in [&open[..], &[]] {
            assert!(allowed(
                rules,
                Some(&ada),
                Action::Subscribe,
                "user:ada:chat"
            ));
            assert!(allowed(
                rules,
                Some(&ada),
                Action::Publish,
                "group:staff:chat"
            ));
            assert!(allowed(
                rules,
                Some(&ada),
                Action::Subscribe,
                "session:key-of-ada:chat"
            ));
            assert!(!allowed(
                rules,
                Some(&ada),
                Action::Subscribe,
                "user:bob:chat"
            ));
            assert!(!allowed(
                rules,
                Some(&ada),
                Action::Publish,
                "group:ops:chat"
            ));
            assert!(!allowed(
                rules,
                Some(&ada),
                Action::Subscribe,
                "session:key-of-bob:chat"
            ));
            assert!(!allowed(rules, None, Action::Subscribe, "user:ada:chat"));
        }
        let refusal = check(&[], Some(&ada), Action::Subscribe, "user:bob:chat").unwrap_err();
        assert_eq!(
            refusal.reason,
            "cannot subscribe to user:bob:chat: user:bob:chat belongs to the user bob"
        );
    }

    #[test]
    fn claimed_patterns_add_to_the_rules_for_their_holder_only() {
        let rules = example();
        let ada = identity("ada", &["staff"], &["news", "doc:{user}:*", "team:{group}"]);
        let bob = identity("bob", &[], &[]);
        for action in [
            Action::Subscribe,
            Action::Publish,
            Action::Presence,
            Action::History,
        ] {
            assert!(allowed(&rules, Some(&ada), action, "news"), "{action:?}");
            // Without the claim, `*` lets bob subscribe, and nothing else.
            let by_the_rules = action == Action::Subscribe;
            assert_eq!(
                allowed(&rules, Some(&bob), action, "news"),
                by_the_rules,
                "{action:?}"
            );
        }
        assert!(allowed(&rules, Some(&ada), Action::Publish, "doc:ada:1"));
        assert!(!allowed(&rules, Some(&ada), Action::Publish, "doc:bob:1"));
        assert!(allowed(&rules, Some(&ada), Action::Publish, "team:staff"));
        assert!(!allowed(&rules, Some(&ada), Action::Publish, "team:ops"));
        // A claim does not open another's identity channel.
        let greedy = identity("eve", &[], &["*"]);
        assert!(!allowed(
            &rules,
            Some(&greedy),
            Action::Subscribe,
            "user:ada:chat"
        ));
        assert!(allowed(
            &rules,
            Some(&greedy),
            Action::Publish,
            "ops:alerts"
        ));
    }

    #[test]
    fn a_refusal_names_the_rule_and_who_it_allows() {
        let rules = example();
        let refusal = check(&rules, None, Action::Publish, "room:1").unwrap_err();
        assert_eq!(
            refusal.reason,
            "cannot publish on room:1: the rule for room:* allows identified connections only"
        );
    }
}
