//! What heartwire's fuzz targets share: the oracles they check the code under test
//! against, and the plumbing that feeds it.
//!
//! Each file in `src/bin/` is one libFuzzer target and stays small: it reads its input
//! and calls into the modules here.
//!
//! - [`frames`]: the server's frame decoder run on one byte stream in several ways
//!   (whole, byte by byte, in random chunks, stopped after every message, partly with
//!   the handshake), each of which must give the same messages as [`reference`], an
//!   independent and deliberately plain reading of RFC 6455.
//! - [`upgrade`]: what the upgrade extractor must answer to a request, checked against
//!   the rules of RFC 6455 §4.2.1, and the in-memory stream that carries raw HTTP
//!   bytes through hyper to it.
//! - [`envelope`]: round trips of the JSON envelopes.
//! - [`deflate`]: permessage-deflate's offer parser (its answers are offers it
//!   accepts) and its inflater (never past its limit), and compression round trips.
//! - [`client`]: the client's connection machine, driven by a fuzzed script on
//!   synthetic time, with the invariants of its outputs.
//! - [`split`]: a small deterministic generator for cutting inputs.

pub mod client;
pub mod deflate;
pub mod envelope;
pub mod frames;
pub mod reference;
pub mod split;
pub mod upgrade;
