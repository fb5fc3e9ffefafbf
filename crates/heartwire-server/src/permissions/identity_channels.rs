//! The channels of django-websocket-redis's identity audiences: `user:{name}:{facility}`,
//! `group:{name}:{facility}` and `session:{key}:{facility}`. Each belongs to its user,
//! the members of its group, or the holder of its session: no other connection may
//! use it, whatever the rules say.
//!
//! The owner is the segment after the audience's prefix, up to the next `:`. A user,
//! group or session key that holds a `:` (or is empty) has no identity channels,
//! since its channel would spell another's; nor has one that holds a `#`, the mark of
//! heartwire's own Redis keys, which no channel name may hold.

use crate::auth::Identity;

/// Who an identity channel is addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    /// `user:{name}:…`
    User,
    /// `group:{name}:…`
    Group,
    /// `session:{key}:…`
    Session,
}

impl Audience {
    const ALL: [Audience; 3] = [Audience::User, Audience::Group, Audience::Session];

    /// The channel name's first segment, with its colon.
    fn prefix(self) -> &'static str {
        match self {
            Audience::User => "user:",
            Audience::Group => "group:",
            Audience::Session => "session:",
        }
    }

    /// The channel of `owner` for `facility`, when `owner` can own one.
    pub(crate) fn channel(self, owner: &str, facility: &str) -> Option<String> {
        (!owner.is_empty() && !owner.contains([':', '#']))
            .then(|| format!("{}{owner}:{facility}", self.prefix()))
    }

    /// The owners in `identity` of this audience's channels: its user, its groups,
    /// or its session key.
    pub(crate) fn owners(self, identity: &Identity) -> Vec<&str> {
        match self {
            Audience::User => vec![identity.user.as_str()],
            Audience::Group => identity.groups.iter().map(String::as_str).collect(),
            Audience::Session => identity.session_key.iter().map(String::as_str).collect(),
        }
    }
}

/// The audience and owner of `channel`, when it is an identity channel.
pub(crate) fn owner_of(channel: &str) -> Option<(Audience, &str)> {
    Audience::ALL.into_iter().find_map(|audience| {
        let rest = channel.strip_prefix(audience.prefix())?;
        let owner = rest.split_once(':').map_or(rest, |(owner, _)| owner);
        Some((audience, owner))
    })
}

/// Whether `identity` (`None`: anonymous) owns the identity channel of `audience`
/// and `owner`.
pub(crate) fn is_owner(identity: Option<&Identity>, audience: Audience, owner: &str) -> bool {
    identity.is_some_and(|identity| audience.owners(identity).contains(&owner))
}

/// The sentence that refuses a connection another's identity channel.
pub(crate) fn belongs_to(channel: &str, audience: Audience, owner: &str) -> String {
    match audience {
        Audience::User => format!("{channel} belongs to the user {owner}"),
        Audience::Group => format!("{channel} belongs to the members of the group {owner}"),
        Audience::Session => format!("{channel} belongs to another session"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> Identity {
        Identity {
            user: "ada".into(),
            groups: vec!["staff".into(), "ops".into()],
            session_key: Some("k1".into()),
            expires_at: None,
            channels: Vec::new(),
        }
    }

    #[test]
    fn identity_channels_name_their_owner() {
        assert_eq!(owner_of("user:ada:chat"), Some((Audience::User, "ada")));
        assert_eq!(
            owner_of("group:staff:a:b"),
            Some((Audience::Group, "staff"))
        );
        assert_eq!(owner_of("session:k1:chat"), Some((Audience::Session, "k1")));
        assert_eq!(owner_of("user:ada"), Some((Audience::User, "ada")));
        assert_eq!(owner_of("broadcast:chat"), None);
        assert_eq!(owner_of("users:ada:chat"), None);
    }

    #[test]
    fn only_the_owner_owns() {
        let ada = ada();
        assert!(is_owner(Some(&ada), Audience::User, "ada"));
        assert!(!is_owner(Some(&ada), Audience::User, "bob"));
        assert!(is_owner(Some(&ada), Audience::Group, "ops"));
        assert!(!is_owner(Some(&ada), Audience::Group, "admins"));
        assert!(is_owner(Some(&ada), Audience::Session, "k1"));
        assert!(!is_owner(Some(&ada), Audience::Session, "k2"));
        assert!(!is_owner(None, Audience::User, "ada"));
        let no_session = Identity {
            session_key: None,
            ..ada
        };
        assert!(!is_owner(Some(&no_session), Audience::Session, ""));
    }

    #[test]
    fn a_name_with_a_colon_has_no_channel() {
        assert_eq!(
            Audience::User.channel("ada", "chat").as_deref(),
            Some("user:ada:chat")
        );
        assert_eq!(Audience::User.channel("a:b", "chat"), None);
        assert_eq!(Audience::Group.channel("x#id:1", "chat"), None);
        assert_eq!(
            Audience::Group.channel("Support Team", "chat").as_deref(),
            Some("group:Support Team:chat")
        );
        assert_eq!(Audience::Session.channel("", "chat"), None);
    }
}
