//! The audit counts and chain heads against a real SQLite file, and against PostgreSQL when
//! `CONCORD_TEST_DATABASE_URL` is set. Rows are written straight into the tables, so the
//! counts are checked against numbers worked out by hand.

use super::*;
use crate::store::SignedHead;
use crate::testing::TestDatabase;

/// 2026-11-02, a Monday, as days since 1970-01-01.
const MONDAY: i64 = 20_759;

/// A search row: chain, position, day, hour, org, purpose, outcome.
type Seed = (
    &'static str,
    i64,
    i64,
    i64,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

const ROWS: &[Seed] = &[
    // Monday: three TREAT by A81001, one by RY4, one CAREMGT, one refused.
    ("a", 0, MONDAY, 9, Some("A81001"), Some("TREAT"), "success"),
    ("a", 1, MONDAY, 10, Some("A81001"), Some("TREAT"), "success"),
    ("a", 2, MONDAY, 23, Some("A81001"), Some("TREAT"), "success"),
    ("b", 0, MONDAY, 11, Some("RY4"), Some("TREAT"), "success"),
    (
        "b",
        1,
        MONDAY,
        12,
        Some("A81001"),
        Some("CAREMGT"),
        "success",
    ),
    ("b", 2, MONDAY, 13, Some("A81001"), Some("TREAT"), "refused"),
    // A console record: no purpose, not an access.
    ("b", 3, MONDAY, 14, Some("A81001"), None, "success"),
    // An unauthenticated refusal: no organisation.
    ("b", 4, MONDAY, 15, None, None, "refused"),
    // Sunday (the same week): break-glass by A81001, and one that failed.
    (
        "a",
        3,
        MONDAY + 6,
        8,
        Some("A81001"),
        Some("ETREAT"),
        "success",
    ),
    (
        "a",
        4,
        MONDAY + 6,
        8,
        Some("A81001"),
        Some("ETREAT"),
        "error",
    ),
    // The next Monday: break-glass by RY4 and by A81001, an error (not a refusal).
    (
        "a",
        5,
        MONDAY + 7,
        0,
        Some("RY4"),
        Some("ETREAT"),
        "success",
    ),
    (
        "a",
        6,
        MONDAY + 7,
        1,
        Some("A81001"),
        Some("ETREAT"),
        "success",
    ),
    (
        "a",
        7,
        MONDAY + 7,
        2,
        Some("A81001"),
        Some("TREAT"),
        "error",
    ),
    // The next Monday: break-glass by RY4 that disclosed the GP's data (see `SOURCES`).
    (
        "a",
        9,
        MONDAY + 7,
        3,
        Some("RY4"),
        Some("ETREAT"),
        "success",
    ),
    // Outside every span asked for below.
    (
        "a",
        8,
        MONDAY + 30,
        0,
        Some("A81001"),
        Some("TREAT"),
        "success",
    ),
];

/// Records that disclosed data, and from which source (`audit_search_sources`): RY4's
/// staff read the GP's data on Monday and in an emergency on the next Monday (`a.9`), and
/// their own (community) data in the other emergency (`a.5`); a refusal discloses nothing.
const SOURCES: &[(&str, i64, &str)] = &[
    ("a", 0, "gp"),
    ("b", 0, "gp"),
    ("b", 0, "community"),
    ("a", 5, "community"),
    ("a", 6, "gp"),
    ("a", 9, "gp"),
    ("a", 9, "community"),
];

async fn seed(store: &Store) {
    store.migrate().await.expect("migrate");
    for (chain, seq, day, hour, org, purpose, outcome) in ROWS {
        let recorded_us = day * DAY_US + hour * 3_600_000_000;
        with_pool!(store, pool => {
            sqlx::query("INSERT INTO audit_records (chain, seq, body, prev_hash, hash) VALUES ($1, $2, '{}', 'p', 'h')")
                .bind(chain).bind(seq).execute(pool).await.expect("record");
            sqlx::query("INSERT INTO audit_search (chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review) VALUES ($1, $2, $3, NULL, NULL, $4, $5, $6, NULL)")
                .bind(chain).bind(seq).bind(recorded_us).bind(org).bind(purpose).bind(outcome)
                .execute(pool).await.expect("search row");
        });
    }
    for (chain, seq, source) in SOURCES {
        let (_, _, day, hour, ..) = ROWS
            .iter()
            .find(|r| r.0 == *chain && r.1 == *seq)
            .expect("a seeded record");
        let recorded_us = day * DAY_US + hour * 3_600_000_000;
        with_pool!(store, pool => {
            sqlx::query("INSERT INTO audit_search_sources (chain, seq, source, recorded_us) VALUES ($1, $2, $3, $4)")
                .bind(chain).bind(seq).bind(source).bind(recorded_us)
                .execute(pool).await.expect("source row");
        });
    }
}

fn counts(rows: &[AuditCount]) -> Vec<(i64, Option<&str>, i64)> {
    rows.iter()
        .map(|c| (c.bucket, c.key.as_deref(), c.count))
        .collect()
}

fn scope(orgs: &[&str], sources: &[&str]) -> AuditScope {
    AuditScope {
        orgs: orgs.iter().map(|o| (*o).to_owned()).collect(),
        sources: sources.iter().map(|s| (*s).to_owned()).collect(),
    }
}

async fn exercise(store: &Store) {
    seed(store).await;
    let (from, to) = (MONDAY * DAY_US, (MONDAY + 14) * DAY_US);
    let all = None;
    // The GP's IG lead: its staff's accesses, and anyone's that disclosed the GP's data.
    let gp = scope(&["A81001"], &["gp"]);
    let gp = Some(&gp);
    // The community trust's: RY4's staff, and the community source's data.
    let ry4 = scope(&["RY4"], &["community"]);
    let ry4 = Some(&ry4);

    let accesses = store
        .audit_accesses_per_day(from, to, all)
        .await
        .expect("accesses");
    assert_eq!(
        counts(&accesses),
        [
            (MONDAY, Some("CAREMGT"), 1),
            (MONDAY, Some("TREAT"), 4),
            (MONDAY + 6, Some("ETREAT"), 1),
            (MONDAY + 7, Some("ETREAT"), 3),
        ]
    );
    let accesses = store
        .audit_accesses_per_day(from, to, gp)
        .await
        .expect("accesses");
    // RY4's read of the GP's data on Monday and its emergency one (`a.9`) are the GP's too;
    // RY4's emergency read of its own data (`a.5`) is not.
    assert_eq!(
        counts(&accesses),
        [
            (MONDAY, Some("CAREMGT"), 1),
            (MONDAY, Some("TREAT"), 4),
            (MONDAY + 6, Some("ETREAT"), 1),
            (MONDAY + 7, Some("ETREAT"), 2),
        ]
    );
    let accesses = store
        .audit_accesses_per_day(from, to, ry4)
        .await
        .expect("accesses");
    assert_eq!(
        counts(&accesses),
        [(MONDAY, Some("TREAT"), 1), (MONDAY + 7, Some("ETREAT"), 2)],
        "RY4's staff's, and none of the GP staff's, who disclosed no community data"
    );
    let only_sources = scope(&[], &["gp"]);
    let accesses = store
        .audit_accesses_per_day(from, to, Some(&only_sources))
        .await
        .expect("accesses");
    assert_eq!(
        counts(&accesses),
        [(MONDAY, Some("TREAT"), 2), (MONDAY + 7, Some("ETREAT"), 2)],
        "a source's disclosures alone"
    );

    // Weeks start on Mondays: Monday and Sunday fall in one, the next Monday in the next.
    let week = (MONDAY + 3) / 7;
    assert_eq!(week * 7 - 3, MONDAY, "week numbers start on the Monday");
    let glass = store
        .audit_break_glass_per_week(from, to, all)
        .await
        .expect("glass");
    assert_eq!(
        counts(&glass),
        [
            (week, Some("A81001"), 1),
            (week + 1, Some("A81001"), 1),
            (week + 1, Some("RY4"), 2),
        ]
    );
    let glass = store
        .audit_break_glass_per_week(from, to, gp)
        .await
        .expect("glass");
    assert_eq!(
        counts(&glass),
        [
            (week, Some("A81001"), 1),
            (week + 1, Some("A81001"), 1),
            (week + 1, Some("RY4"), 1),
        ],
        "RY4's staff's emergency access to the GP's data"
    );
    let glass = store
        .audit_break_glass_per_week(from, to, ry4)
        .await
        .expect("glass");
    assert_eq!(counts(&glass), [(week + 1, Some("RY4"), 2)]);

    let refusals = store
        .audit_refusals_per_day(from, to, all)
        .await
        .expect("refusals");
    assert_eq!(counts(&refusals), [(MONDAY, None, 2)]);
    let refusals = store
        .audit_refusals_per_day(from, to, gp)
        .await
        .expect("refusals");
    assert_eq!(counts(&refusals), [(MONDAY, None, 1)]);
    for nobody in [scope(&["X99"], &[]), AuditScope::default()] {
        for rows in [
            store.audit_refusals_per_day(from, to, Some(&nobody)).await,
            store.audit_accesses_per_day(from, to, Some(&nobody)).await,
            store
                .audit_break_glass_per_week(from, to, Some(&nobody))
                .await,
        ] {
            assert!(rows.expect("counts").is_empty(), "{nobody:?}");
        }
    }

    // The span is half-open: the last day's records are left out when `to` is its start.
    let monday_only = store
        .audit_accesses_per_day(from, from + DAY_US, all)
        .await
        .expect("accesses");
    assert_eq!(monday_only.len(), 2);

    assert_eq!(store.audit_record_total().await.expect("total"), 15);
}

async fn heads(store: &Store) {
    assert_eq!(store.audit_signed_chains().await.expect("chains"), 0);
    assert!(
        store
            .audit_last_heads(None, 10)
            .await
            .expect("heads")
            .is_empty()
    );
    for (chain, seq, signed_us) in [("a", 2, 100), ("a", 6, 300), ("b", 3, 200), ("c", 0, 300)] {
        store
            .record_audit_head(&SignedHead {
                chain: chain.into(),
                seq,
                hash: "h".into(),
                signed_us,
                public_key: "k".into(),
                signature: "s".into(),
            })
            .await
            .expect("head");
    }
    assert_eq!(store.audit_signed_chains().await.expect("chains"), 3);
    let all = store.audit_last_heads(None, 10).await.expect("heads");
    let seen: Vec<_> = all
        .iter()
        .map(|h| (h.chain.as_str(), h.seq, h.signed_us, h.last_seq))
        .collect();
    // Newest signed first (ties by chain, descending); chain c's records are gone.
    assert_eq!(
        seen,
        [
            ("c", 0, 300, None),
            ("a", 6, 300, Some(9)),
            ("b", 3, 200, Some(4)),
        ]
    );
    // Paged two at a time, nothing skipped or repeated.
    let first = store.audit_last_heads(None, 2).await.expect("page");
    assert_eq!(first.len(), 2);
    let last = first.last().expect("a head");
    let rest = store
        .audit_last_heads(Some((last.signed_us, &last.chain)), 2)
        .await
        .expect("page");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].chain, "b");
}

#[tokio::test]
async fn audit_counts_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("stats.db").display());
    let store = Store::connect(&url, 2).await.expect("store");
    exercise(&store).await;
    heads(&store).await;
}

#[tokio::test]
async fn audit_counts_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = Store::connect(db.url(), 2).await.expect("store");
    exercise(&store).await;
    heads(&store).await;
    if let Store::Postgres(pool) = store {
        pool.close().await;
    }
    db.drop().await;
}
