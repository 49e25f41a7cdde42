//! The search projection's rows of disclosing sources and agreements (migration 0010) on a
//! real SQLite file and on PostgreSQL (when `CONCORD_TEST_DATABASE_URL` is set): records kept
//! before the migration are back-filled from their bodies by the same rule the projector
//! follows, are then found by a search within an organisation's scope and by agreement, and
//! still verify; on PostgreSQL, `audit verify` finds each kind of tampering with those rows.

use super::*;
use crate::store::{AuditColumn, AuditQuery, AuditScope, Store};
use crate::testing::TestDatabase;

const KEY: &[u8] = b"a test audit key of at least thirty-two bytes";

fn disclosure(reference: &str, agreement: &str) -> Disclosure {
    Disclosure {
        reference: reference.into(),
        agreement: agreement.into(),
        rule: "r".into(),
        emergency: false,
    }
}

/// Record `i`: RY4's staff read GP and community data (with references that are not gateway
/// ids mixed in), or community data alone; the GP's staff make requests that disclose
/// nothing.
fn body(i: usize) -> Body {
    let disclosed = match i % 3 {
        0 => vec![
            disclosure("Condition/gp.c1", "dsa-direct"),
            disclosure("Observation/gp.o.1", "dsa-direct"),
            disclosure("Patient/0b6d", "dsa-direct"),
            disclosure("Observation/community.o2", "dsa-community"),
        ],
        1 => vec![disclosure("Condition/community.c2", "dsa-community")],
        _ => Vec::new(),
    };
    Body {
        recorded_us: 1_000 + i as i64,
        request_id: format!("req-{i}"),
        user: Some(format!("user-{i}")),
        org: Some(if i % 3 == 2 { "A81001" } else { "RY4" }.into()),
        caller: "staff".into(),
        method: "GET".into(),
        route: "/fhir/Patient/{id}/$everything".into(),
        target: format!("/fhir/Patient/p{i}/$everything"),
        purpose: Some("TREAT".into()),
        person: Some(format!("p{i}")),
        disclosed,
        policy_hash: "abc".into(),
        outcome: "success".into(),
        status: 200,
        ..Body::default()
    }
}

#[test]
fn the_columns_name_each_source_and_agreement_once_sorted_in_runs_or_interleaved() {
    let mut b = body(0);
    b.disclosed = vec![
        disclosure("Observation/gp.o1", "dsa-b"),
        disclosure("Observation/gp.o2", "dsa-b"),
        disclosure("Condition/community.c1", "dsa-a"),
        disclosure("Observation/gp.o3", "dsa-b"),
        disclosure("Patient/0b6d", "dsa-a"),
        disclosure("Observation/social.s1", "dsa-c"),
        disclosure("Observation/community.o4", "dsa-a"),
        disclosure("Observation/gp.o5", "dsa-c"),
    ];
    let c = Columns::of(&b);
    assert_eq!(c.sources, ["community", "gp", "social"]);
    assert_eq!(c.agreements, ["dsa-a", "dsa-b", "dsa-c"]);
    b.disclosed.clear();
    let none = Columns::of(&b);
    assert!(none.sources.is_empty() && none.agreements.is_empty());
}

async fn migrate_before_0010(store: &Store) {
    macro_rules! before {
        ($dir:literal, $pool:expr) => {{
            let mut m = sqlx::migrate!($dir);
            m.migrations = std::borrow::Cow::Owned(
                m.migrations
                    .iter()
                    .filter(|m| m.version < 10)
                    .cloned()
                    .collect(),
            );
            m.run($pool).await.expect("the schema before 0010");
        }};
    }
    match store {
        Store::Sqlite(pool) => before!("./migrations/sqlite", pool),
        Store::Postgres(pool) => before!("./migrations/postgres", pool),
    }
}

async fn exec(store: &Store, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match store {
        Store::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        Store::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
    }
    .expect("tampering");
}

/// Records 0..n chained in `chain`, written as a gateway before migration 0010 wrote them:
/// the log, and (up to `projected`) the search rows and the chain's mark.
async fn old_records(store: &Store, chain: &str, n: usize, projected: usize) {
    let records = super::tests::chained(
        chain,
        (0..n).map(|i| crate::audit::body::disclosed::earlier_form(&body(i))),
    );
    store.append_audit(&records).await.expect("the log");
    for i in 0..projected {
        let c = Columns::of(&body(i));
        let sql = "INSERT INTO audit_search (chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)";
        macro_rules! insert {
            ($pool:expr) => {
                sqlx::query(sql)
                    .bind(chain)
                    .bind(i as i64)
                    .bind(c.recorded_us)
                    .bind(c.person.clone())
                    .bind(c.user.clone())
                    .bind(c.org.clone())
                    .bind(c.purpose.clone())
                    .bind(c.outcome.clone())
                    .execute($pool)
                    .await
                    .map(|_| ())
            };
        }
        match store {
            Store::Sqlite(pool) => insert!(pool),
            Store::Postgres(pool) => insert!(pool),
        }
        .expect("a search row of the old layout");
    }
    exec(
        store,
        &format!(
            "UPDATE audit_projected SET seq = {} WHERE chain = '{chain}'",
            projected as i64 - 1
        ),
    )
    .await;
}

/// Every row of a side table: (seq, value, recorded_us), in order.
async fn side_rows(store: &Store, table: &str) -> Vec<(i64, String, i64)> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT seq, {}, recorded_us FROM {table} ORDER BY seq, 2",
        if table.ends_with("sources") {
            "source"
        } else {
            "agreement"
        }
    ));
    match store {
        Store::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await,
        Store::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await,
    }
    .expect("side rows")
}

/// What the projector writes for records 0..n.
fn expected(n: usize, values: fn(&Columns) -> &Vec<String>) -> Vec<(i64, String, i64)> {
    (0..n)
        .flat_map(|i| {
            let c = Columns::of(&body(i));
            values(&c)
                .iter()
                .map(|v| (i as i64, v.clone(), c.recorded_us))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn back_fill(store: &Store) {
    migrate_before_0010(store).await;
    // 9 records, 7 of them projected before the upgrade; the other 2 are projected by the
    // next gateway to start, after it.
    old_records(store, "old-chain", 9, 7).await;
    store.migrate().await.expect("migration 0010");

    let sources = side_rows(store, "audit_search_sources").await;
    assert_eq!(
        sources,
        expected(7, |c| &c.sources),
        "the SQL rule is the projector's"
    );
    assert_eq!(sources.iter().filter(|r| r.1 == "community").count(), 5);
    let agreements = side_rows(store, "audit_search_agreements").await;
    assert_eq!(agreements, expected(7, |c| &c.agreements));

    let log = AuditLog::new(store.clone(), AuditKey::new(KEY).expect("key"));
    log.settle().await;
    assert_eq!(
        side_rows(store, "audit_search_sources").await,
        expected(9, |c| &c.sources)
    );
    let verified = verify(store, &AuditKey::new(KEY).expect("key"))
        .await
        .expect("readable");
    assert_eq!(verified.map(|v| v.records), Ok(9));

    // The GP's IG lead sees its own staff's records (2, 5, 8) and RY4's reads of its data
    // (the records with a disclosure from `gp`: 0, 3, 6).
    let seqs = |rows: Vec<Row>| {
        let mut s: Vec<i64> = rows.iter().map(|r| r.record.seq).collect();
        s.sort_unstable();
        s
    };
    let gp_lead = AuditQuery {
        scope: Some(AuditScope {
            orgs: vec!["A81001".into()],
            sources: vec!["gp".into()],
        }),
        limit: 50,
        ..AuditQuery::default()
    };
    let found = store.audit_search(&gp_lead).await.expect("search");
    assert_eq!(seqs(found), vec![0, 2, 3, 5, 6, 8]);
    // The community's IG lead: RY4's staff, whose records are also all those with community
    // data; an organisation neither side of any record sees none.
    let community_lead = AuditQuery {
        scope: Some(AuditScope {
            orgs: vec!["RY4".into()],
            sources: vec!["community".into()],
        }),
        ..gp_lead.clone()
    };
    let found = store.audit_search(&community_lead).await.expect("search");
    assert_eq!(seqs(found), vec![0, 1, 3, 4, 6, 7]);
    let council_lead = AuditQuery {
        scope: Some(AuditScope {
            orgs: vec!["LA001".into()],
            sources: vec!["socialcare".into()],
        }),
        ..gp_lead.clone()
    };
    assert!(
        store
            .audit_search(&council_lead)
            .await
            .expect("search")
            .is_empty()
    );
    // By agreement.
    let by = |agreement: &str| AuditQuery {
        equals: vec![(AuditColumn::Agreement, vec![agreement.to_owned()])],
        limit: 50,
        ..AuditQuery::default()
    };
    let found = store
        .audit_search(&by("dsa-community"))
        .await
        .expect("search");
    assert_eq!(seqs(found), vec![0, 1, 3, 4, 6, 7]);
    let found = store.audit_search(&by("dsa-direct")).await.expect("search");
    assert_eq!(seqs(found), vec![0, 3, 6]);
}

#[tokio::test]
async fn records_kept_before_migration_0010_are_back_filled_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let store = Store::connect(&url, 2).await.expect("store");
    back_fill(&store).await;
}

#[tokio::test]
async fn records_kept_before_migration_0010_are_back_filled_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = Store::connect(db.url(), 2).await.expect("store");
    back_fill(&store).await;
    if let Store::Postgres(pool) = store {
        pool.close().await;
    }
    db.drop().await;
}

/// `audit verify` on PostgreSQL finds a row of a disclosing source or agreement that was
/// changed, removed, added, moved in time, or left behind by a record the projection does
/// not hold (SQLite: `tests::each_kind_of_tampering_is_found_at_the_right_record`).
#[tokio::test]
async fn tampered_disclosure_rows_are_found_on_postgres() {
    let cases = [
        (
            "UPDATE audit_search_sources SET source = 'elsewhere' WHERE seq = 3 AND source = 'gp'",
            "sources and agreements of its disclosures",
            3,
        ),
        (
            "DELETE FROM audit_search_agreements WHERE seq = 4",
            "sources and agreements of its disclosures",
            4,
        ),
        (
            "INSERT INTO audit_search_sources (chain, seq, source, recorded_us) SELECT chain, seq, 'x', recorded_us FROM audit_search WHERE seq = 5",
            "sources and agreements of its disclosures",
            5,
        ),
        (
            "UPDATE audit_search_sources SET recorded_us = recorded_us - 1 WHERE seq = 6",
            "sources and agreements of its disclosures",
            6,
        ),
        (
            "INSERT INTO audit_search_agreements (chain, seq, agreement, recorded_us) SELECT chain, 70, 'dsa-x', recorded_us FROM audit_search WHERE seq = 1",
            "source or agreement of a record it does not hold",
            70,
        ),
    ];
    for (sql, says, at) in cases {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = Store::connect(db.url(), 2).await.expect("store");
        store.migrate().await.expect("migrate");
        let log = AuditLog::new(store.clone(), AuditKey::new(KEY).expect("key"));
        for i in 0..9 {
            log.append(&body(i)).await.expect("append");
        }
        log.settle().await;
        let key = AuditKey::new(KEY).expect("key");
        assert!(
            verify(&store, &key).await.expect("readable").is_ok(),
            "untouched"
        );
        exec(&store, sql).await;
        let broken = verify(&store, &key)
            .await
            .expect("readable")
            .expect_err(says);
        assert_eq!(
            (broken.chain.as_str(), broken.seq),
            (log.chain(), at),
            "{sql}"
        );
        assert!(broken.problem.contains(says), "{sql}: {broken}");
        drop(log);
        if let Store::Postgres(pool) = store {
            pool.close().await;
        }
        db.drop().await;
    }
}
