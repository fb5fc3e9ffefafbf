//! The channel patterns of `[[channels]]` rules and of the JWT `channels` claim.
//!
//! A pattern is a channel name in which `*` stands for any run of characters (none
//! included, `:` included), and a placeholder `{user}`, `{group}` or `{session}`
//! stands for one *segment*: a non-empty run of characters without `:`. When a rule
//! is matched, a placeholder matches any segment; when the rule's permission is
//! `owner`, the placeholder must be the connection's own user, one of its groups, or
//! its session key (see [`ChannelPattern::matches_bound`]). A value that is empty or holds a
//! `:` is never a segment, so it binds nothing: `user:{user}:*` can never make the
//! user `a:b` the owner of `user:a:b:chat`, which is the user `a`'s.
//!
//! A pattern with placeholders is matched by walking it once over the set of positions
//! reached in the channel name, so it takes time proportional to their lengths,
//! whatever the number of `*`; one with stars only is the glob of `--presence`.

use std::fmt;

use crate::config::glob_matches;

/// What a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placeholder {
    /// `{user}`: the connection's user.
    User,
    /// `{group}`: one of the connection's groups.
    Group,
    /// `{session}`: the connection's session key.
    Session,
}

impl Placeholder {
    const ALL: [(Placeholder, &'static str); 3] = [
        (Placeholder::User, "{user}"),
        (Placeholder::Group, "{group}"),
        (Placeholder::Session, "{session}"),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Box<str>),
    Star,
    Placeholder(Placeholder),
}

/// A channel pattern. See the [module docs](self).
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelPattern {
    text: Box<str>,
    tokens: Vec<Token>,
}

impl fmt::Debug for ChannelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelPattern({:?})", self.text)
    }
}

impl fmt::Display for ChannelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether `value` can stand for a placeholder: a non-empty run without `:`.
fn is_segment(value: &str) -> bool {
    !value.is_empty() && !value.contains(':')
}

impl ChannelPattern {
    /// Reads a pattern, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a channel pattern must not be empty".into());
        }
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            let placeholder = Placeholder::ALL
                .iter()
                .find(|(_, name)| rest.starts_with(name));
            let (token, len) = match (c, placeholder) {
                (_, Some((placeholder, name))) => {
                    (Some(Token::Placeholder(*placeholder)), name.len())
                }
                ('*', None) => (Some(Token::Star), 1),
                ('{' | '}', None) => {
                    return Err(format!(
                        "channel pattern {text:?}: the placeholders are {{user}}, {{group}} and {{session}}"
                    ));
                }
                (c, None) => {
                    literal.push(c);
                    (None, c.len_utf8())
                }
            };
            if let Some(token) = token {
                if !literal.is_empty() {
                    tokens.push(Token::Literal(std::mem::take(&mut literal).into()));
                }
                // `**` matches what `*` does.
                if !(token == Token::Star && tokens.last() == Some(&Token::Star)) {
                    tokens.push(token);
                }
            }
            rest = &rest[len..];
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal.into()));
        }
        Ok(Self {
            text: text.into(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has a placeholder.
    pub fn has_placeholder(&self) -> bool {
        self.tokens
            .iter()
            .any(|token| matches!(token, Token::Placeholder(_)))
    }

    /// The placeholders of the pattern, in order.
    pub(crate) fn placeholders(&self) -> impl Iterator<Item = Placeholder> + '_ {
        self.tokens.iter().filter_map(|token| match token {
            Token::Placeholder(placeholder) => Some(*placeholder),
            _ => None,
        })
    }

    /// Whether `channel` matches, each placeholder standing for any segment.
    pub fn matches(&self, channel: &str) -> bool {
        if self.has_placeholder() {
            self.walk(channel, |_| None)
        } else {
            // Only stars: the glob of `--presence`, which allocates nothing.
            glob_matches(&self.text, channel)
        }
    }

    /// Whether `channel` matches with every placeholder bound to the value `bind`
    /// gives it. A placeholder bound to no value, or to one that is not a segment,
    /// matches nothing.
    pub(crate) fn matches_bound<'v>(
        &self,
        channel: &str,
        bind: impl Fn(Placeholder) -> Option<&'v str>,
    ) -> bool {
        self.walk(channel, |placeholder| {
            Some(bind(placeholder).filter(|value| is_segment(value)))
        })
    }

    /// Walks the tokens over the positions of `channel` they can reach. `bound` says
    /// what a placeholder is: `None` any segment, `Some(Some(value))` that value,
    /// `Some(None)` nothing.
    fn walk<'v>(
        &self,
        channel: &str,
        bound: impl Fn(Placeholder) -> Option<Option<&'v str>>,
    ) -> bool {
        let text = channel.as_bytes();
        let mut reached = vec![false; text.len() + 1];
        let mut next = reached.clone();
        reached[0] = true;
        for token in &self.tokens {
            next.fill(false);
            for at in (0..=text.len()).filter(|&at| reached[at]) {
                match token {
                    Token::Literal(literal) => {
                        if text[at..].starts_with(literal.as_bytes()) {
                            next[at + literal.len()] = true;
                        }
                    }
                    Token::Star => {
                        next[at..].fill(true);
                        break;
                    }
                    Token::Placeholder(placeholder) => match bound(*placeholder) {
                        None => {
                            let segment = text[at..].iter().take_while(|&&b| b != b':').count();
                            next[at + 1..=at + segment].fill(true);
                        }
                        Some(Some(value)) => {
                            if text[at..].starts_with(value.as_bytes()) {
                                next[at + value.len()] = true;
                            }
                        }
                        Some(None) => {}
                    },
                }
            }
            std::mem::swap(&mut reached, &mut next);
        }
        reached[text.len()]
    }
}

impl TryFrom<String> for ChannelPattern {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl<'de> serde::Deserialize<'de> for ChannelPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, channel: &str) -> bool {
        ChannelPattern::parse(pattern).unwrap().matches(channel)
    }

    #[test]
    fn a_star_is_any_run_and_the_rest_is_literal() {
        for (pattern, channel, expected) in [
            ("room:*", "room:1", true),
            ("room:*", "room:", true),
            ("room:*", "room:a:b", true),
            ("room:*", "rooms:1", false),
            ("*", "anything", true),
            ("lobby", "lobby", true),
            ("lobby", "lobby2", false),
            ("a*b*c", "a-x-b-y-c", true),
            ("a*b*c", "a-c-b", false),
            ("*:ops", "team:ops", true),
            ("a*a", "a", false),
            ("a**", "a", true),
        ] {
            assert_eq!(matches(pattern, channel), expected, "{pattern} {channel}");
        }
    }

    #[test]
    fn a_placeholder_matches_one_segment() {
        for (pattern, channel, expected) in [
            ("user:{user}:*", "user:ada:chat", true),
            ("user:{user}:*", "user:ada:a:b", true),
            ("user:{user}:*", "user::chat", false),
            ("user:{user}", "user:ada", true),
            ("user:{user}", "user:ada:chat", false),
            ("{group}:{session}", "staff:k1", true),
            ("{group}", "", false),
        ] {
            assert_eq!(matches(pattern, channel), expected, "{pattern} {channel}");
        }
    }

    #[test]
    fn a_bound_placeholder_is_that_value_and_only_a_segment_binds() {
        let pattern = ChannelPattern::parse("user:{user}:*").unwrap();
        let as_user = |user: &'static str| move |_| Some(user);
        assert!(pattern.matches_bound("user:ada:chat", as_user("ada")));
        assert!(!pattern.matches_bound("user:bob:chat", as_user("ada")));
        assert!(!pattern.matches_bound("user:adam:chat", as_user("ada")));
        // `a:b` is no segment: it owns nothing, not even what spells its name.
        assert!(!pattern.matches_bound("user:a:b:chat", as_user("a:b")));
        assert!(pattern.matches_bound("user:a:b:chat", as_user("a")));
        assert!(!pattern.matches_bound("user::chat", as_user("")));
        assert!(!pattern.matches_bound("user:ada:chat", |_| None));
    }

    #[test]
    fn bad_patterns_are_named() {
        assert!(ChannelPattern::parse("").is_err());
        let err = ChannelPattern::parse("user:{name}:*").unwrap_err();
        assert!(err.contains("{user}, {group} and {session}"), "{err}");
        assert!(ChannelPattern::parse("a}").is_err());
        let parsed = ChannelPattern::parse("room:{group}:*").unwrap();
        assert!(
            parsed.has_placeholder() && !ChannelPattern::parse("room:*").unwrap().has_placeholder()
        );
        assert_eq!(
            parsed.placeholders().collect::<Vec<_>>(),
            [Placeholder::Group]
        );
        assert_eq!(parsed.to_string(), "room:{group}:*");
    }

    #[test]
    fn many_stars_take_linear_time() {
        let pattern = ChannelPattern::parse(&"*a".repeat(40)).unwrap();
        let channel = "a".repeat(39) + "b";
        assert!(!pattern.matches(&channel));
    }
}
