//! Shared harness of the integration tests, from `sluice-test-support`: one CloudFormation stack from
//! `template.yaml` per test on LocalStack (random name: tests never share a queue or table), the provider
//! emulator in-process on a random port, the real `Config` the functions would load, and the drain
//! invoked through its handler.
// Each test binary uses a part of this module.
#![allow(dead_code, unused_imports)]

pub use sluice_test_support::TestStack;
pub use sluice_test_support::drain_run::{invoke, start_emulator as emulator};

/// Deploys `template.yaml` as a fresh stack (`t-<random>`). Panics with a pointer to `make test` if
/// LocalStack is down.
pub async fn stack() -> TestStack {
    TestStack::deploy("t", &[]).await
}
