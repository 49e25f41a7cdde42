//! Audit search against a real SQLite file, and against PostgreSQL when
//! `CONCORD_TEST_DATABASE_URL` is set: filters, newest-first order and keyset paging.

use super::*;
use crate::testing::TestDatabase;

/// 30 records over two chains; several share a time, so the chain and position break ties.
fn rows() -> Vec<(Record, Columns)> {
    (0..30_i64)
        .map(|i| {
            let chain = if i % 2 == 0 { "chain-a" } else { "chain-b" };
            (
                Record {
                    chain: chain.into(),
                    seq: i / 2,
                    body: format!("{{\"i\":{i}}}"),
                    prev_hash: "p".into(),
                    hash: "h".into(),
                },
                Columns {
                    recorded_us: 1_000 + i / 3,
                    person: Some(format!("person-{}", i % 4)),
                    user: Some(format!("user-{}", i % 3)),
                    org: Some(if i % 5 == 0 { "RY4" } else { "A81001" }.into()),
                    purpose: Some(if i == 7 { "ETREAT" } else { "TREAT" }.into()),
                    outcome: if i % 10 == 9 { "refused" } else { "success" }.into(),
                    review: (i == 11).then(|| "consent-withdrawn-by-staff".into()),
                    // RY4's staff (i % 5 == 0) read only their own source; A81001's read the
                    // GP's, and every third record also the community's (RY4's).
                    sources: match (i % 5, i % 3) {
                        (0, _) => vec!["community".into()],
                        (_, 0) => vec!["community".into(), "gp".into()],
                        _ => vec!["gp".into()],
                    },
                    agreements: if i % 4 == 0 {
                        vec!["dsa-a".into(), "dsa-b".into()]
                    } else {
                        vec!["dsa-a".into()]
                    },
                },
            )
        })
        .collect()
}

fn position(row: &Row) -> AuditPosition {
    AuditPosition {
        recorded_us: row.columns.recorded_us,
        chain: row.record.chain.clone(),
        seq: row.record.seq,
    }
}

fn key(row: &Row) -> (i64, String, i64) {
    (
        row.columns.recorded_us,
        row.record.chain.clone(),
        row.record.seq,
    )
}

/// Every page of `query`, `size` at a time.
async fn walk(store: &Store, query: &AuditQuery, size: u32) -> Vec<Row> {
    let mut all: Vec<Row> = Vec::new();
    let mut q = query.clone();
    q.limit = size;
    loop {
        let page = store.audit_search(&q).await.expect("search");
        let Some(last) = page.last() else { break };
        q.after = Some(position(last));
        let full = page.len() == size as usize;
        all.extend(page);
        if !full {
            break;
        }
    }
    all
}

async fn exercise(store: &Store) {
    store.migrate().await.expect("migrate");
    let rows = rows();
    let records: Vec<Record> = rows.iter().map(|(r, _)| r.clone()).collect();
    store.append_audit(&records).await.expect("append");
    let projected: Vec<crate::store::Projection> = rows
        .iter()
        .map(|(r, c)| crate::store::Projection {
            chain: r.chain.as_str().into(),
            seq: r.seq,
            columns: c.clone(),
        })
        .collect();
    store.project_audit(&projected).await.expect("project");
    let everything = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    let all = store.audit_search(&everything).await.expect("all");
    assert_eq!(all.len(), 30);
    let keys: Vec<_> = all.iter().map(key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(
        keys, sorted,
        "newest first, then chain and position descending"
    );

    // Pages of 4: every record exactly once, in the same order.
    let paged: Vec<_> = walk(store, &AuditQuery::default(), 4)
        .await
        .iter()
        .map(key)
        .collect();
    assert_eq!(paged, keys);

    let only = |column, values: &[&str]| AuditQuery {
        equals: vec![(column, values.iter().map(|v| (*v).to_owned()).collect())],
        limit: 100,
        ..AuditQuery::default()
    };
    let n = |q: AuditQuery| async move { store.audit_search(&q).await.expect("search").len() };
    assert_eq!(n(only(AuditColumn::Person, &["person-1"])).await, 8);
    assert_eq!(
        n(only(AuditColumn::Person, &["person-1", "person-2"])).await,
        15
    );
    assert_eq!(n(only(AuditColumn::User, &["user-0"])).await, 10);
    assert_eq!(n(only(AuditColumn::Org, &["RY4"])).await, 6);
    assert_eq!(n(only(AuditColumn::Purpose, &["ETREAT"])).await, 1);
    assert_eq!(n(only(AuditColumn::Outcome, &["refused"])).await, 3);
    assert_eq!(n(only(AuditColumn::Outcome, &[])).await, 0);
    assert_eq!(
        n(only(AuditColumn::Review, &["consent-withdrawn-by-staff"])).await,
        1
    );

    // Agreements, a record once however many of its disclosures name one.
    assert_eq!(n(only(AuditColumn::Agreement, &["dsa-a"])).await, 30);
    assert_eq!(n(only(AuditColumn::Agreement, &["dsa-b"])).await, 8);
    assert_eq!(
        n(only(AuditColumn::Agreement, &["dsa-a", "dsa-b"])).await,
        30
    );
    assert_eq!(n(only(AuditColumn::Agreement, &["dsa-c"])).await, 0);
    assert_eq!(n(only(AuditColumn::Agreement, &[])).await, 0);

    // Scopes: an organisation's staff OR disclosures from its sources.
    let scoped = |orgs: &[&str], sources: &[&str]| AuditQuery {
        scope: Some(AuditScope {
            orgs: orgs.iter().map(|o| (*o).to_owned()).collect(),
            sources: sources.iter().map(|s| (*s).to_owned()).collect(),
        }),
        ..everything.clone()
    };
    let ids = |rows: Vec<Row>| -> Vec<i64> {
        let mut ids: Vec<i64> = rows
            .iter()
            .map(|r| r.record.seq * 2 + i64::from(r.record.chain == "chain-b"))
            .collect();
        ids.sort_unstable();
        ids
    };
    let search = |q: AuditQuery| async move { store.audit_search(&q).await.expect("search") };
    // RY4's IG lead: its 6 staff records and A81001's records that disclosed community data.
    let want: Vec<i64> = (0..30).filter(|i| i % 5 == 0 || i % 3 == 0).collect();
    assert_eq!(ids(search(scoped(&["RY4"], &["community"])).await), want);
    // Paged through its branches (its staff, its source), each record once, in order.
    let want: Vec<i64> = (0..30).filter(|i| i % 5 == 0 || i % 3 == 0).collect();
    let paged = walk(store, &scoped(&["RY4"], &["community"]), 3).await;
    assert_eq!(paged.len(), want.len(), "each record once");
    let keys: Vec<_> = paged.iter().map(key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(keys, sorted, "newest first");
    assert_eq!(ids(paged), want);
    // A short list (break-glass, refusals) leads, and the scope is checked on it.
    let mut q = scoped(&["A81001"], &["gp"]);
    q.equals.push((AuditColumn::Purpose, vec!["ETREAT".into()]));
    assert_eq!(ids(search(q).await), vec![7]);
    let mut q = scoped(&["RY4"], &["community"]);
    q.equals
        .push((AuditColumn::Outcome, vec!["refused".into()]));
    let want: Vec<i64> = (0..30)
        .filter(|i| (i % 5 == 0 || i % 3 == 0) && i % 10 == 9)
        .collect();
    assert_eq!(ids(search(q).await), want);
    // Without its source, its staff alone.
    let want: Vec<i64> = (0..30).filter(|i| i % 5 == 0).collect();
    assert_eq!(ids(search(scoped(&["RY4"], &[])).await), want);
    // No organisation, no source: nothing.
    assert!(search(scoped(&[], &[])).await.is_empty());
    // A scope narrows every other filter and pages the same way.
    let mut q = scoped(&["A81001"], &["gp"]);
    q.equals.push((AuditColumn::Org, vec!["RY4".into()]));
    assert!(
        search(q).await.is_empty(),
        "RY4's staff never read the GP's data"
    );
    let mut q = scoped(&["RY4"], &["community"]);
    q.equals
        .push((AuditColumn::Agreement, vec!["dsa-b".into()]));
    let want: Vec<i64> = (0..30)
        .filter(|i| (i % 5 == 0 || i % 3 == 0) && i % 4 == 0)
        .collect();
    assert_eq!(ids(search(q.clone()).await), want);
    let paged = walk(store, &q, 2).await;
    assert_eq!(ids(paged), want);

    // The largest search the API lets through (every alternative a `ne` date, which is two
    // spans, plus long value lists) is answered, not refused by the database's limits.
    let alternatives = crate::fhir::search::MAX_TOTAL_ALTERNATIVES;
    let mut big = everything.clone();
    big.recorded = (0..crate::fhir::search::MAX_REPEATS)
        .map(|_| {
            (0..alternatives / crate::fhir::search::MAX_REPEATS)
                .flat_map(|i| {
                    let i = i as i64;
                    [
                        AuditSpan {
                            from: None,
                            to: Some(i),
                        },
                        AuditSpan {
                            from: Some(i + 1),
                            to: None,
                        },
                    ]
                })
                .collect()
        })
        .collect();
    big.equals = vec![(
        AuditColumn::Person,
        (0..alternatives).map(|i| format!("person-{i}")).collect(),
    )];
    assert_eq!(n(big).await, 30);

    // Groups AND; spans within a group OR.
    let mut q = only(AuditColumn::User, &["user-0"]);
    q.equals.push((AuditColumn::Org, vec!["RY4".into()]));
    assert_eq!(n(q).await, 2); // i = 0 and 15
    let mut q = everything.clone();
    q.recorded = vec![
        vec![AuditSpan {
            from: Some(1_002),
            to: None,
        }],
        vec![
            AuditSpan {
                from: None,
                to: Some(1_004),
            },
            AuditSpan {
                from: Some(1_009),
                to: Some(1_010),
            },
        ],
    ];
    // 1002 and 1003 (three each), and 1009 (three).
    assert_eq!(n(q.clone()).await, 9);
    let paged = walk(store, &q, 2).await;
    assert_eq!(paged.len(), 9);
    assert!(
        paged
            .iter()
            .all(|r| matches!(r.columns.recorded_us, 1_002 | 1_003 | 1_009))
    );

    let one = store
        .audit_record("chain-b", 3)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(one.record.body, "{\"i\":7}");
    assert_eq!(one.columns.purpose.as_deref(), Some("ETREAT"));
    assert!(
        store
            .audit_record("chain-b", 99)
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn audit_search_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("search.db").display());
    let store = Store::connect(&url, 2).await.expect("store");
    exercise(&store).await;
}

#[tokio::test]
async fn audit_search_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = Store::connect(db.url(), 2).await.expect("store");
    exercise(&store).await;
    if let Store::Postgres(pool) = store {
        pool.close().await;
    }
    db.drop().await;
}
