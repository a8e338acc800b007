//! The operators' reads on a large store: a store filled with N finished instances (1,000,000
//! unless a number is given), then each read of `codegen flows` and its console measured many
//! times, on SQLite and, when a server answers, on PostgreSQL.
//!
//! ```text
//! cargo bench -p codegen-runtime --bench inspect            # 1,000,000 instances
//! cargo bench -p codegen-runtime --bench inspect -- 20000   # a quick run
//! cargo bench -p codegen-runtime --bench inspect -- sqlite  # one backend (or `postgres`)
//! scripts/postgres.sh start                                 # to measure PostgreSQL too
//! ```
//!
//! The store is filled through [`StateStore::commit`] in large batches, one commit per
//! instance with its whole history (start, two or three tasks scheduled and ended, the end),
//! in a mix of six workflows: most completed, some failed, cancelled or parked, a few thousand
//! still running, started over the last 30 days (the start times are set after each batch,
//! since a commit stamps the store's clock). The tasks that failed went through the service
//! worker's path, [`MessageQueue::settle`]: their failed attempts are recorded, and the ones
//! that died are in the dead letters.
//!
//! PostgreSQL is the server at `CODEGEN_BENCH_POSTGRES`, or else the one `scripts/postgres.sh`
//! starts; each run fills a schema of its own, analysed after the fill and dropped at the end.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use codegen_runtime::backend::distributed::{DistributedBackend, PostgresConfig};
use codegen_runtime::backend::sqlite::SqliteBackend;
use codegen_runtime::backend::{
    AttemptOutcome, BackendError, Commit, Cursor, Inspect, InstanceFilter, InstanceInfo, Message,
    MessageBody, MessageQueue, Settlement, StateStore, Status, TaskAttempt, TaskMessage, Topic,
    event_id,
};
use codegen_runtime::workflow::{Event, HistoryEvent, WorkflowError};
use codegen_runtime::{Client, RetryPolicy, TaskError};
use futures_util::FutureExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// Instances per commit.
const BATCH: usize = 2_000;
/// Runs of each read.
const RUNS: usize = 200;
/// Runs before measuring, not counted.
const WARMUP: usize = 10;
/// A page of the list, as the console shows it.
const PAGE: usize = 50;
/// What the console counts up to.
const COUNT_CAP: u64 = 10_000;
/// The goal of every read, at p95.
const TARGET: Duration = Duration::from_millis(200);
const DAY_MS: i64 = 86_400_000;

/// A workflow of the mix: its share and the tasks it calls in order.
struct Flow {
    name: &'static str,
    weight: u32,
    tasks: &'static [(&'static str, &'static str)],
}

const FLOWS: &[Flow] = &[
    Flow {
        name: "bill",
        weight: 40,
        tasks: &[
            ("billing", "compute_invoice"),
            ("payments", "charge_card"),
            ("mail", "send_receipt"),
        ],
    },
    Flow {
        name: "signup",
        weight: 20,
        tasks: &[
            ("crm", "create_account"),
            ("billing", "create_customer"),
            ("mail", "send_welcome"),
        ],
    },
    Flow {
        name: "dunning",
        weight: 15,
        tasks: &[("payments", "charge_card"), ("mail", "send_reminder")],
    },
    Flow {
        name: "refund",
        weight: 10,
        tasks: &[("payments", "refund_charge"), ("ledger", "record_refund")],
    },
    Flow {
        name: "report",
        weight: 10,
        tasks: &[("ledger", "export_month"), ("mail", "send_report")],
    },
    Flow {
        name: "export",
        weight: 5,
        tasks: &[("ledger", "export_month"), ("storage", "upload_file")],
    },
];

/// What the fill made of one instance, for choosing parameters and checking answers.
struct Known {
    id: String,
    flow: usize,
    status: Status,
    created_at: i64,
}

/// A task that fails before it ends: the outcomes of its attempts, in order.
struct Failing {
    instance: String,
    seq: u32,
    service: &'static str,
    task: &'static str,
    at: i64,
    outcomes: &'static [AttemptOutcome],
}

/// The store as filled.
struct Filled {
    known: Vec<Known>,
    events: u64,
    attempts: u64,
    dead: u64,
    commit: Duration,
    backdate: Duration,
    settle: Duration,
    /// (flow, status) -> instances.
    counts: BTreeMap<(usize, &'static str), u64>,
}

/// Sets the start and end times of instances the commits stamped with the store's clock.
trait Backdate {
    async fn backdate(&mut self, rows: &[(String, i64, i64)]);
}

struct SqliteBackdate(rusqlite::Connection);

impl Backdate for SqliteBackdate {
    async fn backdate(&mut self, rows: &[(String, i64, i64)]) {
        let tx = self.0.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE instances SET created_at = ?2, updated_at = ?3 WHERE id = ?1",
                )
                .unwrap();
            for (id, created, updated) in rows {
                stmt.execute(rusqlite::params![id, created, updated])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

struct PostgresBackdate(tokio_postgres::Client);

impl Backdate for PostgresBackdate {
    async fn backdate(&mut self, rows: &[(String, i64, i64)]) {
        let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        let created: Vec<i64> = rows.iter().map(|r| r.1).collect();
        let updated: Vec<i64> = rows.iter().map(|r| r.2).collect();
        self.0
            .execute(
                "UPDATE codegen_instances AS i SET created_at = u.c, updated_at = u.u
                 FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS u(id, c, u) WHERE i.id = u.id",
                &[&ids, &created, &updated],
            )
            .await
            .unwrap();
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// `YYYY-MM` of a time in milliseconds since the Unix epoch.
fn month(ms: i64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}")
}

fn pick_flow(rng: &mut ChaCha8Rng) -> usize {
    let total: u32 = FLOWS.iter().map(|f| f.weight).sum();
    let mut n = rng.random_range(0..total);
    for (i, f) in FLOWS.iter().enumerate() {
        if n < f.weight {
            return i;
        }
        n -= f.weight;
    }
    0
}

/// The digits of user numbers: enough for `n` distinct users, at least 6.
fn user_digits(n: usize) -> usize {
    n.saturating_sub(1).to_string().len().max(6)
}

/// Instance `i` of `n`, started at `created_at`: its commit, and the task that fails on the
/// way when one does.
fn instance(
    rng: &mut ChaCha8Rng,
    i: usize,
    n: usize,
    created_at: i64,
    last_day: bool,
) -> (Known, Commit, Option<Failing>, i64) {
    const RETRY_ONCE: &[AttemptOutcome] = &[AttemptOutcome::Retry, AttemptOutcome::Ok];
    const DIE: &[AttemptOutcome] = &[
        AttemptOutcome::Retry,
        AttemptOutcome::Retry,
        AttemptOutcome::Dead,
    ];
    let flow_index = pick_flow(rng);
    let flow = &FLOWS[flow_index];
    let digits = user_digits(n);
    let users = 10_u64.pow(u32::try_from(digits).unwrap());
    // A bijection of 0..users (48271 is prime, users a power of ten), so ids are unique and
    // their order is not that of time.
    let user = (u64::try_from(i).unwrap() * 48_271) % users;
    let month = month(created_at);
    let id = format!("{}-u{user:0digits$}-{month}", flow.name);
    let roll: f64 = rng.random();
    let status = if last_day && roll < 0.09 {
        Status::Running
    } else if roll < 0.02 {
        Status::Failed
    } else if roll < 0.03 {
        Status::Cancelled
    } else if roll < 0.032 {
        Status::Parked
    } else {
        Status::Completed
    };
    let input = json!({"customer": format!("u{user:0digits$}"), "month": month, "amount_cents": rng.random_range(100..100_000)});
    let mut at = created_at;
    let mut events = vec![Event::WorkflowStarted {
        name: flow.name.to_owned(),
        version: 1,
        input: input.clone(),
        clock: Default::default(),
        trace: None,
        run: 0,
        first_seq: 0,
        run_timeout_ms: None,
    }];
    let mut times = vec![at];
    let mut push = |events: &mut Vec<Event>, at: &mut i64, event: Event, rng: &mut ChaCha8Rng| {
        *at += rng.random_range(20..1_500);
        events.push(event);
        times.push(*at);
    };
    // How many tasks end, and what happens after.
    let ends = match status {
        Status::Completed => flow.tasks.len(),
        _ => flow.tasks.len() - 1,
    };
    let mut failing = None;
    for (k, &(service, task)) in flow.tasks.iter().enumerate().take(ends + 1) {
        let seq = u32::try_from(k).unwrap();
        push(
            &mut events,
            &mut at,
            Event::TaskScheduled {
                seq,
                service: service.to_owned(),
                name: task.to_owned(),
                input: json!({"customer": input["customer"], "step": k}),
                retry_policy: RetryPolicy::default(),
            },
            rng,
        );
        if k < ends {
            if k == 0 && status == Status::Completed && rng.random_bool(0.03) {
                failing = Some(Failing {
                    instance: id.clone(),
                    seq,
                    service,
                    task,
                    at,
                    outcomes: RETRY_ONCE,
                });
            }
            push(
                &mut events,
                &mut at,
                Event::TaskCompleted {
                    seq,
                    output: json!({"ok": true, "ref": format!("{service}-{i:x}-{k}")}),
                },
                rng,
            );
        } else if status == Status::Failed {
            failing = Some(Failing {
                instance: id.clone(),
                seq,
                service,
                task,
                at,
                outcomes: DIE,
            });
            push(
                &mut events,
                &mut at,
                Event::TaskFailed {
                    seq,
                    error: TaskError::retryable("HTTP 503: upstream unavailable")
                        .with_response(503, "{\"error\":\"unavailable\"}"),
                },
                rng,
            );
        }
    }
    let (output, error) = match status {
        Status::Completed => {
            let output = json!({"done": true, "total_cents": input["amount_cents"]});
            push(
                &mut events,
                &mut at,
                Event::WorkflowCompleted {
                    output: output.clone(),
                },
                rng,
            );
            (Some(output), None)
        }
        Status::Failed => {
            let error = format!(
                "task {}/{} failed: HTTP 503: upstream unavailable",
                flow.tasks[ends].0, flow.tasks[ends].1
            );
            push(
                &mut events,
                &mut at,
                Event::WorkflowFailed {
                    error: WorkflowError::new(error.clone()),
                },
                rng,
            );
            (None, Some(error))
        }
        Status::Cancelled => {
            push(
                &mut events,
                &mut at,
                Event::CancelRequested {
                    reason: "customer closed the account".into(),
                },
                rng,
            );
            push(&mut events, &mut at, Event::WorkflowCancelled, rng);
            (None, None)
        }
        Status::Parked => (
            None,
            Some("non-determinism at command 1: the code schedules another task".to_owned()),
        ),
        Status::Running => (None, None),
    };
    let history: Vec<(String, HistoryEvent)> = events
        .into_iter()
        .zip(times)
        .map(|(event, at)| (event_id(&event), HistoryEvent { at, event }))
        .collect();
    let mut info = InstanceInfo::new(&id, flow.name, input, created_at);
    info.version = 1;
    info.status = status;
    info.output = output;
    info.error = error;
    let messages = failing
        .iter()
        .map(|f| task_message(f, 0, 0))
        .collect::<Vec<_>>();
    let commit = Commit {
        instance: info,
        create: true,
        expected_events: 0,
        events: history,
        messages,
        acks: Vec::new(),
        truncate_to: None,
        queries: None,
    };
    let known = Known {
        id,
        flow: flow_index,
        status,
        created_at,
    };
    (known, commit, failing, at)
}

fn task_message(f: &Failing, attempt: u32, deliver_at: i64) -> Message {
    Message {
        id: format!("{}/task/{}", f.instance, f.seq),
        topic: Topic::Tasks(f.service.to_owned()),
        key: f.instance.clone(),
        deliver_at,
        body: MessageBody::Task(TaskMessage {
            task_id: format!("{}/task/{}", f.instance, f.seq),
            instance_id: f.instance.clone(),
            seq: f.seq,
            service: f.service.to_owned(),
            name: f.task.to_owned(),
            input: json!({}),
            retry_policy: RetryPolicy::default(),
            attempt,
            redrive: 0,
            scheduled_at: 0,
            trace: None,
        }),
    }
}

/// Runs the failing tasks as a service worker would: each delivery settled with its attempt,
/// retried (sent again) or dead, until none is left. Returns the failed attempts and the dead.
async fn run_failing<B: MessageQueue>(backend: &B, failing: &[Failing]) -> (u64, u64) {
    let by_id: BTreeMap<String, &Failing> = failing
        .iter()
        .map(|f| (format!("{}/task/{}", f.instance, f.seq), f))
        .collect();
    let mut services: Vec<&str> = failing.iter().map(|f| f.service).collect();
    services.sort_unstable();
    services.dedup();
    let (mut attempts, mut dead) = (0, 0);
    loop {
        let mut settlements = Vec::new();
        for service in &services {
            let topic = Topic::Tasks((*service).to_owned());
            for d in backend.receive(&topic, 100_000, 600_000).await.unwrap() {
                let f = by_id[&d.message.id];
                let MessageBody::Task(task) = &d.message.body else {
                    unreachable!("only tasks are sent");
                };
                let number = task.attempt + 1;
                let outcome = f.outcomes[usize::try_from(task.attempt).unwrap()];
                let started_at = f.at + i64::from(task.attempt) * 2_000;
                let ended_at = started_at + 300;
                let (error, retry_at) = match outcome {
                    AttemptOutcome::Ok => (None, None),
                    AttemptOutcome::Retry => (
                        Some("HTTP 503: upstream unavailable".to_owned()),
                        Some(ended_at + 1_000),
                    ),
                    AttemptOutcome::Dead => (Some("HTTP 503: upstream unavailable".into()), None),
                };
                if outcome != AttemptOutcome::Ok {
                    attempts += 1;
                }
                let (messages, died) = match outcome {
                    AttemptOutcome::Retry => (vec![task_message(f, number, 0)], None),
                    AttemptOutcome::Ok => (Vec::new(), None),
                    AttemptOutcome::Dead => {
                        dead += 1;
                        (
                            Vec::new(),
                            Some(format!(
                                "failed {number} times; last: HTTP 503: upstream unavailable"
                            )),
                        )
                    }
                };
                settlements.push(Settlement {
                    receipt: d.receipt,
                    dead: died,
                    messages,
                    attempt: Some(TaskAttempt {
                        instance_id: f.instance.clone(),
                        seq: f.seq,
                        attempt: number,
                        redrive: 0,
                        service: f.service.to_owned(),
                        task: f.task.to_owned(),
                        started_at,
                        ended_at,
                        outcome,
                        error,
                        retry_at,
                    }),
                });
            }
        }
        if settlements.is_empty() {
            return (attempts, dead);
        }
        backend.settle(settlements).await.unwrap();
    }
}

/// Fills `backend` with `n` instances, `parallel` commits at a time.
async fn fill<B: StateStore + MessageQueue>(
    backend: &Arc<B>,
    backdate: &mut impl Backdate,
    n: usize,
    parallel: usize,
) -> Filled {
    let mut rng = ChaCha8Rng::seed_from_u64(20_250_601);
    let now = now_ms();
    let start = now - 30 * DAY_MS;
    let span = 30 * DAY_MS;
    let slot = (span / i64::try_from(n).unwrap()).max(1);
    let mut filled = Filled {
        known: Vec::with_capacity(n),
        events: 0,
        attempts: 0,
        dead: 0,
        commit: Duration::ZERO,
        backdate: Duration::ZERO,
        settle: Duration::ZERO,
        counts: BTreeMap::new(),
    };
    let mut i = 0;
    let mut last_report = Instant::now();
    while i < n {
        let mut batches = Vec::new();
        let mut times = Vec::new();
        let mut failing = Vec::new();
        for _ in 0..parallel {
            let mut batch = Vec::with_capacity(BATCH);
            while batch.len() < BATCH && i < n {
                let created_at =
                    start + i64::try_from(i).unwrap() * slot + rng.random_range(0..slot);
                let last_day = created_at >= now - DAY_MS;
                let (known, commit, fails, ended) = instance(&mut rng, i, n, created_at, last_day);
                filled.events += u64::try_from(commit.events.len()).unwrap();
                *filled
                    .counts
                    .entry((known.flow, known.status.as_str()))
                    .or_default() += 1;
                let updated = if known.status.is_final() || known.status == Status::Parked {
                    ended
                } else {
                    created_at + 2_000
                };
                times.push((known.id.clone(), created_at, updated));
                failing.extend(fails);
                filled.known.push(known);
                batch.push(commit);
                i += 1;
            }
            if !batch.is_empty() {
                batches.push(batch);
            }
        }
        let t = Instant::now();
        let commits = batches.into_iter().map(|batch| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.commit(batch).await })
        });
        for done in futures_util::future::join_all(commits).await {
            done.unwrap().unwrap();
        }
        filled.commit += t.elapsed();
        let t = Instant::now();
        backdate.backdate(&times).await;
        filled.backdate += t.elapsed();
        let t = Instant::now();
        let (attempts, dead) = run_failing(backend.as_ref(), &failing).await;
        filled.settle += t.elapsed();
        filled.attempts += attempts;
        filled.dead += dead;
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("  {i} of {n} instances");
            last_report = Instant::now();
        }
    }
    filled
}

/// The times of one read.
struct Measured {
    label: String,
    rows: usize,
    p50: Duration,
    p95: Duration,
    max: Duration,
}

/// Runs `read` [`WARMUP`] + [`RUNS`] times with fresh random parameters; it returns how many
/// rows it read.
async fn measure<F, Fut>(label: &str, rng: &mut ChaCha8Rng, mut read: F) -> Measured
where
    F: FnMut(&mut ChaCha8Rng) -> Fut,
    Fut: Future<Output = usize>,
{
    let mut times = Vec::with_capacity(RUNS);
    let mut rows = 0;
    for run in 0..WARMUP + RUNS {
        let call = read(rng);
        let t = Instant::now();
        let n = call.await;
        let took = t.elapsed();
        if run >= WARMUP {
            times.push(took);
            rows += n;
        }
    }
    times.sort_unstable();
    Measured {
        label: label.to_owned(),
        rows: rows / RUNS,
        p50: times[RUNS / 2],
        p95: times[(RUNS * 95).div_ceil(100) - 1],
        max: times[RUNS - 1],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1_000.0)
}

/// Checks a page: the filter holds for every row, newest first, none after the cursor.
fn check_page(
    page: &[InstanceInfo],
    filter: &InstanceFilter,
    after: Option<&Cursor>,
    label: &str,
) -> usize {
    // Ties of start time are ordered by id in the database's collation: only times are checked.
    for w in page.windows(2) {
        assert!(
            w[0].created_at >= w[1].created_at,
            "{label}: not newest first"
        );
    }
    for i in page {
        let holds = filter.name.as_ref().is_none_or(|n| &i.name == n)
            && filter.status.is_none_or(|s| i.status == s)
            && filter
                .id_prefix
                .as_ref()
                .is_none_or(|p| i.id.starts_with(p.as_str()))
            && filter.started_from.is_none_or(|t| i.created_at >= t)
            && filter.started_before.is_none_or(|t| i.created_at < t)
            && after.is_none_or(|c| i.created_at <= c.created_at && i.id != c.id);
        assert!(holds, "{label}: {} does not match", i.id);
    }
    page.len()
}

/// Measures every read of the console on a filled store.
async fn measure_all<B>(backend: Arc<B>, filled: &Filled) -> Vec<Measured>
where
    B: StateStore + MessageQueue + Inspect,
{
    let client = Client::new(backend);
    let known = &filled.known;
    let n = known.len();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut out = Vec::new();
    let list = |filter: InstanceFilter, after: Option<Cursor>, label: &'static str| {
        let client = client.clone();
        async move {
            let page = client
                .instances(&filter, after.as_ref(), PAGE)
                .await
                .unwrap();
            check_page(&page.instances, &filter, after.as_ref(), label)
        }
    };
    let flow_name = |rng: &mut ChaCha8Rng| FLOWS[pick_flow(rng)].name.to_owned();
    let cursor_of = |k: &Known| Cursor {
        created_at: k.created_at,
        id: k.id.clone(),
    };

    out.push(
        measure("list, first page", &mut rng, |_| {
            list(InstanceFilter::default(), None, "list")
        })
        .await,
    );
    out.push(
        measure("list, a page deep in (cursor)", &mut rng, |rng| {
            // Anywhere in the older half of the list.
            let at = cursor_of(&known[rng.random_range(0..n / 2)]);
            list(InstanceFilter::default(), Some(at), "deep page")
        })
        .await,
    );
    for (label, status) in [
        ("status failed", Status::Failed),
        ("status running", Status::Running),
        ("status parked", Status::Parked),
    ] {
        let filter = InstanceFilter {
            status: Some(status),
            ..InstanceFilter::default()
        };
        out.push(measure(label, &mut rng, |_| list(filter.clone(), None, label)).await);
    }
    let failed: Vec<&Known> = known
        .iter()
        .filter(|k| k.status == Status::Failed)
        .collect();
    out.push(
        measure("status failed, a page deep in", &mut rng, |rng| {
            let at = cursor_of(failed[rng.random_range(0..failed.len().max(1))]);
            let filter = InstanceFilter {
                status: Some(Status::Failed),
                ..InstanceFilter::default()
            };
            list(filter, Some(at), "failed deep")
        })
        .await,
    );
    out.push(
        measure("workflow name", &mut rng, |rng| {
            let filter = InstanceFilter {
                name: Some(flow_name(rng)),
                ..InstanceFilter::default()
            };
            list(filter, None, "name")
        })
        .await,
    );
    out.push(
        measure("workflow name + status failed", &mut rng, |rng| {
            let filter = InstanceFilter {
                name: Some(flow_name(rng)),
                status: Some(Status::Failed),
                ..InstanceFilter::default()
            };
            list(filter, None, "name + status")
        })
        .await,
    );
    out.push(
        measure("id prefix (`bill-u1234`)", &mut rng, |rng| {
            // The ids of 100 user numbers in 1,000,000 (of all workflows) start so.
            let k = &known[rng.random_range(0..n)];
            let cut = k.id.find("-u").unwrap() + 2 + user_digits(n) - 2;
            let filter = InstanceFilter {
                id_prefix: Some(k.id[..cut].to_owned()),
                ..InstanceFilter::default()
            };
            list(filter, None, "id prefix")
        })
        .await,
    );
    out.push(
        measure("id prefix of a workflow (`bill-`)", &mut rng, |rng| {
            let filter = InstanceFilter {
                id_prefix: Some(format!("{}-", flow_name(rng))),
                ..InstanceFilter::default()
            };
            list(filter, None, "broad id prefix")
        })
        .await,
    );
    let first = known.iter().map(|k| k.created_at).min().unwrap_or(0);
    out.push(
        measure("started within a day", &mut rng, |rng| {
            let from = first + rng.random_range(0..29) * DAY_MS;
            let filter = InstanceFilter {
                started_from: Some(from),
                started_before: Some(from + DAY_MS),
                ..InstanceFilter::default()
            };
            list(filter, None, "time range")
        })
        .await,
    );
    let expect = |flow: Option<usize>, status: Status| -> u64 {
        let total: u64 = filled
            .counts
            .iter()
            .filter(|((f, s), _)| flow.is_none_or(|x| x == *f) && *s == status.as_str())
            .map(|(_, c)| c)
            .sum();
        total.min(COUNT_CAP)
    };
    out.push(
        measure("status counts (cap 10,000)", &mut rng, |_| {
            let client = client.clone();
            async move {
                let counts = client.status_counts(None, COUNT_CAP).await.unwrap();
                for (status, count) in &counts {
                    assert_eq!(*count, expect(None, *status), "count of {status:?}");
                }
                counts.len()
            }
        })
        .await,
    );
    out.push(
        measure("status counts of a workflow", &mut rng, |rng| {
            let client = client.clone();
            let flow = pick_flow(rng);
            async move {
                let counts = client
                    .status_counts(Some(FLOWS[flow].name), COUNT_CAP)
                    .await
                    .unwrap();
                for (status, count) in &counts {
                    assert_eq!(*count, expect(Some(flow), *status), "count of {status:?}");
                }
                counts.len()
            }
        })
        .await,
    );
    out.push(
        measure("console list page (page + counts)", &mut rng, |_| {
            let client = client.clone();
            async move {
                let page = client
                    .instances(&InstanceFilter::default(), None, PAGE)
                    .await
                    .unwrap();
                let counts = client.status_counts(None, COUNT_CAP).await.unwrap();
                page.instances.len() + counts.len()
            }
        })
        .await,
    );
    out.push(
        measure("instance page (`detail`)", &mut rng, |rng| {
            let client = client.clone();
            let k = &known[rng.random_range(0..n)];
            let (id, status) = (k.id.clone(), k.status);
            async move {
                let detail = client.detail(&id).await.unwrap();
                assert_eq!(detail.instance.status, status);
                assert!(!detail.spans.is_empty());
                detail.spans.len()
            }
        })
        .await,
    );
    out.push(
        measure("dead letters, first page", &mut rng, |_| {
            let client = client.clone();
            async move { client.dead(&Default::default(), PAGE).await.unwrap().len() }
        })
        .await,
    );
    out
}

fn print_table(title: &str, filled: &Filled, measured: &[Measured]) {
    let n = filled.known.len();
    let total = filled.commit + filled.backdate + filled.settle;
    println!();
    println!("{title}");
    println!(
        "  filled with {n} instances, {} history events, {} failed task attempts, {} dead letters in {:.1} s ({:.0} instances/s):",
        filled.events,
        filled.attempts,
        filled.dead,
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
    );
    println!(
        "  commits {:.1} s ({:.0} instances/s, {:.0} events/s), start times set {:.1} s, task attempts settled {:.1} s",
        filled.commit.as_secs_f64(),
        n as f64 / filled.commit.as_secs_f64(),
        filled.events as f64 / filled.commit.as_secs_f64(),
        filled.backdate.as_secs_f64(),
        filled.settle.as_secs_f64(),
    );
    println!();
    println!(
        "  {:<40} {:>6} {:>9} {:>9} {:>9}",
        "read", "rows", "p50 ms", "p95 ms", "max ms"
    );
    for m in measured {
        let flag = if m.p95 > TARGET { "  over 200 ms" } else { "" };
        println!(
            "  {:<40} {:>6} {:>9} {:>9} {:>9}{flag}",
            m.label,
            m.rows,
            ms(m.p50),
            ms(m.p95),
            ms(m.max)
        );
    }
    println!("  ({RUNS} runs each after {WARMUP} not counted; rows: the average per run)");
}

async fn sqlite(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let backend = Arc::new(SqliteBackend::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    let mut backdate = SqliteBackdate(conn);
    eprintln!("SQLite: filling {} with {n} instances", path.display());
    let filled = fill(&backend, &mut backdate, n, 1).await;
    drop(backdate);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let measured = measure_all(backend, &filled).await;
    print_table(
        &format!("SQLite ({} MB file, synchronous = FULL)", size / 1_000_000),
        &filled,
        &measured,
    );
}

async fn postgres(n: usize) {
    let url = std::env::var("CODEGEN_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://codegen:codegen@127.0.0.1:15432/codegen".to_owned());
    let schema = format!("bench_inspect_{:x}_{:x}", std::process::id(), now_ms());
    let dir = tempfile::tempdir().unwrap();
    let transport = SqliteBackend::open(dir.path().join("messages.db")).unwrap();
    let config = PostgresConfig {
        url,
        schema: Some(schema.clone()),
        pool_size: 8,
        password_file: None,
    };
    let backend = match DistributedBackend::connect(&config, transport).await {
        Ok(backend) => Arc::new(backend),
        Err(BackendError::Unavailable(message)) => {
            println!();
            println!(
                "PostgreSQL not measured: {message}; to measure it, run scripts/postgres.sh start (or set CODEGEN_BENCH_POSTGRES to a database URL)"
            );
            return;
        }
        Err(err) => panic!("PostgreSQL: {err}"),
    };
    let plain = PostgresConfig {
        schema: None,
        ..config.clone()
    };
    let admin = plain.client().await.unwrap();
    let run = AssertUnwindSafe(async {
        admin
            .batch_execute(&format!("SET search_path TO {schema}"))
            .await
            .unwrap();
        let client = plain.client().await.unwrap();
        client
            .batch_execute(&format!("SET search_path TO {schema}"))
            .await
            .unwrap();
        let mut backdate = PostgresBackdate(client);
        eprintln!("PostgreSQL: filling schema {schema} with {n} instances");
        let filled = fill(&backend, &mut backdate, n, 4).await;
        drop(backdate);
        let t = Instant::now();
        admin
            .batch_execute(
                "VACUUM ANALYZE codegen_instances, codegen_history, codegen_task_attempts, codegen_dead_letters",
            )
            .await
            .unwrap();
        let analyse = t.elapsed();
        let size: i64 = admin
            .query_one(
                "SELECT SUM(pg_total_relation_size(c.oid))::BIGINT FROM pg_class c
                 JOIN pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = $1 AND c.relkind = 'r'",
                &[&schema],
            )
            .await
            .unwrap()
            .get(0);
        let version: String = admin.query_one("SHOW server_version", &[]).await.unwrap().get(0);
        let measured = measure_all(backend.clone(), &filled).await;
        print_table(
            &format!(
                "PostgreSQL {version} ({} MB of tables and indexes; VACUUM ANALYZE after the fill: {:.1} s)",
                size / 1_000_000,
                analyse.as_secs_f64()
            ),
            &filled,
            &measured,
        );
    })
    .catch_unwind()
    .await;
    drop(backend);
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    if let Err(panic) = run {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    // `cargo bench` passes `--bench`; the others are the number of instances and a backend.
    let mut n = 1_000_000;
    let (mut sqlite_too, mut postgres_too) = (true, true);
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        match arg.as_str() {
            "sqlite" => postgres_too = false,
            "postgres" => sqlite_too = false,
            number => {
                n = number
                    .replace(['_', ','], "")
                    .parse()
                    .expect("the arguments are the number of instances (1000000) and `sqlite` or `postgres` for one backend only");
            }
        }
    }
    assert!(n >= 1_000, "fill at least 1,000 instances");
    println!(
        "Operators' reads on {n} instances ({} cores)",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    if sqlite_too {
        sqlite(n).await;
    }
    if postgres_too {
        postgres(n).await;
    }
}
