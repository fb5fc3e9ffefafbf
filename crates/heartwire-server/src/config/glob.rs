//! The patterns of `--presence`: `*` stands for any run of characters.

/// Whether `text` matches `pattern`, where `*` stands for any run of characters
/// (none included) and every other character for itself.
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut text) = text.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&str> = rest.split('*').collect();
    let last = pieces.pop().unwrap_or("");
    for piece in pieces {
        match text.find(piece) {
            Some(at) => text = &text[at + piece.len()..],
            None => return false,
        }
    }
    text.len() >= last.len() && text.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_patterns_are_globs() {
        for (pattern, text, expected) in [
            ("room:*", "room:1", true),
            ("room:*", "room:", true),
            ("room:*", "rooms:1", false),
            ("*", "anything", true),
            ("lobby", "lobby", true),
            ("lobby", "lobby2", false),
            ("a*b*c", "a-x-b-y-c", true),
            ("a*b*c", "a-c-b", false),
            ("*:ops", "team:ops", true),
            ("a*a", "a", false),
        ] {
            assert_eq!(glob_matches(pattern, text), expected, "{pattern} {text}");
        }
    }
}
