//! The heartwire server: axum routes over a hand-held accept loop.
