//! Drain engine tests over the in-memory adapters.
