//! What long-lived processes lean on, on every backend: timeouts, typed `select`, runs that
//! continue as new, run timeouts, completions from outside, errors that keep their status,
//! schedule-to-close bounds and the size of one event.

use super::*;

use codegen_runtime::StartOptions;
use codegen_runtime::backend::Answer;
use codegen_runtime::workflow::{Either, TimedOut, select2};
use serde_json::json;

/// The events of an instance's history, described.
async fn described<B: Conformant>(client: &Client<B>, id: &str) -> Vec<String> {
    let history = client.history(id).await.unwrap();
    history.events.iter().map(|e| e.event.describe()).collect()
}

/// Waits until the instance's history holds a completion token, and returns it (an outside
/// system gets it from a task; here it is read where it is recorded).
async fn token_of<B: Conformant>(client: &Client<B>, id: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let history = client.history(id).await.unwrap();
        if let Some(token) = history.events.iter().find_map(|e| match &e.event {
            Event::CompletionCreated { token, .. } => Some(token.clone()),
            _ => None,
        }) {
            return token;
        }
        assert!(Instant::now() < deadline, "no completion token was made");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) async fn a_call_bounded_by_a_timeout_gives_a_timeout_and_its_late_result_is_ignored<
    B: Conformant,
>(
    store: Opened<B>,
) {
    let mut w = workflows();
    w.register(
        "bounded",
        1,
        |ctx: WorkflowContext, (ms, bound): (u64, u64)| async move {
            let outcome = match ctx
                .call(&Slow { ms })
                .timeout(Duration::from_millis(bound))
                .await
            {
                Ok(done) => format!("done in {}", done?),
                Err(TimedOut { after }) => format!("timed out after {}ms", after.as_millis()),
            };
            // The workflow goes on after the timeout.
            let sum = ctx.call(&Add { a: 1, b: 2 }).await?;
            Ok::<_, WorkflowError>(format!("{outcome}, then {sum}"))
        },
    );
    let env = env(store, w, Arc::default());
    let fast = env
        .client
        .start("bounded", None, &(5, 20_000))
        .await
        .unwrap();
    let slow = env
        .client
        .start("bounded", None, &(1500, 100))
        .await
        .unwrap();
    assert_eq!(
        env.client.result::<String>(&fast, WAIT).await.unwrap(),
        "done in 5, then 3"
    );
    assert_eq!(
        env.client.result::<String>(&slow, WAIT).await.unwrap(),
        "timed out after 100ms, then 3"
    );
    // The slow task finishes later; its result changes nothing.
    let before = described(&env.client, &slow).await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(described(&env.client, &slow).await, before);
    assert_eq!(before.last().unwrap(), "completion");
    assert_eq!(
        env.client.status(&slow).await.unwrap().status,
        Status::Completed
    );
    env.stop().await;
}

pub(crate) async fn a_signal_wait_with_a_timeout_times_out_and_the_next_wait_gets_the_signal<
    B: Conformant,
>(
    store: Opened<B>,
) {
    let mut w = workflows();
    w.register("patient", 1, |ctx: WorkflowContext, _: ()| async move {
        let first = ctx
            .signal::<String>("go")
            .timeout(Duration::from_millis(50))
            .await;
        let timed_out = matches!(first, Err(TimedOut { .. }));
        let second: String = ctx.signal("go").await?;
        Ok::<_, WorkflowError>(format!("first timed out: {timed_out}, then {second}"))
    });
    let env = env(store, w, Arc::default());
    let id = env.client.start("patient", None, &()).await.unwrap();
    // The first wait has timed out once the second is recorded waiting: the history holds
    // the timer's firing.
    let deadline = Instant::now() + WAIT;
    while !described(&env.client, &id)
        .await
        .iter()
        .any(|e| e.ends_with("fired"))
    {
        assert!(Instant::now() < deadline, "the timeout never fired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    env.client.signal(&id, "go", &"late").await.unwrap();
    assert_eq!(
        env.client.result::<String>(&id, WAIT).await.unwrap(),
        "first timed out: true, then late"
    );
    env.stop().await;
}

pub(crate) async fn select2_takes_the_first_of_a_timer_and_a_signal<B: Conformant>(
    store: Opened<B>,
) {
    let mut w = workflows();
    w.register("approval", 1, |ctx: WorkflowContext, ms: u64| async move {
        let decision = select2(
            ctx.sleep(Duration::from_millis(ms)),
            ctx.signal::<bool>("approved"),
        )
        .await;
        Ok::<_, WorkflowError>(match decision {
            Either::Left(()) => "expired".to_owned(),
            Either::Right(approved) => format!("approved: {}", approved?),
        })
    });
    let env = env(store, w, Arc::default());
    let expires = env.client.start("approval", None, &30).await.unwrap();
    let approved = env.client.start("approval", None, &600_000).await.unwrap();
    env.client
        .signal(&approved, "approved", &true)
        .await
        .unwrap();
    assert_eq!(
        env.client.result::<String>(&expires, WAIT).await.unwrap(),
        "expired"
    );
    assert_eq!(
        env.client.result::<String>(&approved, WAIT).await.unwrap(),
        "approved: true"
    );
    env.stop().await;
}

pub(crate) async fn continue_as_new_starts_a_fresh_history_under_the_same_id<B: Conformant>(
    store: Opened<B>,
) {
    let mut w = workflows();
    // Each run makes one call and continues with the next number, five times.
    w.register("counter", 1, |ctx: WorkflowContext, n: u32| async move {
        let key = ctx.call(&Flaky { key: n.to_string() }).await?;
        if n == 5 {
            return Ok(key);
        }
        ctx.continue_as_new(&(n + 1)).await
    });
    let env = env(store, w, Arc::default());
    let id = env
        .client
        .start("counter", Some("loop-1"), &1)
        .await
        .unwrap();
    let last: String = env.client.result(&id, WAIT).await.unwrap();
    // Runs number their commands on, so every run's call has its own idempotency key.
    assert_eq!(last, "5:loop-1/task/4:1");
    let history = env.client.history(&id).await.unwrap();
    assert_eq!(
        history
            .events
            .iter()
            .map(|e| e.event.describe())
            .collect::<Vec<_>>(),
        [
            "start of counter v1",
            "task flaky/flaky",
            "completion of command 4",
            "completion"
        ],
        "the last run's history holds the last run only"
    );
    match &history.events[0].event {
        Event::WorkflowStarted {
            run,
            first_seq,
            input,
            ..
        } => {
            assert_eq!((*run, *first_seq), (4, 4));
            assert_eq!(input, &serde_json::json!(5));
        }
        other => panic!("the history starts with {other:?}"),
    }
    let info = env.client.status(&id).await.unwrap();
    assert_eq!(info.input, serde_json::json!(5));
    assert_eq!(info.events, 4);
    env.stop().await;
}

pub(crate) async fn continue_as_new_carries_the_signals_a_run_did_not_take<B: Conformant>(
    store: Opened<B>,
) {
    let mut w = workflows();
    // The first run waits for `next`, then continues; the second takes the `item` signals
    // that came during the first.
    w.register("inbox", 1, |ctx: WorkflowContext, run: u32| async move {
        if run == 0 {
            ctx.signal::<()>("next").await?;
            return ctx.continue_as_new(&1).await;
        }
        let a: String = ctx.signal("item").await?;
        let b: String = ctx.signal("item").await?;
        Ok::<_, WorkflowError>(format!("{a},{b}"))
    });
    let env = env(store, w, Arc::default());
    let id = env.client.start("inbox", None, &0).await.unwrap();
    env.client.signal(&id, "item", &"a").await.unwrap();
    env.client.signal(&id, "item", &"b").await.unwrap();
    env.client.signal(&id, "next", &()).await.unwrap();
    assert_eq!(env.client.result::<String>(&id, WAIT).await.unwrap(), "a,b");
    env.stop().await;
}

pub(crate) async fn a_run_timeout_fails_the_instance_with_its_reason<B: Conformant>(
    store: Opened<B>,
) {
    let env = env(store, workflows(), Arc::default());
    // Room for the quick one's 10 ms timer on a busy machine: on Pulsar a timer is the broker's
    // delayed delivery, checked every 100 ms.
    let options = StartOptions {
        run_timeout: Some(Duration::from_secs(2)),
    };
    let id = env
        .client
        .start_with("nap", None, &600_000u64, &options)
        .await
        .unwrap();
    let quick = env
        .client
        .start_with("nap", None, &10u64, &options)
        .await
        .unwrap();
    env.client.result::<()>(&quick, WAIT).await.unwrap();
    match env.client.result::<()>(&id, WAIT).await {
        Err(ClientError::Failed { message, .. }) => {
            assert!(
                message.starts_with("run 0 ran past its run timeout of 2s"),
                "{message}"
            );
            assert!(message.contains("StartOptions::run_timeout"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // The quick one ended before its timeout, which then changed nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        env.client.status(&quick).await.unwrap().status,
        Status::Completed
    );
    env.stop().await;
}

pub(crate) async fn a_completion_token_resolves_once_and_a_second_completion_is_refused<
    B: Conformant,
>(
    store: Opened<B>,
) {
    let mut w = workflows();
    w.register("webhook", 1, |ctx: WorkflowContext, _: ()| async move {
        let paid = ctx.completion::<String>();
        let confirmation = paid.await?;
        let sum = ctx.call(&Add { a: 1, b: 1 }).await?;
        Ok::<_, WorkflowError>(format!("{confirmation} {sum}"))
    });
    let env = env(store, w, Arc::default());
    let id = env.client.start("webhook", None, &()).await.unwrap();
    let token = token_of(&env.client, &id).await;
    assert!(token.starts_with("cgc1."), "{token}");

    // Two completions race: one wins, the other is refused.
    let (a, b) = tokio::join!(
        env.client.complete(&token, &"paid-A"),
        env.client.complete(&token, &"paid-B")
    );
    let won = match (&a, &b) {
        (Ok(()), Err(ClientError::AlreadyCompleted { .. })) => "paid-A",
        (Err(ClientError::AlreadyCompleted { .. }), Ok(())) => "paid-B",
        other => panic!("exactly one completion must win: {other:?}"),
    };
    assert_eq!(
        env.client.result::<String>(&id, WAIT).await.unwrap(),
        format!("{won} 2")
    );
    let again = env.client.complete(&token, &"paid-C").await.unwrap_err();
    assert!(
        matches!(again, ClientError::AlreadyCompleted { .. }),
        "{again}"
    );
    assert!(
        again.to_string().contains("a token resolves once"),
        "{again}"
    );

    // Forged and damaged tokens say what is wrong.
    let last = if token.ends_with('0') { '1' } else { '0' };
    let altered = format!("{}{last}", &token[..token.len() - 1]);
    for bad in ["not-a-token", "cgc1.x.y.z", altered.as_str()] {
        let err = env.client.complete(bad, &"x").await.unwrap_err();
        assert!(matches!(err, ClientError::InvalidToken(_)), "{bad}: {err}");
    }
    env.stop().await;
}

pub(crate) async fn a_completion_that_does_not_come_in_time_times_out<B: Conformant>(
    store: Opened<B>,
) {
    let mut w = workflows();
    w.register("confirm", 1, |ctx: WorkflowContext, _: ()| async move {
        let outcome = ctx
            .completion::<String>()
            .timeout(Duration::from_millis(100))
            .await;
        Ok::<_, WorkflowError>(match outcome {
            Ok(value) => value?,
            Err(TimedOut { .. }) => "no confirmation".to_owned(),
        })
    });
    w.register(
        "confirm_or_fail",
        1,
        |ctx: WorkflowContext, _: ()| async move {
            let value: String = ctx.completion().await?;
            Ok::<_, WorkflowError>(value)
        },
    );
    let env = env(store, w, Arc::default());
    let id = env.client.start("confirm", None, &()).await.unwrap();
    let token = token_of(&env.client, &id).await;
    assert_eq!(
        env.client.result::<String>(&id, WAIT).await.unwrap(),
        "no confirmation"
    );
    let late = env.client.complete(&token, &"too late").await.unwrap_err();
    assert!(
        matches!(late, ClientError::Ended { .. }),
        "a completion for an ended instance is refused: {late}"
    );

    // A completion can also be failed from outside: the workflow gets the message.
    let id = env
        .client
        .start("confirm_or_fail", None, &())
        .await
        .unwrap();
    let token = token_of(&env.client, &id).await;
    env.client
        .fail_completion(&token, "the card was declined")
        .await
        .unwrap();
    match env.client.result::<String>(&id, WAIT).await {
        Err(ClientError::Failed { message, .. }) => {
            assert_eq!(message, "the card was declined");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    env.stop().await;
}

pub(crate) async fn a_task_error_keeps_its_status_and_body_through_question_mark<B: Conformant>(
    store: Opened<B>,
) {
    let behaviour = Arc::new(Behaviour::default());
    behaviour.permanent.store(true, Ordering::SeqCst);
    let mut w = workflows();
    // The child fails with `?` on a 402; the parent still sees the status and the body.
    w.register(
        "pays_through_child",
        1,
        |ctx: WorkflowContext, key: String| async move {
            match ctx.child::<_, String>("flaky_once", &key).await {
                Ok(receipt) => Ok(receipt),
                Err(e) if e.status() == Some(402) => Ok(format!(
                    "declined with {:?}",
                    e.task_error().and_then(|t| t.body())
                )),
                Err(e) => Err(e),
            }
        },
    );
    let env = env(store, w, behaviour);
    let id = env
        .client
        .start("pays_through_child", None, &"k")
        .await
        .unwrap();
    assert_eq!(
        env.client.result::<String>(&id, WAIT).await.unwrap(),
        "declined with Some(\"declined\")"
    );
    env.stop().await;
}

pub(crate) async fn schedule_to_close_bounds_all_attempts_of_a_call_together<B: Conformant>(
    store: Opened<B>,
) {
    let behaviour = Arc::new(Behaviour::default());
    behaviour.fail_first.store(1_000, Ordering::SeqCst);
    let mut w = workflows();
    w.register(
        "bounded_retries",
        1,
        |ctx: WorkflowContext, _: ()| async move {
            let policy = RetryPolicy::default()
                .with_max_attempts(1_000)
                .with_initial_delay(Duration::from_millis(20))
                .with_max_delay(Duration::from_millis(20))
                .with_schedule_to_close(Duration::from_millis(1_500));
            match ctx.call_with(&Flaky { key: "k".into() }, policy).await {
                Ok(_) => Ok("succeeded".to_owned()),
                Err(e) => Ok::<_, WorkflowError>(format!("timed out: {}; {e}", e.is_timeout())),
            }
        },
    );
    let env = env(store, w, behaviour.clone());
    let started = Instant::now();
    let id = env
        .client
        .start("bounded_retries", None, &())
        .await
        .unwrap();
    let outcome: String = env.client.result(&id, WAIT).await.unwrap();
    // The last attempt failed with a 503 and no retry fits before the deadline, or the
    // deadline stopped the attempt under way.
    assert!(
        [
            "timed out: true; retryable error: 503 Service Unavailable; gave up: the call's attempts together passed its schedule-to-close bound of 1.5s",
            "timed out: true; retryable error: gave up: the call's attempts together passed its schedule-to-close bound of 1.5s",
        ]
        .contains(&outcome.as_str()),
        "{outcome}"
    );
    // The bound leaves room for a retry on a loaded machine, where the first attempt may take
    // a few hundred milliseconds to arrive. Attempts 20 ms apart fit about 75 times in it: far
    // more means retries ran before their delay (Pulsar's broker delivers a message up to its
    // tick early, and 20 ms retries then ran about 220 times); 1,000, that the bound was not
    // applied.
    let calls = behaviour.calls.load(Ordering::SeqCst);
    assert!(
        (2..100).contains(&calls),
        "retried within the bound, each after its delay, then stopped: {calls} attempts"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    env.stop().await;
}

pub(crate) async fn values_over_the_event_size_limit_are_refused_with_what_and_how_large<
    B: Conformant,
>(
    store: Opened<B>,
) {
    let mut w = workflows();
    w.register("huge", 1, |_ctx: WorkflowContext, _: ()| async move {
        Ok::<_, WorkflowError>("x".repeat(3 * 1024 * 1024))
    });
    let env = env(store, w, Arc::default());
    let id = env.client.start("huge", None, &()).await.unwrap();
    match env.client.result::<String>(&id, WAIT).await {
        Err(ClientError::Failed { message, .. }) => assert!(
            message.starts_with(
                "the workflow's output is over 2 MiB of JSON, the limit of one event (WorkflowWorkerOptions::max_event_bytes)"
            ),
            "{message}"
        ),
        other => panic!("expected a failure, got {:?}", other.map(|s| s.len())),
    }
    let small = env.client.clone().with_max_event_bytes(1024);
    let err = small
        .start("three_steps", None, &"y".repeat(2000))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::TooLarge(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("the workflow's input is over 1 KiB of JSON"),
        "{err}"
    );
    env.stop().await;
}

/// A loop that continues as new a thousand times: every run's history is as short as the
/// first's, so replaying the last run costs what replaying the first did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_of_a_thousand_runs_replays_in_constant_time() {
    use codegen_runtime::workflow::HistoryEvent;
    use codegen_runtime::workflow::engine::activate;

    const RUNS: i64 = 1_000;
    let mut w = workflows();
    w.register("ticker", 1, |ctx: WorkflowContext, n: i64| async move {
        let next = ctx.call(&Add { a: n, b: 1 }).await?;
        if next > RUNS {
            return Ok(n);
        }
        ctx.continue_as_new(&next).await
    });
    let env = env(backends::sqlite(), w.clone(), Arc::default());
    let id = env.client.start("ticker", None, &1i64).await.unwrap();
    // The history of a run early in the loop, and of one late in it.
    let mut early: Option<Vec<HistoryEvent>> = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    let late = loop {
        let info = env.client.status(&id).await.unwrap();
        let run = info.input.as_i64().unwrap();
        let history = env.client.history(&id).await.unwrap().events;
        if early.is_none() && (10..100).contains(&run) {
            early = Some(history.clone());
        }
        if info.status == Status::Completed {
            break history;
        }
        assert!(
            Instant::now() < deadline,
            "the loop did not end: at run {run}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(env.client.result::<i64>(&id, WAIT).await.unwrap(), RUNS);
    let early = early.expect("a run early in the loop was seen");
    let run_of = |h: &[HistoryEvent]| match &h[0].event {
        Event::WorkflowStarted { run, .. } => *run,
        other => panic!("a history starts with {other:?}"),
    };
    assert_eq!(run_of(&late), 999);
    assert!(early.len() <= 4 && late.len() == 4, "{early:?} / {late:?}");

    // Replaying the last run costs what replaying an early one did (not 1,000 runs' worth).
    let workflow = w.get("ticker", 1).unwrap();
    let time = |history: &[HistoryEvent]| {
        let started = Instant::now();
        for _ in 0..2_000 {
            std::hint::black_box(activate(workflow.as_ref(), &id, history));
        }
        started.elapsed() / 2_000
    };
    // The early history up to the same point as the late one: start, call, result.
    let early_part: Vec<_> = early.iter().take(late.len() - 1).cloned().collect();
    let late_part: Vec<_> = late.iter().take(late.len() - 1).cloned().collect();
    let (a, b) = (time(&early_part), time(&late_part));
    println!(
        "activation at run {}: {a:?}; at run 999: {b:?}",
        run_of(&early)
    );
    assert!(
        b < a * 3 + Duration::from_micros(20),
        "activation time grew with the runs: {a:?} early, {b:?} late"
    );
    env.stop().await;
}

/// The instances a schedule started, oldest tick first.
async fn started_by<B: Conformant>(client: &Client<B>, workflow: &str, name: &str) -> Vec<String> {
    let mut ids: Vec<String> = client
        .list(Some(workflow), None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .filter(|id| id.starts_with(&format!("{name}@")))
        .collect();
    ids.sort();
    ids
}

async fn until_started<B: Conformant>(client: &Client<B>, workflow: &str, name: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    while started_by(client, workflow, name).await.len() < n {
        assert!(
            Instant::now() < deadline,
            "{name} did not start {n} instances"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn a_schedule_starts_one_instance_per_tick_and_pauses_resumes_and_ends<
    B: Conformant,
>(
    store: Opened<B>,
) {
    use codegen_runtime::schedule::{self, ScheduleSpec, Timing};
    let env = env(store, workflows(), Arc::default());
    let spec = ScheduleSpec {
        workflow: "three_steps".into(),
        input: serde_json::json!(1),
        timing: Timing::Every { every_ms: 250 },
        overlap: Default::default(),
        catch_up: Default::default(),
    };
    env.client.create_schedule("sums", &spec).await.unwrap();
    env.client.create_schedule("sums", &spec).await.unwrap();
    let other = ScheduleSpec {
        workflow: "nap".into(),
        ..spec.clone()
    };
    let err = env
        .client
        .create_schedule("sums", &other)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("exists with another spec"),
        "{err}"
    );

    until_started(&env.client, "three_steps", "sums", 3).await;
    let listed = env.client.schedules().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].paused), ("sums", false));
    assert!(listed[0].next.is_some());

    env.client.pause_schedule("sums").await.unwrap();
    let deadline = Instant::now() + WAIT;
    while !env.client.schedules().await.unwrap()[0].paused {
        assert!(Instant::now() < deadline, "the pause was not recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Once the pause is taken, nothing more starts.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let paused = started_by(&env.client, "three_steps", "sums").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(started_by(&env.client, "three_steps", "sums").await, paused);
    env.client.resume_schedule("sums").await.unwrap();
    until_started(&env.client, "three_steps", "sums", paused.len() + 1).await;
    env.client.delete_schedule("sums").await.unwrap();
    let deadline = Instant::now() + WAIT;
    while !env.client.schedules().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the schedule was not deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = env.client.pause_schedule("sums").await.unwrap_err();
    assert!(matches!(err, ClientError::UnknownSchedule(_)), "{err}");

    // Every instance is a tick of the schedule: its id says which, and each completed.
    let started = started_by(&env.client, "three_steps", "sums").await;
    for id in &started {
        let tick = chrono::DateTime::parse_from_rfc3339(id.trim_start_matches("sums@"))
            .unwrap()
            .timestamp_millis();
        assert_eq!(tick % 250, 0, "{id} is on a tick");
        assert_eq!(env.client.result::<i64>(id, WAIT).await.unwrap(), 112);
        let info = env.client.status(id).await.unwrap();
        assert_eq!(
            info.parent.map(|p| p.0).as_deref(),
            Some(schedule::instance_id("sums").as_str())
        );
    }
    env.stop().await;
}

pub(crate) async fn a_tick_while_the_last_run_still_runs_is_skipped<B: Conformant>(
    store: Opened<B>,
) {
    use codegen_runtime::schedule::{ScheduleSpec, Timing};
    let env = env(store, workflows(), Arc::default());
    let spec = ScheduleSpec {
        workflow: "nap".into(),
        input: serde_json::json!(450),
        timing: Timing::Every { every_ms: 100 },
        overlap: Default::default(),
        catch_up: Default::default(),
    };
    env.client.create_schedule("naps", &spec).await.unwrap();
    until_started(&env.client, "nap", "naps", 3).await;
    env.client.delete_schedule("naps").await.unwrap();
    let started = started_by(&env.client, "nap", "naps").await;
    let ticks: Vec<i64> = started
        .iter()
        .map(|id| {
            chrono::DateTime::parse_from_rfc3339(id.trim_start_matches("naps@"))
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    for pair in ticks.windows(2) {
        assert!(
            pair[1] - pair[0] >= 400,
            "a tick started while a nap of 450 ms ran: {started:?}"
        );
    }
    env.stop().await;
}

pub(crate) async fn instances_past_their_retention_are_deleted_with_everything_of_them<
    B: Conformant,
>(
    store: Opened<B>,
) {
    use codegen_runtime::worker::Retention;
    use codegen_runtime::workflow::Clock;
    // A day passes in half a second; ended instances are kept a day, `nap`s for good.
    let options = WorkflowWorkerOptions {
        idle_wait: Duration::from_millis(50),
        clock: Clock::scaled_from_now(86_400_000.0 / 500.0),
        retention: Retention {
            keep: Some(Duration::from_secs(86_400)),
            by_workflow: [("nap".to_owned(), None)].into(),
            sweep_every: Duration::from_millis(50),
            batch: 2,
        },
        ..Default::default()
    };
    let behaviour = Arc::new(Behaviour::default());
    behaviour.permanent.store(true, Ordering::SeqCst);
    let env = env_with(store, workflows(), behaviour, options);
    let mut expiring = Vec::new();
    for n in 0..5 {
        expiring.push(env.client.start("three_steps", None, &n).await.unwrap());
    }
    let declined = env.client.start("flaky_once", None, &"k").await.unwrap();
    expiring.push(declined.clone());
    let kept = env.client.start("nap", None, &1u64).await.unwrap();
    let waiting = env.client.start("wait_signal", None, &()).await.unwrap();
    env.client.result::<()>(&kept, WAIT).await.unwrap();
    let deadline = Instant::now() + WAIT;
    for id in &expiring {
        while env.client.status(id).await.is_ok() {
            assert!(Instant::now() < deadline, "{id} was not deleted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(matches!(
            env.client.history(id).await,
            Err(ClientError::UnknownInstance(_))
        ));
    }
    // The failed task's dead letter went with its instance.
    assert!(
        env.client
            .dead_tasks()
            .await
            .unwrap()
            .iter()
            .all(|d| d.key != declined),
        "the dead letter of a deleted instance is deleted"
    );
    // What runs, and a workflow kept for good, stay.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        env.client.status(&kept).await.unwrap().status,
        Status::Completed
    );
    assert_eq!(
        env.client.status(&waiting).await.unwrap().status,
        Status::Running
    );
    env.stop().await;
}

pub(crate) async fn purge_deletes_one_ended_instance_and_refuses_a_running_one<B: Conformant>(
    store: Opened<B>,
) {
    let env = env(store, workflows(), Arc::default());
    let id = env.client.start("wait_signal", None, &()).await.unwrap();
    let err = env.client.purge(&id).await.unwrap_err();
    assert!(matches!(err, ClientError::NotEnded { .. }), "{err}");
    assert!(err.to_string().contains("cancel it first"), "{err}");
    env.client.cancel(&id, "done with it").await.unwrap();
    let deadline = Instant::now() + WAIT;
    while !env.client.status(&id).await.unwrap().status.is_final() {
        assert!(Instant::now() < deadline, "not cancelled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    env.client.purge(&id).await.unwrap();
    assert!(matches!(
        env.client.status(&id).await,
        Err(ClientError::UnknownInstance(_))
    ));
    assert!(matches!(
        env.client.purge(&id).await,
        Err(ClientError::UnknownInstance(_))
    ));
    env.stop().await;
}

pub(crate) async fn flow_permits_hold_across_workers_lapse_with_their_lease_and_back_off<
    B: Conformant,
>(
    store: Opened<B>,
) {
    use codegen_runtime::backend::FlowLimits;
    let backend = store.backend.clone();
    let in_flight = FlowLimits {
        max_in_flight: Some(3),
        ..Default::default()
    };
    let lease = 60_000;
    // Two workers share three permits.
    let a = backend
        .acquire("svc", "a", 5, &in_flight, lease)
        .await
        .unwrap();
    assert_eq!((a.granted, a.retry_at), (3, None));
    let b = backend
        .acquire("svc", "b", 5, &in_flight, lease)
        .await
        .unwrap();
    assert_eq!(b.granted, 0, "none left for the second worker");
    backend.release("svc", "a", 2).await.unwrap();
    let b = backend
        .acquire("svc", "b", 5, &in_flight, lease)
        .await
        .unwrap();
    assert_eq!(b.granted, 2, "what the first gave back");

    // A worker that stops renewing gives its permits back when its lease ends.
    let short = backend
        .acquire("lapse", "a", 3, &in_flight, 100)
        .await
        .unwrap();
    assert_eq!(short.granted, 3);
    assert_eq!(
        backend
            .acquire("lapse", "b", 3, &in_flight, lease)
            .await
            .unwrap()
            .granted,
        0
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        backend
            .acquire("lapse", "b", 3, &in_flight, lease)
            .await
            .unwrap()
            .granted,
        3
    );

    // A rate: the burst, then a token every 100 ms.
    let rated = FlowLimits {
        rate_per_second: Some(10.0),
        burst: Some(2),
        ..Default::default()
    };
    let first = backend
        .acquire("rated", "a", 5, &rated, lease)
        .await
        .unwrap();
    assert_eq!(first.granted, 2);
    assert!(
        first.retry_at.is_some(),
        "it says when the next token comes"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let later = backend
        .acquire("rated", "b", 5, &rated, lease)
        .await
        .unwrap();
    assert!((1..=3).contains(&later.granted), "{later:?}");

    // A back-off stops every worker of the service until it ends.
    let until = now_ms() + 300;
    backend.back_off("svc", until).await.unwrap();
    assert!(backend.backing_off_until("svc").await.unwrap() >= until);
    backend.release("svc", "a", 1).await.unwrap();
    let paused = backend
        .acquire("svc", "a", 1, &in_flight, lease)
        .await
        .unwrap();
    assert_eq!((paused.granted, paused.retry_at), (0, Some(until)));
    assert_eq!(backend.backing_off_until("other").await.unwrap(), 0);
    drop(store);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) async fn a_query_reads_a_running_instance_state_without_changing_it<B: Conformant>(
    store: Opened<B>,
) {
    use std::cell::RefCell;
    use std::rc::Rc;
    let mut w = workflows();
    w.register("cart", 1, |ctx: WorkflowContext, _: ()| async move {
        let items = Rc::new(RefCell::new(Vec::<String>::new()));
        let seen = items.clone();
        ctx.on_query("items", move || seen.borrow().clone());
        ctx.on_query("broken", || -> u32 { panic!("the handler has a bug") });
        loop {
            let item: String = ctx.signal("add").await?;
            if item == "checkout" {
                break;
            }
            let priced = ctx.call(&Add { a: 1, b: 1 }).await?;
            items.borrow_mut().push(format!("{item}:{priced}"));
        }
        let count = items.borrow().len();
        Ok::<_, WorkflowError>(count)
    });
    let env = env(store, w.clone(), Arc::default());
    let id = env.client.start("cart", None, &()).await.unwrap();
    let items = |client: Client<B>, w: Workflows, id: String| async move {
        client.query::<Vec<String>>(&w, &id, "items").await
    };
    env.client.signal(&id, "add", &"apple").await.unwrap();
    env.client.signal(&id, "add", &"pear").await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        // Before a worker has taken the start, the query says so.
        match items(env.client.clone(), w.clone(), id.clone()).await {
            Ok(got) if got.len() == 2 => {
                assert_eq!(got, ["apple:2", "pear:2"]);
                break;
            }
            Ok(_) => {}
            Err(err) => assert!(err.to_string().contains("has not started yet"), "{err}"),
        }
        assert!(Instant::now() < deadline, "the cart never had two items");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = env.client.status(&id).await.unwrap().events;
    items(env.client.clone(), w.clone(), id.clone())
        .await
        .unwrap();
    assert_eq!(
        env.client.status(&id).await.unwrap().events,
        events,
        "a query changes nothing"
    );
    // The worker recorded the same answers for tools that run no workflow code; a handler
    // that panics is recorded as an error, and the others still answer.
    let recorded = env.client.query_answers(&id).await.unwrap().unwrap();
    assert_eq!(recorded.events, events);
    assert_eq!(
        recorded.answers["items"],
        Answer::Value(json!(["apple:2", "pear:2"]))
    );
    let Answer::Error(broken) = &recorded.answers["broken"] else {
        panic!("{recorded:?}");
    };
    assert!(broken.contains("the handler has a bug"), "{broken}");
    let detail = env.client.detail(&id).await.unwrap();
    assert_eq!(detail.queries.as_ref(), Some(&recorded));
    let err = env
        .client
        .query::<u32>(&w, &id, "broken")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("panicked"), "{err}");
    let err = env.client.query::<u32>(&w, &id, "total").await.unwrap_err();
    assert!(err.to_string().contains("no query `total`"), "{err}");
    let err = env
        .client
        .query::<u32>(&Workflows::new(), &id, "items")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not among the workflows given"),
        "{err}"
    );
    // An ended instance answers too, as it was at the end.
    env.client.signal(&id, "add", &"checkout").await.unwrap();
    assert_eq!(env.client.result::<usize>(&id, WAIT).await.unwrap(), 2);
    assert_eq!(
        items(env.client.clone(), w, id.clone())
            .await
            .unwrap()
            .len(),
        2
    );
    let recorded = env.client.query_answers(&id).await.unwrap().unwrap();
    assert_eq!(
        recorded.events,
        env.client.status(&id).await.unwrap().events,
        "the last activation recorded its answers"
    );
    assert_eq!(
        recorded.answers["items"],
        Answer::Value(json!(["apple:2", "pear:2"]))
    );
    // Purging the instance removes them with it.
    env.client.purge(&id).await.unwrap();
    assert!(env.client.query_answers(&id).await.is_err());
    assert_eq!(env.backend.queries(&id).await.unwrap(), None);
    env.stop().await;
}
