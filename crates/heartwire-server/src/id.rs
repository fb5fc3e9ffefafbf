//! The ids the server makes up: a connection's, a channel's epoch, a node's. Each is
//! random, so nodes that share channels never pick the same one, without asking
//! each other.

/// Identifies a connection across the server (and, being random, across nodes). On
/// the wire it is the session id, written by
/// [`session_name`](heartwire_core::protocol::session_name).
pub type ConnectionId = u64;

/// A fresh connection id.
pub(crate) fn new_connection_id() -> ConnectionId {
    rand::random()
}

pub(crate) use heartwire_core::protocol::random_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_sixteen_hex_digits_and_differ() {
        let (first, second) = (random_id(), random_id());
        for id in [&first, &second] {
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.bytes().all(|digit| digit.is_ascii_hexdigit()), "{id}");
        }
        assert_ne!(first, second);
    }
}
