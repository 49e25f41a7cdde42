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
    let verified = verify_with_progress(
        &store,
        &key,
        &HeadCheck::default(),
        Parts::all_cores(),
        &mut |p| {
            seen.push((p.chain.to_owned(), p.records));
        },
    )
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

/// A chain walked in parts is checked at its seams as one walk checks any two records: a
/// record missing on either side of a seam, a whole part missing, records swapped across a
/// seam, a changed record at a part's start, a tail cut off. Where two parts each hold a
/// problem, the earlier position is named, as one walk names it.
#[tokio::test]
async fn a_chain_walked_in_parts_is_checked_across_every_seam() {
    // Forty records in four parts: seams at positions 10, 20 and 30.
    const FOUR: Parts = Parts::new(4, 10);
    let cases: [(&[&str], i64, &str); 10] = [
        (
            &["DELETE FROM audit_records WHERE seq = 10"],
            11,
            "expected position 10",
        ),
        (
            &["DELETE FROM audit_records WHERE seq = 9"],
            10,
            "expected position 9",
        ),
        (
            &["DELETE FROM audit_records WHERE seq >= 10 AND seq < 20"],
            20,
            "expected position 10",
        ),
        (
            &["UPDATE audit_records SET body = replace(body, 'req-10', 'req-x') WHERE seq = 10"],
            10,
            "modified",
        ),
        (
            &[
                "UPDATE audit_records SET seq = -1 WHERE seq = 19",
                "UPDATE audit_records SET seq = 19 WHERE seq = 20",
                "UPDATE audit_records SET seq = 20 WHERE seq = -1",
            ],
            19,
            "does not follow",
        ),
        (
            &["DELETE FROM audit_records WHERE seq >= 30"],
            30,
            "cut off the end",
        ),
        (
            &[
                "UPDATE audit_records SET body = replace(body, 'req-29', 'req-x') WHERE seq = 29",
                "DELETE FROM audit_records WHERE seq = 30",
            ],
            29,
            "modified",
        ),
        (
            &[
                "DELETE FROM audit_records WHERE seq = 35",
                "UPDATE audit_records SET body = replace(body, 'req-12', 'req-x') WHERE seq = 12",
            ],
            12,
            "modified",
        ),
        (
            &["DELETE FROM audit_search WHERE seq = 20"],
            20,
            "missing from the search projection",
        ),
        (
            &[
                "DELETE FROM audit_search WHERE seq = 31",
                "DELETE FROM audit_search WHERE seq = 9",
            ],
            9,
            "missing from the search projection",
        ),
    ];
    for (statements, at, says) in cases {
        let (_dir, store, chain) = forty_records().await;
        assert_eq!(
            walk(&store, FOUR).await.map(|v| v.records),
            Ok(40),
            "untouched"
        );
        tamper(&store, statements).await;
        let whole = walk(&store, Parts::new(1, 1)).await;
        let broken = walk(&store, FOUR).await.expect_err(says);
        assert_eq!(Err(broken.clone()), whole, "{statements:?}");
        assert_eq!(
            (broken.chain.as_str(), broken.seq),
            (chain.as_str(), at),
            "{statements:?}: {broken}"
        );
        assert!(broken.problem.contains(says), "{statements:?}: {broken}");
    }
}

#[test]
fn a_chain_is_split_only_where_each_part_covers_enough_positions() {
    let split = |most, least, span| Parts::new(most, least).of(span);
    let whole = vec![Part {
        from: i64::MIN,
        to: i64::MAX,
        starts: true,
        ends: true,
    }];
    assert_eq!(split(8, 10, None), whole, "a chain with no records");
    assert_eq!(
        split(8, 10, Some((0, 18))),
        whole,
        "19 positions: under two parts' worth"
    );
    assert_eq!(split(1, 1, Some((0, 1_000_000))), whole, "one part at most");
    let parts = split(4, 10, Some((0, 39)));
    let bounds: Vec<(i64, i64)> = parts.iter().map(|p| (p.from, p.to)).collect();
    assert_eq!(
        bounds,
        [(i64::MIN, 9), (10, 19), (20, 29), (30, i64::MAX)],
        "every position in one part"
    );
    assert_eq!(
        parts.iter().map(|p| (p.starts, p.ends)).collect::<Vec<_>>(),
        [(true, false), (false, false), (false, false), (false, true)]
    );
    // A chain whose positions were tampered out to the ends of the range still splits
    // without overflow, each part non-empty and in order.
    let wide = split(3, 1, Some((i64::MIN + 1, i64::MAX)));
    assert_eq!(wide.len(), 3);
    assert!(
        wide.windows(2)
            .all(|w| w[0].to < w[1].from && w[0].to + 1 == w[1].from)
    );
    assert!(wide.iter().all(|p| p.from <= p.to));
}

/// Where one part holds a problem and a later part cannot be read (a body that is not text,
/// a search row whose time is not a number), the problem is reported, as one walk reports
/// it when the two lie in different batches: a failure further on never hides it. An
/// earlier disagreement of the search projection is reported too, though a later part's
/// projection rows cannot be read (one walk stops reading them at the first disagreement).
#[tokio::test]
async fn a_problem_in_one_part_is_reported_though_a_later_part_cannot_be_read() {
    let cases: [(&[&str], i64, &str); 2] = [
        (
            &[
                "UPDATE audit_records SET body = replace(body, 'req-5', 'req-x') WHERE seq = 5",
                "UPDATE audit_records SET body = X'FF80' WHERE seq = 30",
            ],
            5,
            "modified",
        ),
        (
            &[
                "UPDATE audit_search SET user_id = 'someone-else' WHERE seq = 5",
                "UPDATE audit_search SET recorded_us = 'not a time' WHERE seq = 30",
            ],
            5,
            "searchable columns",
        ),
    ];
    for (statements, at, says) in cases {
        let (_dir, store, _) = forty_records().await;
        tamper(&store, statements).await;
        let key = AuditKey::new(KEY).expect("key");
        let whole = verify_with_progress(
            &store,
            &key,
            &HeadCheck::default(),
            Parts::new(1, 1),
            &mut |_| {},
        )
        .await;
        assert!(
            whole.is_err(),
            "{statements:?}: one walk reads both in one batch, and fails: {whole:?}"
        );
        let broken = verify_with_progress(
            &store,
            &key,
            &HeadCheck::default(),
            Parts::new(4, 10),
            &mut |_| {},
        )
        .await
        .expect("the later part's failure does not hide the problem")
        .expect_err(says);
        assert_eq!(broken.seq, at, "{statements:?}: {broken}");
        assert!(broken.problem.contains(says), "{statements:?}: {broken}");
    }
}

/// A SQLite store holding one chain of forty records, and the chain's name.
async fn forty_records() -> (tempfile::TempDir, Store, String) {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = Store::connect(&url, 2).await.expect("store");
    store.migrate().await.expect("migrate");
    let chain = appended(&store, 40).await;
    (dir, store, chain)
}

/// Runs `statements` on a SQLite store, in order.
async fn tamper(store: &Store, statements: &[&str]) {
    let Store::Sqlite(pool) = store else {
        panic!("sqlite")
    };
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(pool)
            .await
            .expect(sql);
    }
}

/// `audit verify` of `store` in `parts`, with the store's heads alone.
async fn walk(store: &Store, parts: Parts) -> Result<Verified, Broken> {
    let key = AuditKey::new(KEY).expect("key");
    verify_with_progress(store, &key, &HeadCheck::default(), parts, &mut |_| {})
        .await
        .expect("readable")
}
