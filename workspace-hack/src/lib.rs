//! No code: this crate only depends on things, with features.
//!
//! Cargo unifies a dependency's features over the packages of one build, so `cargo build -p ingest -p drain`
//! and `cargo test --workspace` would compile the AWS SDK chain (hyper, aws-smithy-*, aws-sdk-*) with
//! different features, i.e. twice, and every switch between them would rebuild it. Every workspace
//! package depends on this crate (through `sluice`, or directly), which turns on the union of those features
//! in every build, so each profile builds each dependency once. `infra/check-features` keeps it true.
