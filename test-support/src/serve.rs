//! [`LocalServe`]: `sluice local serve` — the process `make up` runs for both functions — started for a
//! test against its [`TestStack`] and a provider, as `infra/local/up` starts it, with the drain's Lambda
//! Invoke API route called the way `cargo lambda invoke` calls it. Used by `cli/tests/local_serve.rs` and
//! `cli/tests/backfill.rs`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sluice_tests::emulator::EmulatorConfig;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::TestStack;
use crate::events::SCHEDULED_EVENT;

/// The local server; killed when dropped.
pub struct LocalServe {
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:<port>`: ingest is under `/lambda-url/ingest`, the drain's Invoke API route
    /// under `/2015-03-31/functions/drain/invocations`.
    pub base: String,
}

impl LocalServe {
    /// Starts `program` (the `sluice` binary) as `sluice local serve` on a free port with no drain timer,
    /// the provider at `provider` (account and key from `emulator`), ingest requiring `api_key`, and the
    /// extra variables `env` (e.g. `DRAIN_MAX_MESSAGES`). Its log goes to this test's stderr.
    pub async fn start(
        stack: &TestStack,
        program: &str,
        provider: &str,
        emulator: &EmulatorConfig,
        api_key: &str,
        env: &[(&str, &str)],
    ) -> Self {
        // Only what `make up` writes to .sluice/local.env; nothing from the developer's shell.
        let mut command = stack.sluice_command(program);
        command
            .args(["local", "serve", "--listen", "127.0.0.1:0"])
            // No timer: the drain runs only when the test invokes it.
            .args(["--drain-every", "0"])
            .env("PROVIDER_BASE_URL", provider)
            .env("PROVIDER_ACCOUNT_ID", &emulator.account_id)
            .env("PROVIDER_API_KEY", &emulator.api_key)
            .env("INGEST_API_KEY", api_key)
            .env("SLUICE_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        // The server names its address once it listens; its later log lines go on to this test's stderr.
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                eprintln!("serve: {line}");
                if let Some(rest) = line.split("ingest on ").nth(1) {
                    let url = rest.split("/lambda-url/").next().unwrap();
                    return url.to_owned();
                }
            }
            panic!("sluice local serve exited before listening");
        })
        .await
        .expect("sluice local serve did not start listening within 60 s");
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("serve: {line}");
            }
        });
        Self { child, base }
    }

    /// The ingest API's base (what `sluice backfill --url` takes).
    pub fn ingest_url(&self) -> String {
        format!("{}/lambda-url/ingest", self.base)
    }

    /// Invokes the drain through the Lambda Invoke API route with the scheduled-event fixture; the run's
    /// report. Panics if the route fails or the handler reports an error.
    pub async fn invoke_drain(&self, http: &reqwest::Client) -> Value {
        let r = http
            .post(format!(
                "{}/2015-03-31/functions/drain/invocations",
                self.base
            ))
            .body(SCHEDULED_EVENT)
            .send()
            .await
            .expect("the drain did not answer");
        assert_eq!(r.status().as_u16(), 200);
        assert!(
            r.headers().get("x-amz-function-error").is_none(),
            "the drain failed"
        );
        r.json().await.unwrap()
    }
}
