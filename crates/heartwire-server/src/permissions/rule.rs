//! One `[[channels]]` rule of the config file: a pattern, and who may subscribe,
//! publish, see presence and replay history on the channels it matches.

use std::fmt;
use std::str::FromStr;

use super::pattern::{ChannelPattern, Placeholder};
use crate::auth::Identity;

/// Who may do something on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// Every connection, identified or not (`"anyone"`).
    Anyone,
    /// Every identified connection (`"authenticated"`).
    Authenticated,
    /// An identified connection whose own user, one of whose groups, or whose
    /// session key stands in every placeholder of the rule's pattern (`"owner"`).
    Owner,
    /// An identified connection with this group (`"group:staff"`).
    Group(String),
    /// No connection: only the server's side, such as an application publishing
    /// straight into Redis (`"server"`).
    Server,
}

impl Permission {
    /// Whether `identity` (`None`: anonymous) has this permission on `channel`,
    /// matched by `pattern`.
    pub(crate) fn allows(
        &self,
        identity: Option<&Identity>,
        pattern: &ChannelPattern,
        channel: &str,
    ) -> bool {
        match (self, identity) {
            (Permission::Anyone, _) => true,
            (Permission::Server, _) | (_, None) => false,
            (Permission::Authenticated, Some(_)) => true,
            (Permission::Group(group), Some(identity)) => identity.groups.contains(group),
            (Permission::Owner, Some(identity)) => owns(identity, pattern, channel),
        }
    }

    /// Who this permission lets in, for the sentence of a refusal.
    pub(crate) fn who(&self) -> String {
        match self {
            Permission::Anyone => "any connection".into(),
            Permission::Authenticated => "identified connections only".into(),
            Permission::Owner => "its owner only".into(),
            Permission::Group(group) => format!("members of the group {group} only"),
            Permission::Server => "the server only, no connection".into(),
        }
    }
}

/// Whether `channel` matches `pattern` with its placeholders bound to the values of
/// `identity`; a `{group}` may be any one of its groups.
pub(super) fn owns(identity: &Identity, pattern: &ChannelPattern, channel: &str) -> bool {
    let bound = |group: Option<&str>| {
        pattern.matches_bound(channel, |placeholder| match placeholder {
            Placeholder::User => Some(identity.user.as_str()),
            Placeholder::Group => group,
            Placeholder::Session => identity.session_key.as_deref(),
        })
    };
    if pattern.placeholders().any(|p| p == Placeholder::Group) {
        identity.groups.iter().any(|group| bound(Some(group)))
    } else {
        bound(None)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Permission::Anyone => f.write_str("anyone"),
            Permission::Authenticated => f.write_str("authenticated"),
            Permission::Owner => f.write_str("owner"),
            Permission::Group(group) => write!(f, "group:{group}"),
            Permission::Server => f.write_str("server"),
        }
    }
}

impl FromStr for Permission {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "anyone" => Permission::Anyone,
            "authenticated" => Permission::Authenticated,
            "owner" => Permission::Owner,
            "server" => Permission::Server,
            _ => match text.strip_prefix("group:") {
                Some(group) if !group.is_empty() => Permission::Group(group.to_owned()),
                _ => {
                    return Err(format!(
                        "unknown permission {text:?}: expected anyone, authenticated, owner, group:NAME or server"
                    ));
                }
            },
        })
    }
}

impl<'de> serde::Deserialize<'de> for Permission {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One rule of `[[channels]]`. A permission the file leaves out is `server` (no
/// connection may), except `history`, which is then the same as `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "RuleFields")]
pub struct ChannelRule {
    /// The channels the rule is for.
    pub pattern: ChannelPattern,
    /// Who may subscribe.
    pub subscribe: Permission,
    /// Who may publish.
    pub publish: Permission,
    /// Who may see the members (the `presence` request, `join` and `leave`).
    pub presence: Permission,
    /// Who may have missed messages replayed on subscribing (`since`, and the last
    /// message of a django-websocket-redis facility).
    pub history: Permission,
}

/// A rule as the file writes it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFields {
    pattern: ChannelPattern,
    subscribe: Option<Permission>,
    publish: Option<Permission>,
    presence: Option<Permission>,
    history: Option<Permission>,
}

impl TryFrom<RuleFields> for ChannelRule {
    type Error = String;

    fn try_from(fields: RuleFields) -> Result<Self, String> {
        let subscribe = fields.subscribe.unwrap_or(Permission::Server);
        let rule = ChannelRule {
            history: fields.history.unwrap_or_else(|| subscribe.clone()),
            subscribe,
            publish: fields.publish.unwrap_or(Permission::Server),
            presence: fields.presence.unwrap_or(Permission::Server),
            pattern: fields.pattern,
        };
        let permissions = [
            &rule.subscribe,
            &rule.publish,
            &rule.presence,
            &rule.history,
        ];
        if !rule.pattern.has_placeholder() && permissions.contains(&&Permission::Owner) {
            return Err(format!(
                "the rule for {}: owner needs a {{user}}, {{group}} or {{session}} placeholder in the pattern",
                rule.pattern
            ));
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn identity(user: &str, groups: &[&str], session: Option<&str>) -> Identity {
        Identity {
            user: user.into(),
            groups: groups.iter().map(|group| (*group).into()).collect(),
            session_key: session.map(Into::into),
            expires_at: None,
            channels: Vec::new(),
        }
    }

    fn allows(permission: &str, pattern: &str, channel: &str, who: Option<&Identity>) -> bool {
        let permission: Permission = permission.parse().unwrap();
        permission.allows(who, &ChannelPattern::parse(pattern).unwrap(), channel)
    }

    #[test]
    fn each_permission_lets_in_whom_it_names() {
        let ada = identity("ada", &["staff"], Some("k1"));
        let bob = identity("bob", &[], None);
        for (permission, pattern, channel, who, expected) in [
            ("anyone", "room:*", "room:1", None, true),
            ("anyone", "room:*", "room:1", Some(&ada), true),
            ("authenticated", "room:*", "room:1", None, false),
            ("authenticated", "room:*", "room:1", Some(&bob), true),
            ("group:staff", "room:*", "room:1", Some(&ada), true),
            ("group:staff", "room:*", "room:1", Some(&bob), false),
            ("group:staff", "room:*", "room:1", None, false),
            ("server", "room:*", "room:1", Some(&ada), false),
            ("server", "room:*", "room:1", None, false),
            ("owner", "user:{user}:*", "user:ada:chat", Some(&ada), true),
            ("owner", "user:{user}:*", "user:ada:chat", Some(&bob), false),
            ("owner", "user:{user}:*", "user:ada:chat", None, false),
            (
                "owner",
                "team:{group}:*",
                "team:staff:chat",
                Some(&ada),
                true,
            ),
            (
                "owner",
                "team:{group}:*",
                "team:staff:chat",
                Some(&bob),
                false,
            ),
            ("owner", "s:{session}:*", "s:k1:chat", Some(&ada), true),
            ("owner", "s:{session}:*", "s:k1:chat", Some(&bob), false),
            // Every placeholder must be the owner's.
            ("owner", "{user}:{group}", "ada:staff", Some(&ada), true),
            ("owner", "{user}:{group}", "ada:other", Some(&ada), false),
        ] {
            assert_eq!(
                allows(permission, pattern, channel, who),
                expected,
                "{permission} on {channel} by {pattern} for {who:?}"
            );
        }
    }

    #[test]
    fn permissions_read_as_written() {
        for text in ["anyone", "authenticated", "owner", "group:staff", "server"] {
            assert_eq!(text.parse::<Permission>().unwrap().to_string(), text);
        }
        for bad in ["everyone", "group:", "Group:staff", ""] {
            let err = bad.parse::<Permission>().unwrap_err();
            assert!(err.contains("group:NAME"), "{err}");
        }
    }

    fn rule(toml: &str) -> Result<ChannelRule, String> {
        toml::from_str::<ChannelRule>(toml).map_err(|err| err.to_string())
    }

    #[test]
    fn left_out_permissions_are_the_servers_and_history_follows_subscribe() {
        let only_publish = rule(
            r#"pattern = "news:*"
publish = "authenticated""#,
        )
        .unwrap();
        assert_eq!(only_publish.subscribe, Permission::Server);
        assert_eq!(only_publish.presence, Permission::Server);
        assert_eq!(only_publish.history, Permission::Server);
        let open = rule(
            r#"pattern = "room:*"
subscribe = "anyone""#,
        )
        .unwrap();
        assert_eq!(open.history, Permission::Anyone);
        let narrow = rule(
            r#"pattern = "room:*"
subscribe = "anyone"
history = "group:staff""#,
        )
        .unwrap();
        assert_eq!(narrow.history, Permission::Group("staff".into()));
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        let err = rule(
            r#"pattern = "room:*"
subscribe = "owner""#,
        )
        .unwrap_err();
        assert!(err.contains("owner needs a {user}"), "{err}");
        let err = rule(
            r#"pattern = "room:*"
subscribe = "all""#,
        )
        .unwrap_err();
        assert!(err.contains("unknown permission"), "{err}");
        let err = rule(
            r#"pattern = "room:*"
subscibe = "anyone""#,
        )
        .unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
        assert!(rule(r#"subscribe = "anyone""#).is_err());
    }
}
