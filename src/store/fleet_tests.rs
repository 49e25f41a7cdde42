//! The fleet's instances and change notices, against a real SQLite file and against
//! PostgreSQL when `CONCORD_TEST_DATABASE_URL` is set.

use std::ops::ControlFlow;
use std::time::Duration;

use super::notify::{self, Change, ChangeKind, Event};
use super::*;
use crate::testing::TestDatabase;

fn instance(chain: &str, hash: &str, heartbeat_at: i64) -> Instance {
    Instance {
        chain: chain.into(),
        listen: "127.0.0.1:8080".into(),
        policy_hash: hash.into(),
        policy_loaded_at: "2026-11-30T09:00:00Z".into(),
        started_at: 1_000,
        heartbeat_at,
    }
}

async fn instances_heard_within_the_window(store: &Store) {
    store.migrate().await.expect("migrate");
    store
        .heartbeat(&instance("a", "h1", 1_000))
        .await
        .expect("a");
    store
        .heartbeat(&instance("b", "h1", 1_010))
        .await
        .expect("b");
    store
        .heartbeat(&instance("c", "h2", 1_020))
        .await
        .expect("c");
    let chains = |list: Vec<Instance>| list.into_iter().map(|i| i.chain).collect::<Vec<_>>();
    assert_eq!(
        chains(store.instances(1_005).await.expect("read")),
        ["b", "c"],
        "a fell silent before the window"
    );
    // A heartbeat updates the row: a's reload to h2 brings it back into the window.
    store
        .heartbeat(&instance("a", "h2", 1_030))
        .await
        .expect("a again");
    let now = store.instances(1_005).await.expect("read");
    assert_eq!(now.len(), 3);
    assert_eq!(
        now.iter().find(|i| i.chain == "a").expect("a").policy_hash,
        "h2"
    );
    assert_eq!(store.forget_instances(1_015).await.expect("forget"), 1);
    assert_eq!(chains(store.instances(0).await.expect("read")), ["a", "c"]);
}

#[tokio::test]
async fn sqlite_instances() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/concord.db", dir.path().display());
    let store = Store::connect(&url, 2).await.expect("connect");
    instances_heard_within_the_window(&store).await;
}

#[tokio::test]
async fn postgres_instances() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = Store::connect(db.url(), 2).await.expect("connect");
    instances_heard_within_the_window(&store).await;
    db.drop().await;
}

/// A listener on its own connection, its events sent to the returned channel.
fn listener(
    store: &Store,
    name: &str,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Event>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (store, name) = (store.clone(), name.to_owned());
    let task = tokio::spawn(async move {
        notify::listen(&store, &name, |event| {
            if tx.send(event).is_err() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await;
    });
    (rx, task)
}

async fn next(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the listener runs")
}

/// The changes heard until none comes for 300 ms.
async fn changes(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Vec<Change> {
    let mut heard = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(300), events.recv()).await
    {
        match event {
            Event::Changed(change) => heard.push(change),
            other => panic!("only changes expected, got {other:?}"),
        }
    }
    heard
}

fn consent(person: Uuid, org: &str) -> ConsentRecord {
    ConsentRecord {
        id: Uuid::new_v4(),
        person,
        kind: "not_from".into(),
        org: org.into(),
        active: true,
        recorded_us: 1,
        resource: "{}".into(),
    }
}

/// Every write to people's links and sharing choices is announced on commit, naming only the
/// gateway id; a write rolled back announces nothing; a listener whose connection is cut
/// says so and is back by itself.
#[tokio::test]
async fn every_change_to_links_and_choices_is_announced_on_commit() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = Store::connect(db.url(), 2).await.expect("connect");
    store.migrate().await.expect("migrate");
    let name = format!("concord-listener {}", Uuid::new_v4());
    let (mut events, task) = listener(&store, &name);
    assert!(matches!(next(&mut events).await, Event::Listening));

    let ann = store.ensure_person("9990000018", 1).await.expect("ann");
    let bob = store.ensure_person("9990000026", 1).await.expect("bob");
    assert_eq!(
        changes(&mut events).await,
        [],
        "a new person changes no link"
    );
    let links = |person| Change {
        kind: ChangeKind::Links,
        person,
    };
    store
        .record_links(ann, "gp", &["p1".into()], 2)
        .await
        .expect("link");
    assert_eq!(changes(&mut events).await, [links(ann)]);
    // A source's patient id moves from Ann to Bob (the provider corrected an NHS number):
    // both are announced.
    store
        .record_links(bob, "gp", &["p1".into()], 3)
        .await
        .expect("move");
    let mut moved = changes(&mut events).await;
    moved.sort_by_key(|c| c.person == bob);
    assert_eq!(moved, [links(ann), links(bob)]);
    store.forget_check(bob, "gp").await.expect("stale");
    assert_eq!(changes(&mut events).await, [links(bob)]);
    store
        .record_consent(&consent(ann, "A81001"))
        .await
        .expect("consent");
    assert_eq!(
        changes(&mut events).await,
        [Change {
            kind: ChangeKind::Consent,
            person: ann
        }]
    );

    let Store::Postgres(pool) = &store else {
        unreachable!("postgres")
    };
    // In the same transaction: nothing is announced for a write that is rolled back.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO consents (id, person_id, kind, org, active, recorded_us, resource) VALUES ($1, $2, 'not_to', 'RY4', 1, 2, '{}')")
        .bind(Uuid::new_v4().to_string())
        .bind(bob.to_string())
        .execute(&mut *tx)
        .await
        .expect("insert");
    tx.rollback().await.expect("rollback");
    assert_eq!(changes(&mut events).await, []);

    // The listener's connection is its own, named for operators; cut it, and it says so,
    // then listens again.
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_all(pool)
    .await
    .expect("terminate");
    assert_eq!(cut, [true], "one connection named {name}");
    assert!(matches!(next(&mut events).await, Event::Lost(_)));
    assert!(matches!(next(&mut events).await, Event::Listening));
    store
        .record_consent(&consent(bob, "RY4"))
        .await
        .expect("consent");
    assert_eq!(
        changes(&mut events).await,
        [Change {
            kind: ChangeKind::Consent,
            person: bob
        }]
    );
    drop(events);
    task.abort();
    db.drop().await;
}
