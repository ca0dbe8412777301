//! Sluice in numbers: a time-compressed day simulator that runs the real drain engine over in-memory
//! adapters with a virtual clock, the two baseline policies it replaces, and benchmarks against LocalStack.
//! Results go to `BENCHMARKS.md` (see its "Reproduce" section).
//!
//! # Layout
//! - [`traffic`]: the scenarios (steady, saturated, bursty, diurnal, the outage and backfill days) and the
//!   seeded change generator.
//! - [`day`]: one simulated day of one scenario under one policy; what it measures.
//! - [`fault`]: the provider down on a schedule (503s or timeouts on the virtual clock).
//! - [`outage`]: what an outage costs each policy (dead letters, calls, recovery) and its report section.
//! - [`shared_account`]: the shared-account day's table (another client spends part of the quota).
//! - [`backfill`]: the backfill day's table (1,000,000 new users on `bulk` behind the live traffic).
//! - [`urgent`]: the urgent day's table (1 % `high` changes behind the saturated day's backlog).
//! - [`rolling_provider`]: the rolling-provider day's table (a provider counting a rolling hour).
//! - [`baseline`]: the two baseline policies, re-implemented as small drain loops.
//! - [`tracker`]: the provider's view; freshness per change; no-op and stale-overwrite checks.
//! - [`metered`]: a port wrapper counting and timing every call (DynamoDB units; wall-time splits).
//! - [`report`]: markdown tables and the `BENCHMARKS.md` sections; [`plot`]: SVG plots;
//!   [`cost`]: the monthly AWS estimate.
//! - [`bench`]: drain timing against LocalStack, Lambda cold start and RSS, binary sizes.
//! - `src/bin/sluice-sim.rs`, `src/bin/sluice-bench.rs`: the two entry points.

pub mod backfill;
pub mod baseline;
pub mod bench;
pub mod cost;
pub mod day;
pub mod fault;
pub mod metered;
pub mod outage;
pub mod plot;
pub mod report;
pub mod rolling_provider;
pub mod shared_account;
pub mod summary;
pub mod tracker;
pub mod traffic;
pub mod urgent;
