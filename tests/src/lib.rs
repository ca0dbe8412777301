//! Test support for Sluice that must not depend on Sluice itself.
//!
//! # Layout
//! - [`emulator`]: the Drip-compatible provider emulator — a real HTTP server with the provider's limits,
//!   validation and fault injection, spawned in-process by tests ([`emulator::Emulator::spawn`]) and run
//!   by the demo as the `provider-emulator` binary (`src/bin/provider-emulator.rs`).

pub mod emulator;
