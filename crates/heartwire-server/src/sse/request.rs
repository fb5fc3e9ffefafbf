//! What a `GET /sse` asks for: its channels (the `channel` parameters of the query)
//! and, when a browser reconnects, the positions of its `Last-Event-ID` header (else
//! of the `lastEventId` parameter, with which a page opens a new `EventSource` where
//! an old one stopped). A bad request is refused with a sentence, before anything
//! else is done.

use std::sync::Arc;

use heartwire_core::protocol::validate_channel;

use super::event_id::Positions;

/// The query parameters `/sse` reads; any other is refused.
const KNOWN_PARAMETERS: [&str; 3] = ["channel", "token", "lastEventId"];

/// A valid request for a stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StreamRequest {
    /// The channels, in the order of the query: the order of positions in the ids.
    pub(crate) channels: Vec<Arc<str>>,
    /// Where to resume each channel, when the request had a `Last-Event-ID`.
    pub(crate) resume: Option<Positions>,
}

impl StreamRequest {
    /// Reads `query` and the `Last-Event-ID` header, which wins over the query's
    /// `lastEventId` (a browser that reconnects sends its newer id in the header, to
    /// the URL that holds the older one); at most `max_channels` channels.
    pub(crate) fn parse(
        query: Option<&str>,
        last_event_id: Option<&str>,
        max_channels: usize,
    ) -> Result<Self, String> {
        let mut channels: Vec<Arc<str>> = Vec::new();
        let mut id_in_query = None;
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if !KNOWN_PARAMETERS.contains(&name.as_ref()) {
                return Err(format!(
                    "unknown query parameter {name:?}: /sse takes channel (one per channel), token and lastEventId"
                ));
            }
            match name.as_ref() {
                "channel" => {}
                "lastEventId" => {
                    id_in_query = Some(value.into_owned());
                    continue;
                }
                _ => continue,
            }
            validate_channel(&value).map_err(|err| err.to_string())?;
            if channels.iter().any(|held| **held == *value) {
                return Err(format!("channel {value} is given twice"));
            }
            channels.push(Arc::from(value.as_ref()));
        }
        if channels.is_empty() {
            return Err("no channel: name one or more with channel=NAME in the query".into());
        }
        if channels.len() > max_channels {
            return Err(format!(
                "{} channels asked for: a stream may have at most {max_channels} (max-subscriptions)",
                channels.len()
            ));
        }
        let resume = last_event_id
            .or(id_in_query.as_deref())
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| Positions::parse(id, channels.len()))
            .transpose()?;
        Ok(Self { channels, resume })
    }
}

#[cfg(test)]
mod tests {
    use heartwire_core::protocol::Position;

    use super::*;

    #[test]
    fn channels_come_in_the_order_of_the_query() {
        let request =
            StreamRequest::parse(Some("channel=b&token=x&channel=room%3Aa"), None, 8).unwrap();
        let names: Vec<&str> = request.channels.iter().map(|c| &**c).collect();
        assert_eq!(names, ["b", "room:a"]);
        assert_eq!(request.resume, None);
    }

    #[test]
    fn the_last_event_id_gives_each_channel_its_position() {
        let request = StreamRequest::parse(Some("channel=a&channel=b"), Some(",e1:4"), 8).unwrap();
        let resume = request.resume.unwrap();
        assert_eq!(resume.get(0), None);
        assert_eq!(
            resume.get(1),
            Some(&Position {
                epoch: "e1".into(),
                seq: 4
            })
        );
        // An empty id is no id.
        let fresh = StreamRequest::parse(Some("channel=a"), Some(""), 8).unwrap();
        assert_eq!(fresh.resume, None);
        // The query's id serves when there is no header, which wins over it.
        let from_query = StreamRequest::parse(Some("channel=a&lastEventId=e1%3A4"), None, 8);
        let header_wins =
            StreamRequest::parse(Some("channel=a&lastEventId=e1%3A4"), Some("e1:9"), 8);
        let seq = |request: Result<StreamRequest, String>| {
            request.unwrap().resume.unwrap().get(0).unwrap().seq
        };
        assert_eq!((seq(from_query), seq(header_wins)), (4, 9));
    }

    #[test]
    fn bad_queries_are_refused_with_a_sentence() {
        let cases = [
            (None, None, "no channel"),
            (Some("token=x"), None, "no channel"),
            (
                Some("channel=a&since=3"),
                None,
                "unknown query parameter \"since\"",
            ),
            (Some("channel=a%20b"), None, "invalid channel name"),
            (Some("channel="), None, "invalid channel name"),
            (Some("channel=a&channel=a"), None, "given twice"),
            (Some("channel=a&channel=b&channel=c"), None, "at most 2"),
            (Some("channel=a"), Some("e:1,e:2"), "Last-Event-ID"),
        ];
        for (query, id, expected) in cases {
            let refused = StreamRequest::parse(query, id, 2).unwrap_err();
            assert!(refused.contains(expected), "{query:?} {id:?}: {refused}");
        }
    }
}
