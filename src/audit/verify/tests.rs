//! The walk's progress, against a real SQLite file: told at each chain's start, after every
//! batch and at the end, never going back, ending at the count the result gives.

use super::*;
use crate::audit::{AuditLog, Body};

const KEY: &[u8] = b"a test audit key of at least thirty-two bytes";

fn body(i: usize) -> Body {
    Body {
        recorded_us: 1_000 + i as i64,
        request_id: format!("req-{i}"),
        caller: "staff".into(),
        method: "GET".into(),
        route: "/fhir/metadata".into(),
        target: "/fhir/metadata".into(),
        policy_hash: "abc".into(),
        outcome: "success".into(),
        status: 200,
        ..Body::default()
    }
}

async fn appended(store: &Store, n: usize) -> String {
    let log = AuditLog::new(store.clone(), AuditKey::new(KEY).expect("key"));
    let appends = (0..n).map(|i| {
        let log = log.clone();
        async move { log.append(&body(i)).await.expect("append") }
    });
    futures_util::future::join_all(appends).await;
    log.settle().await;
    log.chain().to_owned()
}

#[tokio::test]
async fn progress_names_each_chain_and_counts_up_to_the_result() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = Store::connect(&url, 2).await.expect("store");
    store.migrate().await.expect("migrate");
    let big = appended(&store, CHECK_BATCH + 10).await;
    let small = appended(&store, 3).await;

    let key = AuditKey::new(KEY).expect("key");
    let mut seen: Vec<(String, u64)> = Vec::new();
    let verified = verify_with_progress(&store, &key, &HeadCheck::default(), &mut |p| {
        seen.push((p.chain.to_owned(), p.records));
    })
    .await
    .expect("readable")
    .expect("verifies");
    assert_eq!(verified.records, (CHECK_BATCH + 13) as u64);
    assert_eq!(
        verify(&store, &key).await.expect("readable"),
        Ok(verified.clone()),
        "the same result as without progress"
    );

    let counts: Vec<u64> = seen.iter().map(|(_, n)| *n).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert_eq!(counts.last(), Some(&verified.records));
    for chain in [&big, &small] {
        assert!(seen.iter().any(|(c, _)| c == chain), "{chain} named");
    }
    // Chains are walked one after the other, each a batch at a time.
    let big_starts = seen
        .iter()
        .find(|(c, _)| *c == big)
        .map(|(_, n)| *n)
        .expect("the big chain named");
    assert!(
        seen.iter()
            .any(|(c, n)| *c == big && *n == big_starts + CHECK_BATCH as u64),
        "told after the first full batch: {seen:?}"
    );
}

/// A check that runs while the gateway appends (the IG console runs it on a live log) finds
/// nothing wrong: the search rows and side rows of records appended and projected after a
/// batch was read are neither strays nor a mismatch.
#[tokio::test]
async fn verify_while_records_are_appended_and_projected_finds_nothing_wrong() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = Store::connect(&url, 4).await.expect("store");
    store.migrate().await.expect("migrate");
    let log = AuditLog::new(store.clone(), AuditKey::new(KEY).expect("key"));
    let disclosing = |i: usize| Body {
        disclosed: vec![crate::audit::Disclosure {
            reference: format!("Condition/gp.c{i}").into(),
            agreement: "dsa".into(),
            rule: "r".into(),
            emergency: false,
        }],
        ..body(i)
    };
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for i in 0..400 {
                log.append(&disclosing(i)).await.expect("append");
            }
        })
    };
    let key = AuditKey::new(KEY).expect("key");
    let mut runs = 0;
    while !writer.is_finished() {
        let verified = verify(&store, &key).await.expect("readable");
        assert!(verified.is_ok(), "run {runs}: {verified:?}");
        runs += 1;
    }
    writer.await.expect("writer");
    log.settle().await;
    assert_eq!(
        verify(&store, &key)
            .await
            .expect("readable")
            .map(|v| v.records),
        Ok(400)
    );
    assert!(
        runs > 1,
        "verify ran while records were appended ({runs} runs)"
    );
}
