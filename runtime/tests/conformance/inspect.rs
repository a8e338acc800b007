//! What operators read and do (`codegen flows` and its console), on every backend.

use super::*;

use codegen_runtime::backend::{DeadFilter, InstanceFilter};
use codegen_runtime::operate::{SpanKind, SpanOutcome, Waiting};

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) async fn instances_page_by_cursor_newest_first_under_every_filter<B: Conformant>(
    store: Opened<B>,
) {
    let env = env(store, workflows(), Arc::default());
    let mut started = Vec::new();
    for id in ["ord-a-0", "ord-a-1", "ord-b-0", "ord-a-2", "ord-b-1"] {
        env.client.start("three_steps", Some(id), &1).await.unwrap();
        env.client.result::<i64>(id, WAIT).await.unwrap();
        started.push(env.client.status(id).await.unwrap().created_at);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    env.client
        .start("wait_signal", Some("ord-w"), &())
        .await
        .unwrap();
    let ids = |page: &codegen_runtime::InstancePage| {
        page.instances
            .iter()
            .map(|i| i.id.clone())
            .collect::<Vec<_>>()
    };

    // Every instance once, newest first, two at a time.
    let all = InstanceFilter::default();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = env.client.instances(&all, after.as_ref(), 2).await.unwrap();
        assert!(page.instances.len() <= 2);
        seen.extend(ids(&page));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "ord-w", "ord-b-1", "ord-a-2", "ord-b-0", "ord-a-1", "ord-a-0"
        ]
    );

    let page = |filter: InstanceFilter| {
        let client = env.client.clone();
        async move { ids(&client.instances(&filter, None, 10).await.unwrap()) }
    };
    assert_eq!(
        page(InstanceFilter {
            id_prefix: Some("ord-a-".into()),
            ..Default::default()
        })
        .await,
        ["ord-a-2", "ord-a-1", "ord-a-0"]
    );
    assert_eq!(
        page(InstanceFilter {
            status: Some(Status::Running),
            ..Default::default()
        })
        .await,
        ["ord-w"]
    );
    assert_eq!(
        page(InstanceFilter {
            name: Some("three_steps".into()),
            started_from: Some(started[2]),
            started_before: Some(started[4]),
            ..Default::default()
        })
        .await,
        ["ord-a-2", "ord-b-0"]
    );
    assert!(
        page(InstanceFilter {
            name: Some("no_such_workflow".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );

    let counts = env.client.status_counts(None, 100).await.unwrap();
    let count = |counts: &[(Status, u64)], status| {
        counts.iter().find(|(s, _)| *s == status).map(|(_, n)| *n)
    };
    assert_eq!(count(&counts, Status::Completed), Some(5));
    assert_eq!(count(&counts, Status::Running), Some(1));
    assert_eq!(count(&counts, Status::Failed), Some(0));
    let capped = env.client.status_counts(None, 3).await.unwrap();
    assert_eq!(
        count(&capped, Status::Completed),
        Some(3),
        "counted up to the cap"
    );
    let named = env
        .client
        .status_counts(Some("wait_signal"), 100)
        .await
        .unwrap();
    assert_eq!(count(&named, Status::Completed), Some(0));
    env.stop().await;
}

pub(crate) async fn an_instance_detail_shows_each_retry_with_its_error_and_what_it_waits_on<
    B: Conformant,
>(
    store: Opened<B>,
) {
    let behaviour = Arc::new(Behaviour::default());
    behaviour.fail_first.store(2, Ordering::SeqCst);
    let env = env(store, workflows(), behaviour);
    env.client
        .start("flaky_once", Some("d-1"), &"k")
        .await
        .unwrap();
    env.client.result::<String>("d-1", WAIT).await.unwrap();
    let detail = env.client.detail("d-1").await.unwrap();
    let attempts: Vec<_> = detail
        .spans
        .iter()
        .filter(|s| s.kind == SpanKind::Attempt)
        .map(|s| (s.attempt, s.outcome, s.error.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(attempts.len(), 3, "{:?}", detail.spans);
    assert_eq!(attempts[0].0, Some(1));
    assert_eq!(attempts[0].1, SpanOutcome::Retried);
    assert!(attempts[0].2.contains("503"), "{}", attempts[0].2);
    assert_eq!(attempts[1].1, SpanOutcome::Retried);
    assert_eq!((attempts[2].0, attempts[2].1), (Some(3), SpanOutcome::Ok));
    assert_eq!(
        detail
            .spans
            .iter()
            .filter(|s| s.kind == SpanKind::Backoff)
            .count(),
        2
    );
    assert!(
        detail.waiting.is_empty(),
        "it has ended: {:?}",
        detail.waiting
    );

    let figures = env.client.services(Duration::from_secs(600)).await.unwrap();
    let flaky = figures.iter().find(|s| s.service == "flaky").unwrap();
    assert_eq!((flaky.ok, flaky.retried, flaky.dead), (1, 2, 0));
    assert_eq!(
        (flaky.ready, flaky.delayed),
        (Some(0), Some(0)),
        "nothing waits: {flaky:?}"
    );
    let math = figures.iter().find(|s| s.service == "math");
    assert!(math.is_none_or(|m| m.retried == 0));

    // A timer and a child are what a parent waits on.
    env.client
        .start("nap", Some("d-nap"), &600_000)
        .await
        .unwrap();
    until("the timer", async || {
        !env.client.detail("d-nap").await.unwrap().waiting.is_empty()
    })
    .await;
    let detail = env.client.detail("d-nap").await.unwrap();
    match detail.waiting.as_slice() {
        [Waiting::Timer { due, .. }] => {
            assert!(*due > detail.instance.created_at + 590_000, "{due}");
        }
        other => panic!("waits on {other:?}"),
    }
    env.client
        .start("parent_of_sleeper", Some("d-p"), &())
        .await
        .unwrap();
    until("the child", async || {
        env.client.status("d-p/0").await.is_ok()
    })
    .await;
    until("the parent waiting", async || {
        !env.client.detail("d-p").await.unwrap().waiting.is_empty()
    })
    .await;
    let detail = env.client.detail("d-p").await.unwrap();
    assert_eq!(
        detail.waiting,
        [Waiting::Child {
            seq: 0,
            name: "wait_signal".into(),
            id: "d-p/0".into()
        }]
    );
    assert_eq!(
        detail
            .children
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        ["d-p/0"]
    );
    env.stop().await;
}

pub(crate) async fn operator_actions_are_recorded_with_who_did_them_and_replay_ignores_them<
    B: Conformant,
>(
    store: Opened<B>,
) {
    let behaviour = Arc::new(Behaviour::default());
    behaviour.fail_first.store(u32::MAX, Ordering::SeqCst);
    let env = env(store, workflows(), behaviour.clone());
    let ops = env.client.clone().acting_as("ada@ops");
    env.client
        .start("wait_signal", Some("a-1"), &())
        .await
        .unwrap();
    ops.signal("a-1", "go", &"one").await.unwrap();
    ops.signal("a-1", "go", &"two").await.unwrap();
    assert_eq!(
        env.client.result::<String>("a-1", WAIT).await.unwrap(),
        "one+two",
        "the workflow sees its signals, not the records"
    );
    let actions = |history: codegen_runtime::workflow::replay::RecordedHistory| {
        history
            .events
            .into_iter()
            .filter_map(|e| match e.event {
                Event::OperatorAction { action, by, detail } => Some((action, by, detail)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let recorded = actions(env.client.history("a-1").await.unwrap());
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!(
        recorded[0],
        ("signal".into(), "ada@ops".into(), "`go`".into())
    );

    // A dead task, listed with its service and attempts, and retried by an operator.
    env.client
        .start("flaky_once", Some("a-2"), &"k")
        .await
        .unwrap();
    assert!(env.client.result::<String>("a-2", WAIT).await.is_err());
    let dead = env
        .client
        .dead(
            &DeadFilter {
                service: Some("flaky".into()),
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts(), 3);
    assert_eq!(dead[0].letter.key, "a-2");
    let elsewhere = DeadFilter {
        service: Some("math".into()),
        ..Default::default()
    };
    assert!(env.client.dead(&elsewhere, 10).await.unwrap().is_empty());
    behaviour.fail_first.store(0, Ordering::SeqCst);
    ops.retry_dead(&dead[0].letter.id).await.unwrap();
    assert_eq!(
        env.client.result::<String>("a-2", WAIT).await.unwrap(),
        "k:a-2/task/0:1"
    );
    let detail = env.client.detail("a-2").await.unwrap();
    let attempts: Vec<_> = detail
        .spans
        .iter()
        .filter(|s| s.kind == SpanKind::Attempt)
        .collect();
    assert_eq!(
        attempts
            .iter()
            .map(|s| (s.attempt, s.outcome))
            .collect::<Vec<_>>(),
        [
            (Some(1), SpanOutcome::Retried),
            (Some(2), SpanOutcome::Retried),
            (Some(3), SpanOutcome::Failed),
            (Some(1), SpanOutcome::Ok),
        ],
        "the operator's retry is a fresh first attempt: {attempts:?}"
    );
    assert!(
        attempts[3].start >= attempts[2].end.unwrap(),
        "the retried attempt is shown when it ran, not from the death on: {attempts:?}"
    );
    until("the record of the retry", async || {
        actions(env.client.history("a-2").await.unwrap())
            .iter()
            .any(|(action, by, _)| action == "retry" && by == "ada@ops")
    })
    .await;
    let err = ops.retry_dead(&dead[0].letter.id).await.unwrap_err();
    assert!(err.to_string().contains("no dead task"), "{err}");
    env.stop().await;
}
