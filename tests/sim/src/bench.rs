//! Benchmarks outside the simulator: the drain against LocalStack and the provider emulator (wall time
//! split into SQS, DynamoDB, provider and Sluice's own time), the release `bootstrap` binaries' cold start
//! and peak RSS against a local Lambda runtime API, and artifact sizes. The ingest handler's own latency
//! is benchmarked in `functions/ingest/benches/handler.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_config::SdkConfig;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};
use sluice::Config;
use sluice::adapters::dynamo::DynamoState;
use sluice::adapters::provider_http::HttpProvider;
use sluice::adapters::secrets;
use sluice::adapters::sqs::SqsChangeQueue;
use sluice::config::FromVars;
use sluice::domain::{Change, ChangeId, ChangeMessage, Email, Priority, RequestId};
use sluice::drain::{Drain, DrainReport, DrainSettings};
use sluice::ports::{ChangeQueue, DrainAdapters, Lanes, SystemClock};
use sluice::startup::{AwsDrainPorts, aws_drain, drain_timeouts};
use sluice_cli::stack::StackOutputs;
use sluice_test_support::TestStack;
use sluice_test_support::drain_run::start_emulator;
use sluice_test_support::localstack::endpoint;
use sluice_test_support::stack::batch_entries;
use sluice_tests::emulator::{EmulatorConfig, EmulatorHandle};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

use crate::metered::{Meter, Metered, Op, Service};
use crate::summary::{ColdStart, DrainTiming, Size, repo_root};

/// The drain's ports with every call metered.
pub type MeteredAwsPorts = DrainAdapters<
    Metered<SqsChangeQueue>,
    Metered<DynamoState>,
    Metered<DynamoState>,
    Metered<HttpProvider>,
    SystemClock,
    Metered<DynamoState>,
    Metered<DynamoState>,
    Metered<DynamoState>,
>;

/// The bench's stack: a [`TestStack`] with the bench's 5 s provider timeout, concurrent enqueues, and
/// errors returned rather than panics. Deleted by [`BenchStack::destroy`].
pub struct BenchStack {
    stack: TestStack,
}

impl BenchStack {
    pub async fn deploy() -> anyhow::Result<Self> {
        Ok(Self {
            stack: TestStack::try_deploy("bench", &[]).await?,
        })
    }

    pub fn outputs(&self) -> &StackOutputs {
        &self.stack.outputs
    }

    pub fn sdk(&self) -> &SdkConfig {
        &self.stack.sdk
    }

    /// The configuration the drain would load, pointed at this stack and the emulator.
    pub fn config(
        &self,
        emulator: &EmulatorHandle,
        overrides: &[(&str, &str)],
    ) -> anyhow::Result<Config> {
        let env = self.env(emulator, overrides);
        Ok(Config::from_lookup(|k| env.get(k).cloned())?)
    }

    /// The function environment (configuration only; no AWS credentials).
    pub fn env(
        &self,
        emulator: &EmulatorHandle,
        overrides: &[(&str, &str)],
    ) -> BTreeMap<String, String> {
        let mut all = vec![("PROVIDER_TIMEOUT_MS", "5000")];
        all.extend_from_slice(overrides);
        self.stack.drain_env(emulator, &all)
    }

    /// Enqueues changes the way ingest does (versioned bodies, `SendMessageBatch` of 10, 10 in parallel).
    pub async fn enqueue(&self, changes: &[Change]) -> anyhow::Result<()> {
        let bodies: Vec<String> = changes
            .iter()
            .map(|c| ChangeMessage::V1(c.clone()).to_body())
            .collect();
        let calls: Vec<_> = bodies
            .chunks(10)
            .map(|chunk| {
                self.stack
                    .sqs
                    .send_message_batch()
                    .queue_url(&self.stack.outputs.queue_url)
                    .set_entries(Some(batch_entries(chunk)))
                    .send()
            })
            .collect();
        use futures::StreamExt as _;
        let results: Vec<_> = futures::stream::iter(calls)
            .buffer_unordered(10)
            .collect()
            .await;
        for r in results {
            let out = r.context("enqueueing bench messages")?;
            if !out.failed().is_empty() {
                bail!("{} bench messages were refused", out.failed().len());
            }
        }
        Ok(())
    }

    /// Messages left on the queue (visible + in flight).
    pub async fn depth(&self) -> anyhow::Result<u64> {
        let (visible, in_flight) = self.stack.try_depth(&self.stack.outputs.queue_url).await?;
        Ok(visible + in_flight)
    }

    pub async fn purge(&self) -> anyhow::Result<()> {
        self.stack.purge(&self.stack.outputs.queue_url).await
    }

    pub async fn destroy(self) {
        self.stack.destroy().await;
    }
}

/// The drain's SQS adapter with its client configured as [`aws_drain`] configures it.
pub fn drain_queue(config: &Config, sdk: &SdkConfig) -> SqsChangeQueue {
    let client = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .timeout_config(drain_timeouts())
            .build(),
    );
    SqsChangeQueue::new(client, &config.queue_url, &config.dlq_url)
}

/// Every lane's queue as the drain reads it (the normal one is [`drain_queue`]'s).
pub fn drain_lanes(config: &Config, sdk: &SdkConfig) -> Lanes<SqsChangeQueue> {
    let normal = drain_queue(config, sdk);
    config.lanes.clone().map(|lane, url| match lane {
        Priority::Normal => normal.clone(),
        _ => normal.for_url(url),
    })
}

/// The drain over metered AWS adapters: the same construction as [`aws_drain`], each port wrapped.
pub async fn metered_drain(
    config: &Config,
    sdk: &SdkConfig,
    meter: &Meter,
) -> anyhow::Result<Drain<MeteredAwsPorts>> {
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .timeout_config(drain_timeouts())
            .build(),
    );
    let state = DynamoState::new(dynamo, &config.table_name);
    let m = |x: DynamoState| Metered::new(x, meter.clone());
    let ports = DrainAdapters {
        lanes: drain_lanes(config, sdk).map(|_, q| Metered::new(q, meter.clone())),
        ledger: m(state.clone()),
        sync_state: m(state.clone()),
        provider: Metered::new(
            HttpProvider::from_config(config, secrets::provider_api_key(config, sdk).await?)?,
            meter.clone(),
        ),
        clock: SystemClock,
        lease: m(state.clone()),
        circuit: m(state.clone()),
        requests: m(state),
    };
    Ok(Drain::new(ports, DrainSettings::from_config(config)))
}

/// User and CPU time of this process so far (`/proc/self/stat`, clock ticks of 10 ms).
pub fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Which changes a drain case enqueues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Users {
    /// 1,000 different users: 1,000 records.
    Distinct,
    /// Users drawn Zipf(1.1) from 100,000, as in the simulator: fewer records than messages.
    Zipf,
}

fn changes(users: Users, prefix: &str, n: usize, seed: u64) -> anyhow::Result<Vec<Change>> {
    let now = Utc::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let zipf = Zipf::new(100_000.0, 1.1)?;
    (0..n)
        .map(|i| {
            let user = match users {
                Users::Distinct => i as u64,
                Users::Zipf => zipf.sample(&mut rng) as u64,
            };
            Ok(Change {
                change_id: ChangeId::new(),
                request_id: RequestId::new(),
                email: Email::parse(&format!("{prefix}-u{user}@example.com"))?,
                name: Some(format!("n{i}")),
                time_zone: None,
                custom_fields: BTreeMap::from([("last_order".to_string(), format!("o{i}"))]),
                occurred_at: now + chrono::Duration::milliseconds(i as i64),
                priority: Priority::Normal,
                accepted_at: now,
                position: 0,
                request_size: Some(1),
            })
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// One drain case: what is enqueued, and the settings the case must change from `Config`'s defaults.
#[derive(Debug, Clone)]
pub struct DrainCase {
    /// Short stable name ([`DrainTiming::id`]).
    pub id: &'static str,
    /// The label in the report, written from the settings the case runs with.
    pub label: String,
    pub users: Users,
    pub messages: usize,
    pub overrides: Vec<(&'static str, String)>,
    pub iterations: u32,
}

/// The floor of a drain case: the drain's own SQS adapter (client configured as the drain's) receiving
/// `changes` freshly enqueued, through the same `receive` port method (rounds of 10 parallel calls of
/// 10), until all are in hand, then deleting them through `delete` (batches of 10, 10 in parallel) —
/// what any drain of these messages must do, and nothing else. Returns the wall time and the messages
/// moved.
pub async fn sqs_floor(
    stack: &BenchStack,
    queue: &SqsChangeQueue,
    changes: &[Change],
) -> anyhow::Result<(Duration, usize)> {
    stack.enqueue(changes).await?;
    let t = Instant::now();
    let mut receipts = Vec::with_capacity(changes.len());
    while receipts.len() < changes.len() {
        let got = queue
            .receive((changes.len() - receipts.len()) as u32)
            .await?;
        if got.is_empty() {
            break;
        }
        receipts.extend(got.into_iter().map(|m| m.receipt));
    }
    let failed = queue.delete(&receipts).await?;
    let wall = t.elapsed();
    Ok((wall, receipts.len() - failed.len()))
}

/// Purges the queue if a run left messages on it (so the next run starts from an empty queue).
async fn empty_queue(stack: &BenchStack, what: &str) -> anyhow::Result<()> {
    let left = stack.depth().await?;
    if left > 0 {
        eprintln!("  ({what}: {left} messages left after a run; purging)");
        stack.purge().await?;
    }
    Ok(())
}

/// Times `iterations` drain runs of a case (after one warm-up run), metered and not, and the case's
/// SQS-only floor ([`sqs_floor`]) in each iteration, right after the metered run. Each run gets the
/// deadline Lambda would give it (`DRAIN_TIMEOUT_SECONDS` from its start); a run that ends in an error is
/// counted and reported, not fatal.
pub async fn time_drain(
    stack: &BenchStack,
    emulator: &EmulatorHandle,
    case: &DrainCase,
) -> anyhow::Result<DrainTiming> {
    let overrides: Vec<(&str, &str)> = case
        .overrides
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let (users, messages, iterations) = (case.users, case.messages, case.iterations);
    let config = stack.config(emulator, &overrides)?;
    let meter = Meter::with_spans();
    let metered = metered_drain(&config, stack.sdk(), &meter).await?;
    let plain: Drain<AwsDrainPorts> = aws_drain(&config, stack.sdk()).await?;
    let floor_queue = drain_queue(&config, stack.sdk());
    let mut rows: Vec<(Option<DrainReport>, [f64; 7], u64, u64)> = Vec::new();
    let (mut unmetered, mut floors, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    // The deadline Lambda gives an invocation: its start plus the function's timeout.
    let deadline =
        || Utc::now() + chrono::Duration::milliseconds(config.drain_timeout.as_millis() as i64);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    for i in 0..=iterations {
        let seed = u64::from(i) + 1;
        stack
            .enqueue(&changes(users, &format!("b{tag:.8}{i}m"), messages, seed)?)
            .await?;
        meter.reset();
        let cpu = process_cpu();
        let t = Instant::now();
        let report = metered.run(deadline()).await;
        let wall = t.elapsed();
        let report = match report {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!(
                    "  ({}: run {i} ended in an error after {:.0} ms: {e})",
                    case.label,
                    ms(wall)
                );
                if i > 0 {
                    failures.push(e.to_string());
                }
                None
            }
        };
        let cpu = process_cpu().saturating_sub(cpu);
        empty_queue(stack, &case.label).await?;
        let provider = meter.covered(Some(Service::Provider));
        let any = meter.covered(None);
        let calls = |svc: Service| -> u64 {
            meter
                .stats()
                .iter()
                .filter(|(op, _)| op.service() == svc)
                .map(|(op, s)| {
                    // A port call of n items makes several service calls; count what the adapters send.
                    match op {
                        Op::QueueDelete | Op::QueueRelease => s.items.div_ceil(10).max(s.calls),
                        Op::QueueReceive => s.items.div_ceil(10).max(s.calls),
                        Op::SyncLoad => s.items.div_ceil(100).max(s.calls),
                        Op::RequestsAdd => s.items,
                        _ => s.calls,
                    }
                })
                .sum()
        };
        let figures = [
            ms(wall),
            ms(meter.covered(Some(Service::Sqs))),
            ms(meter.covered(Some(Service::DynamoDb))),
            ms(provider),
            ms(wall.saturating_sub(any)),
            ms(wall.saturating_sub(provider)),
            ms(cpu),
        ];
        if i > 0 {
            rows.push((
                report,
                figures,
                calls(Service::Sqs),
                calls(Service::DynamoDb),
            ));
        }

        // The floor: as many messages of the same kind, received and deleted and nothing else.
        let (floor, moved) = sqs_floor(
            stack,
            &floor_queue,
            &changes(users, &format!("b{tag:.8}{i}f"), messages, seed)?,
        )
        .await?;
        if moved < messages {
            eprintln!(
                "  ({}: the floor moved {moved} of {messages} messages)",
                case.label
            );
        }
        empty_queue(stack, "floor").await?;
        if i > 0 {
            floors.push(ms(floor));
        }

        // The same run without the wrappers, through `aws_drain` as the Lambda builds it.
        stack
            .enqueue(&changes(
                users,
                &format!("b{tag:.8}{i}p"),
                messages,
                seed + 100,
            )?)
            .await?;
        let t = Instant::now();
        if let Err(e) = plain.run(deadline()).await {
            eprintln!(
                "  ({}: unmetered run {i} ended in an error: {e})",
                case.label
            );
        }
        if i > 0 {
            unmetered.push(ms(t.elapsed()));
        }
        if stack.depth().await? > 0 {
            stack.purge().await?;
        }
    }
    let col = |k: usize| median(rows.iter().map(|r| r.1[k]).collect());
    let last = rows
        .iter()
        .rev()
        .find_map(|r| r.0.clone())
        .unwrap_or_default();
    Ok(DrainTiming {
        id: case.id.to_string(),
        case: case.label.clone(),
        iterations,
        received: last.received,
        records: last.delivered_records(),
        batches: last.requests.batch,
        individual: last.requests.individual,
        wall_ms: col(0),
        sqs_ms: col(1),
        dynamo_ms: col(2),
        provider_ms: col(3),
        own_ms: col(4),
        wall_excluding_provider_ms: col(5),
        unmetered_wall_ms: median(unmetered),
        process_cpu_ms: col(6),
        sqs_calls: rows.last().map_or(0, |r| r.2),
        dynamo_calls: rows.last().map_or(0, |r| r.3),
        floor_ms: median(floors),
        failed_runs: failures.len() as u32,
        failure: failures.into_iter().next().unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------------------------
// A local Lambda runtime API

#[derive(Debug, Default)]
struct RuntimeState {
    events: Mutex<VecDeque<(String, String)>>,
    event_ready: Notify,
    polls: Mutex<Vec<Instant>>,
    responses: Mutex<Vec<(String, Instant, bool, String)>>,
    responded: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn next_invocation(State(s): State<Arc<RuntimeState>>) -> Response {
    lock(&s.polls).push(Instant::now());
    loop {
        let ready = s.event_ready.notified();
        if let Some((id, body)) = lock(&s.events).pop_front() {
            let mut headers = HeaderMap::new();
            let deadline = (Utc::now() + chrono::Duration::seconds(60)).timestamp_millis();
            let pairs = [
                ("lambda-runtime-aws-request-id", id.clone()),
                ("lambda-runtime-deadline-ms", deadline.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:000000000000:function:bench".to_string(),
                ),
                (
                    "lambda-runtime-trace-id",
                    format!("Root=1-00000000-{id:.24};Parent=0000000000000000;Sampled=0"),
                ),
                ("content-type", "application/json".to_string()),
            ];
            for (k, v) in pairs {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    headers.insert(k, v);
                }
            }
            return (StatusCode::OK, headers, body).into_response();
        }
        ready.await;
    }
}

async fn invocation_response(
    State(s): State<Arc<RuntimeState>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    lock(&s.responses).push((id, Instant::now(), false, body));
    s.responded.notify_one();
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(s): State<Arc<RuntimeState>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    lock(&s.responses).push((id, Instant::now(), true, body));
    s.responded.notify_one();
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<Arc<RuntimeState>>, body: String) -> StatusCode {
    lock(&s.responses).push(("init".into(), Instant::now(), true, body));
    s.responded.notify_one();
    StatusCode::ACCEPTED
}

/// The two runtime API endpoints a Rust Lambda uses (plus the error ones), on `127.0.0.1:<free port>`.
pub struct RuntimeApi {
    pub addr: std::net::SocketAddr,
    state: Arc<RuntimeState>,
    task: tokio::task::JoinHandle<()>,
    seq: AtomicU64,
}

impl RuntimeApi {
    pub async fn start() -> anyhow::Result<Self> {
        let state = Arc::new(RuntimeState::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(invocation_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            state,
            task,
            seq: AtomicU64::new(0),
        })
    }

    /// Queues an invocation; returns its request id.
    pub fn invoke(&self, body: &str) -> String {
        let id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::SeqCst)
        );
        lock(&self.state.events).push_back((id.clone(), body.to_string()));
        self.state.event_ready.notify_one();
        id
    }

    /// Waits for the answer to `id`: (when it arrived, whether it was an error, the body).
    pub async fn answer(&self, id: &str, timeout: Duration) -> anyhow::Result<(Instant, String)> {
        let until = Instant::now() + timeout;
        loop {
            let responded = self.state.responded.notified();
            if let Some((_, at, error, body)) = lock(&self.state.responses)
                .iter()
                .find(|(rid, ..)| rid == id || rid == "init")
                .cloned()
            {
                if error {
                    bail!("the function answered an error: {body}");
                }
                return Ok((at, body));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no answer to invocation {id} within {timeout:?}");
            }
            let _ = tokio::time::timeout(left, responded).await;
        }
    }

    pub fn first_poll(&self) -> Option<Instant> {
        lock(&self.state.polls).first().copied()
    }

    /// Forgets polls and responses (between cold starts).
    pub fn reset(&self) {
        lock(&self.state.polls).clear();
        lock(&self.state.responses).clear();
        lock(&self.state.events).clear();
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Peak resident set (`VmHWM`) of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1_024.0)
}

/// What one function is started with, and the event it is invoked with.
pub struct FunctionUnderTest {
    pub name: String,
    pub bootstrap: PathBuf,
    pub memory_mb: u32,
    pub env: BTreeMap<String, String>,
    pub event: String,
    pub what: String,
}

/// Starts the bootstrap `runs` times: cold start, then `warm` warm invocations each time.
pub async fn cold_start(
    api: &RuntimeApi,
    f: &FunctionUnderTest,
    runs: u32,
    warm: u32,
) -> anyhow::Result<ColdStart> {
    let (mut init, mut cold, mut first) = (Vec::new(), Vec::new(), Vec::new());
    let (mut warm_ms, mut rss_cold, mut rss_peak, mut log_bytes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        api.reset();
        let id = api.invoke(&f.event);
        let mut cmd = tokio::process::Command::new(&f.bootstrap);
        cmd.env_clear()
            .envs(&f.env)
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &f.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string())
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", f.name),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", f.bootstrap.display()))?;
        let pid = child.id().context("the bootstrap exited at once")?;
        let bytes = Arc::new(AtomicU64::new(0));
        let tail = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let outs: Vec<Box<dyn tokio::io::AsyncRead + Unpin + Send>> = [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for mut out in outs {
            let bytes = Arc::clone(&bytes);
            let tail = Arc::clone(&tail);
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 8_192];
                while let Ok(n) = out.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    bytes.fetch_add(n as u64, Ordering::SeqCst);
                    let mut t = lock(&tail);
                    t.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if t.len() > 4_000 {
                        let cut = t.len() - 2_000;
                        let cut = (cut..t.len()).find(|i| t.is_char_boundary(*i)).unwrap_or(0);
                        t.drain(..cut);
                    }
                }
            }));
        }
        let answered = api.answer(&id, Duration::from_secs(60)).await;
        let (at, _) = match answered {
            Ok(a) => a,
            Err(e) => {
                let _ = child.kill().await;
                bail!("{}: {e:#}\nits output ended with:\n{}", f.name, lock(&tail));
            }
        };
        let polled = api.first_poll().unwrap_or(at);
        init.push(ms(polled - t0));
        first.push(ms(at - polled));
        cold.push(ms(at - t0));
        rss_cold.push(peak_rss_mib(pid).unwrap_or(0.0));
        // Let the cold invocation's log lines land before counting the warm ones'.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = bytes.load(Ordering::SeqCst);
        for _ in 0..warm {
            let t = Instant::now();
            let id = api.invoke(&f.event);
            let (at, _) = api.answer(&id, Duration::from_secs(60)).await?;
            warm_ms.push(ms(at - t));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        log_bytes.push((bytes.load(Ordering::SeqCst) - before) as f64 / f64::from(warm.max(1)));
        rss_peak.push(peak_rss_mib(pid).unwrap_or(0.0));
        let _ = child.kill().await;
        for r in readers {
            let _ = r.await;
        }
    }
    let mut sorted = warm_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let p90 = sorted
        .get(((sorted.len() as f64 * 0.9).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    Ok(ColdStart {
        function: f.name.clone(),
        runs,
        init_ms: median(init),
        cold_ms: median(cold),
        first_invoke_ms: median(first),
        warm_p50_ms: median(warm_ms),
        warm_p90_ms: p90,
        rss_cold_mib: median(rss_cold),
        rss_peak_mib: median(rss_peak),
        log_bytes_per_invoke: median(log_bytes),
        what: f.what.clone(),
    })
}

/// Where `cargo lambda build --release --x86-64` leaves a function's binary (the zip's `bootstrap`).
pub fn bootstrap_path(function: &str) -> PathBuf {
    repo_root()
        .join("target/x86_64-unknown-linux-gnu/release")
        .join(function)
}

/// `target/lambda/<function>/bootstrap.zip`.
pub fn zip_path(function: &str) -> PathBuf {
    repo_root()
        .join("target/lambda")
        .join(function)
        .join("bootstrap.zip")
}

/// Bootstrap and zip sizes.
pub fn sizes(functions: &[&str]) -> Vec<Size> {
    let len = |p: PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    functions
        .iter()
        .map(|f| Size {
            function: (*f).to_string(),
            bootstrap_bytes: len(bootstrap_path(f)),
            zip_bytes: len(zip_path(f)),
        })
        .collect()
}

/// Starts the provider emulator with these limits.
pub async fn emulator(batch_limit: u64, individual_limit: u64) -> anyhow::Result<EmulatorHandle> {
    Ok(start_emulator(EmulatorConfig {
        batch_limit,
        individual_limit,
        ..EmulatorConfig::default()
    })
    .await)
}
