//! Break-glass reviews and their queue against a real SQLite file, and against PostgreSQL
//! when `CONCORD_TEST_DATABASE_URL` is set: scope, oldest-first paging, the counts, and the
//! first review winning, also when many arrive at once.

use super::*;
use crate::testing::TestDatabase;

/// Twelve records on one chain: the odd ones are emergency accesses (ETREAT), by staff of
/// `A81001` except position 5 (`RY4`); times rise with the position but 7 and 9 share one.
fn rows() -> Vec<(Record, Columns)> {
    (0..12_i64)
        .map(|seq| {
            (
                Record {
                    chain: "chain-a".into(),
                    seq,
                    body: format!("{{\"seq\":{seq}}}"),
                    prev_hash: "p".into(),
                    hash: "h".into(),
                },
                Columns {
                    recorded_us: if seq == 9 { 7_000 } else { seq * 1_000 },
                    person: Some("person-1".into()),
                    user: Some("dr-1".into()),
                    org: Some(if seq == 5 { "RY4" } else { "A81001" }.into()),
                    purpose: Some(if seq % 2 == 1 { "ETREAT" } else { "TREAT" }.into()),
                    outcome: "success".into(),
                    review: (seq % 2 == 1).then(|| "break-glass".into()),
                    sources: Vec::new(),
                    agreements: Vec::new(),
                },
            )
        })
        .collect()
}

fn review(seq: i64, reviewer: &str, review_seq: i64) -> BreakGlassReview {
    BreakGlassReview {
        chain: "chain-a".into(),
        seq,
        outcome: "appropriate".into(),
        note: format!("checked by {reviewer}"),
        reviewer_issuer: "https://idp.example".into(),
        reviewer_subject: reviewer.into(),
        reviewer_name: Some("Isla".into()),
        reviewer_role: Some("ig-lead".into()),
        reviewer_org: Some("A81001".into()),
        reviewed_us: 100_000 + review_seq,
        review_chain: "chain-r".into(),
        review_seq,
    }
}

fn seqs(rows: &[Row]) -> Vec<i64> {
    rows.iter().map(|r| r.record.seq).collect()
}

fn own() -> ReviewScope {
    ReviewScope::Orgs(vec!["A81001".into()])
}

async fn exercise(store: &Store) {
    store.migrate().await.expect("migrate");
    let rows = rows();
    let records: Vec<Record> = rows.iter().map(|(r, _)| r.clone()).collect();
    store.append_audit(&records).await.expect("append");
    let projected: Vec<Projection> = rows
        .iter()
        .map(|(r, c)| Projection {
            chain: r.chain.as_str().into(),
            seq: r.seq,
            columns: c.clone(),
        })
        .collect();
    store.project_audit(&projected).await.expect("project");

    // Oldest first; 9 shares 7's time and comes after it. RY4's access is not the GP's.
    let queue = store
        .break_glass_queue(&own(), None, 100)
        .await
        .expect("queue");
    assert_eq!(seqs(&queue), [1, 3, 7, 9, 11]);
    let all = store
        .break_glass_queue(&ReviewScope::Everything, None, 100)
        .await
        .expect("queue");
    assert_eq!(seqs(&all), [1, 3, 5, 7, 9, 11]);
    let nobody = store
        .break_glass_queue(&ReviewScope::Orgs(Vec::new()), None, 100)
        .await
        .expect("queue");
    assert!(nobody.is_empty(), "no organisation, no queue");

    // Two at a time, with the keyset: each once, in order, across the tie.
    let mut paged = Vec::new();
    let mut after: Option<AuditPosition> = None;
    loop {
        let page = store
            .break_glass_queue(&own(), after.as_ref(), 2)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some(AuditPosition {
            recorded_us: last.columns.recorded_us,
            chain: last.record.chain.clone(),
            seq: last.record.seq,
        });
        paged.extend(seqs(&page));
    }
    assert_eq!(paged, [1, 3, 7, 9, 11]);

    // Waiting and overdue (made before 4,000: positions 1 and 3).
    assert_eq!(
        store.break_glass_waiting(&own(), 4_000).await.expect("n"),
        (5, 2)
    );
    assert_eq!(
        store
            .break_glass_waiting(&ReviewScope::Orgs(Vec::new()), 4_000)
            .await
            .expect("n"),
        (0, 0)
    );

    // A review takes an access out of the queue; a second review of it is not kept.
    assert!(
        store
            .insert_break_glass_review(&review(3, "ig-1", 0))
            .await
            .expect("insert")
    );
    assert!(
        !store
            .insert_break_glass_review(&review(3, "ig-2", 1))
            .await
            .expect("insert"),
        "the first review wins"
    );
    assert_eq!(
        store.break_glass_review("chain-a", 3).await.expect("read"),
        Some(review(3, "ig-1", 0))
    );
    assert_eq!(
        store.break_glass_review("chain-a", 1).await.expect("read"),
        None
    );
    let queue = store
        .break_glass_queue(&own(), None, 100)
        .await
        .expect("queue");
    assert_eq!(seqs(&queue), [1, 7, 9, 11]);
    assert_eq!(
        store.break_glass_waiting(&own(), 4_000).await.expect("n"),
        (4, 1)
    );

    // Eight reviews of one access at once: exactly one is kept.
    let tries = (0..8).map(|i| {
        let store = store.clone();
        async move {
            store
                .insert_break_glass_review(&review(7, &format!("ig-{i}"), 10 + i))
                .await
                .expect("insert")
        }
    });
    let kept = futures_util::future::join_all(tries).await;
    assert_eq!(kept.iter().filter(|k| **k).count(), 1, "{kept:?}");

    // The reviewed list: newest review first, within the scope of the reviewed access.
    assert!(
        store
            .insert_break_glass_review(&review(5, "ig-9", 50))
            .await
            .expect("insert")
    );
    let done = store
        .break_glass_reviews(&own(), None, 100)
        .await
        .expect("reviews");
    let reviewed: Vec<i64> = done
        .iter()
        .map(|(r, row)| {
            assert_eq!(
                (r.chain.as_str(), r.seq),
                (row.record.chain.as_str(), row.record.seq)
            );
            r.seq
        })
        .collect();
    assert_eq!(reviewed, [7, 3], "RY4's access is not the GP's");
    let first = store
        .break_glass_reviews(&ReviewScope::Everything, None, 1)
        .await
        .expect("reviews");
    assert_eq!(first[0].0.seq, 5);
    let before = AuditPosition {
        recorded_us: first[0].0.reviewed_us,
        chain: first[0].0.chain.clone(),
        seq: first[0].0.seq,
    };
    let rest = store
        .break_glass_reviews(&ReviewScope::Everything, Some(&before), 10)
        .await
        .expect("reviews");
    assert_eq!(rest.iter().map(|(r, _)| r.seq).collect::<Vec<_>>(), [7, 3]);
}

#[tokio::test]
async fn break_glass_reviews_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/concord.db", dir.path().display());
    exercise(&Store::connect(&url, 4).await.expect("connect")).await;
}

#[tokio::test]
async fn break_glass_reviews_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    exercise(&Store::connect(db.url(), 4).await.expect("connect")).await;
    db.drop().await;
}
