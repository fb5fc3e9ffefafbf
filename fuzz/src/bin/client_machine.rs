//! Fuzz target: the client's connection machine (`heartwire_core::client`), driven by
//! a script of server frames, time, the caller's messages, closes, probes and new
//! connections, on synthetic time. See `heartwire_fuzz::client` for what must hold.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| heartwire_fuzz::client::run(input));
