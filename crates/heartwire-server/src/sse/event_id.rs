//! The `id` of an event: where the stream is in every one of its channels, so that
//! the `Last-Event-ID` a browser sends back when it reconnects resumes each of them.
//!
//! An id holds one position per `channel` parameter, in the order of the query,
//! joined by `,`. A position is `<epoch>:<seq>` (the channel's epoch and the last
//! `seq` the stream delivered), or nothing while the channel has no position yet. A
//! stream of one channel thus has ids `<epoch>:<seq>`, as `since` reads. Epochs are
//! letters and digits and `seq` is a number, so neither `,` nor `:` is ambiguous.

use heartwire_core::protocol::Position;

/// The longest epoch accepted in a `Last-Event-ID`.
const MAX_EPOCH_LEN: usize = 64;

/// The stream's position in each of its channels, in the order of the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Positions(Vec<Option<Position>>);

impl Positions {
    /// No position in any of `channels` channels: a stream that starts at the live edge.
    pub(crate) fn none(channels: usize) -> Self {
        Self(vec![None; channels])
    }

    /// Reads a `Last-Event-ID` of a stream of `channels` channels.
    pub(crate) fn parse(id: &str, channels: usize) -> Result<Self, String> {
        let positions = id
            .split(',')
            .map(|position| match position {
                "" => Ok(None),
                position => parse_position(position).map(Some),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if positions.len() != channels {
            return Err(format!(
                "Last-Event-ID {id:?} holds {} positions, but the stream has {channels} channels: it must come from a stream of the same channels, in the same order",
                positions.len()
            ));
        }
        Ok(Self(positions))
    }

    /// The position in the `index`th channel.
    pub(crate) fn get(&self, index: usize) -> Option<&Position> {
        self.0[index].as_ref()
    }

    /// Moves the `index`th channel to `position`.
    pub(crate) fn set(&mut self, index: usize, position: Position) {
        self.0[index] = Some(position);
    }

    /// The `index`th channel delivered message `seq`. A message without a `seq` (0:
    /// published into Redis by other software, never replayed) moves nothing, and
    /// neither does one before the channel's confirmation gave it an epoch.
    pub(crate) fn advance(&mut self, index: usize, seq: u64) {
        if let Some(position) = &mut self.0[index]
            && seq != 0
        {
            position.seq = seq;
        }
    }

    /// The id that resumes every channel from here.
    pub(crate) fn encode(&self) -> String {
        let mut id = String::new();
        for (index, position) in self.0.iter().enumerate() {
            if index > 0 {
                id.push(',');
            }
            if let Some(Position { epoch, seq }) = position {
                id.push_str(epoch);
                id.push(':');
                id.push_str(&seq.to_string());
            }
        }
        id
    }
}

fn parse_position(position: &str) -> Result<Position, String> {
    let bad = || {
        format!(
            "Last-Event-ID position {position:?} is not <epoch>:<seq> (letters and digits, a colon, a number)"
        )
    };
    let (epoch, seq) = position.split_once(':').ok_or_else(bad)?;
    let epoch_ok = !epoch.is_empty()
        && epoch.len() <= MAX_EPOCH_LEN
        && epoch.bytes().all(|byte| byte.is_ascii_alphanumeric());
    if !epoch_ok || !seq.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(bad());
    }
    let seq = seq.parse().map_err(|_| bad())?;
    Ok(Position {
        epoch: epoch.to_owned(),
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: &str, seq: u64) -> Position {
        Position {
            epoch: epoch.into(),
            seq,
        }
    }

    #[test]
    fn one_channel_has_the_epoch_and_seq_form() {
        let mut positions = Positions::none(1);
        assert_eq!(positions.encode(), "");
        positions.set(0, at("5f3a9c01d2e4b6a8", 42));
        assert_eq!(positions.encode(), "5f3a9c01d2e4b6a8:42");
        assert_eq!(Positions::parse("5f3a9c01d2e4b6a8:42", 1), Ok(positions));
    }

    #[test]
    fn several_channels_keep_the_order_of_the_query_and_may_lack_a_position() {
        let mut positions = Positions::none(3);
        positions.set(0, at("aa", 7));
        positions.set(2, at("bb", 0));
        let id = positions.encode();
        assert_eq!(id, "aa:7,,bb:0");
        let parsed = Positions::parse(&id, 3).unwrap();
        assert_eq!(parsed, positions);
        assert_eq!(parsed.get(1), None);
        assert_eq!(parsed.get(2), Some(&at("bb", 0)));
    }

    #[test]
    fn messages_advance_their_channel_but_one_without_a_seq_does_not() {
        let mut positions = Positions::none(2);
        positions.advance(0, 3);
        assert_eq!(positions.encode(), ",", "no epoch yet");
        positions.set(0, at("aa", 2));
        positions.advance(0, 3);
        positions.advance(0, 0);
        assert_eq!(positions.encode(), "aa:3,");
    }

    #[test]
    fn a_malformed_id_is_refused_with_a_sentence() {
        for (id, channels) in [
            ("aa:7", 2),
            ("aa:7,bb:1", 1),
            ("aa", 1),
            ("aa:x", 1),
            ("a a:1", 1),
            (":1", 1),
            ("aa:-1", 1),
            ("aa:99999999999999999999999", 1),
        ] {
            let refused = Positions::parse(id, channels).unwrap_err();
            assert!(refused.starts_with("Last-Event-ID"), "{id}: {refused}");
        }
    }
}
