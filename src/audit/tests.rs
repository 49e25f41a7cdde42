//! The chain against a real SQLite file: an untouched chain verifies; each kind of tampering
//! is found at the right record.

use super::*;
use crate::store::Store;
use serde::Serialize;
use std::time::Duration;

use std::path::{Path, PathBuf};

pub(super) const KEY: &[u8] = b"a test audit key of at least thirty-two bytes";

pub(super) fn body(i: usize) -> Body {
    Body {
        recorded_us: 1_000 + i as i64,
        request_id: format!("req-{i}"),
        user: Some(format!("user-{}", i % 3)),
        org: Some("A81001".into()),
        caller: "staff".into(),
        method: "GET".into(),
        route: "/fhir/Patient/{id}/$everything".into(),
        target: format!("/fhir/Patient/p{i}/$everything"),
        purpose: Some("TREAT".into()),
        person: Some(format!("p{i}")),
        disclosed: vec![Disclosure {
            reference: format!("Condition/gp.c{i}").into(),
            agreement: "dsa".into(),
            rule: "r".into(),
            emergency: false,
        }],
        withheld: i % 2,
        policy_hash: "abc".into(),
        outcome: "success".into(),
        status: 200,
        ..Body::default()
    }
}

pub(super) async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = Store::connect(&url, 2).await.expect("store");
    store.migrate().await.expect("migrate");
    (dir, store)
}

pub(super) async fn filled(store: &Store, n: usize) -> AuditLog {
    let log = AuditLog::new(store.clone(), AuditKey::new(KEY).expect("key"));
    for i in 0..n {
        log.append(&body(i)).await.expect("append");
    }
    log.settle().await;
    log
}

/// A query's one number (a count).
pub(super) async fn scalar(store: &Store, sql: &str) -> i64 {
    let Store::Sqlite(pool) = store else {
        panic!("sqlite")
    };
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .expect(sql)
}

pub(super) async fn exec(store: &Store, sql: &str) {
    let Store::Sqlite(pool) = store else {
        panic!("sqlite")
    };
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .expect(sql);
}

/// Migrates a SQLite store up to migration `last` and no further: the schema a gateway of
/// that migration kept.
pub(super) async fn migrated_to(pool: &sqlx::SqlitePool, last: i64) {
    let mut before = sqlx::migrate!("./migrations/sqlite");
    before.migrations = std::borrow::Cow::Owned(
        before
            .migrations
            .iter()
            .filter(|m| m.version <= last)
            .cloned()
            .collect(),
    );
    before
        .run(pool)
        .await
        .expect("the schema of an earlier migration");
}

pub(super) async fn check(store: &Store) -> Result<Verified, Broken> {
    check_heads(store, &HeadCheck::default()).await
}

/// Splits that cut even a short chain into parts: every test that checks a chain checks it
/// walked whole and walked in parts (seams at every few positions, parts of one position,
/// more parts than positions), and finds the same in each.
const SPLITS: [Parts; 4] = [
    Parts::new(1, 1),
    Parts::new(3, 4),
    Parts::new(64, 1),
    Parts::new(2, verify::CHECK_BATCH as u64),
];

/// `verify_with_heads`, and the same walk in each of [`SPLITS`]: all must agree.
async fn check_heads(store: &Store, heads: &HeadCheck) -> Result<Verified, Broken> {
    let key = AuditKey::new(KEY).expect("key");
    let found = verify_with_heads(store, &key, heads)
        .await
        .expect("readable");
    for parts in SPLITS {
        let split = verify_with_progress(store, &key, heads, parts, &mut |_| {})
            .await
            .expect("readable");
        assert_eq!(split, found, "walked in {parts:?}");
    }
    found
}

#[tokio::test]
async fn an_untouched_chain_verifies_and_a_wrong_key_does_not() {
    let (_dir, store) = store().await;
    filled(&store, 20).await;
    filled(&store, 5).await;
    assert_eq!(
        check(&store).await,
        Ok(Verified {
            chains: 2,
            records: 25,
            heads: 0
        })
    );
    let other = AuditKey::new(b"another key that is also long enough to use").expect("key");
    let found = verify(&store, &other).await.expect("readable");
    assert!(
        found.is_err(),
        "records made with another key do not verify"
    );
    assert!(AuditKey::new(b"short").is_err());
}

#[tokio::test]
async fn each_kind_of_tampering_is_found_at_the_right_record() {
    let cases: [(&str, &str, i64); 15] = [
        (
            "UPDATE audit_records SET body = replace(body, '\"withheld\":1', '\"withheld\":0') WHERE seq = 7",
            "modified",
            7,
        ),
        ("DELETE FROM audit_records WHERE seq = 4", "missing", 5),
        (
            "INSERT INTO audit_records (chain, seq, body, prev_hash, hash) SELECT chain, 100, body, prev_hash, hash FROM audit_records WHERE seq = 9",
            "missing or was inserted",
            100,
        ),
        (
            "UPDATE audit_records SET seq = CASE seq WHEN 2 THEN 3 ELSE 2 END WHERE seq IN (2, 3)",
            "does not follow",
            2,
        ),
        (
            "UPDATE audit_search SET user_id = 'someone-else' WHERE seq = 6",
            "searchable columns",
            6,
        ),
        // A record hidden from searches, a search entry for a record that is not there, and a
        // tail cut off with its search rows (no signed head needed: the projection's mark
        // remembers how far the chain reached).
        (
            "DELETE FROM audit_search WHERE seq = 5",
            "missing from the search projection",
            5,
        ),
        (
            "INSERT INTO audit_search (chain, seq, recorded_us, person_id, user_id, org, purpose, outcome) SELECT chain, 50, recorded_us, person_id, user_id, org, purpose, outcome FROM audit_search WHERE seq = 3",
            "not in the log",
            50,
        ),
        // The rows of the sources and agreements a record's disclosures name: one changed,
        // one missing, one added, one at another time, and one for a record the projection
        // does not hold.
        (
            "UPDATE audit_search_sources SET source = 'community' WHERE seq = 8",
            "sources and agreements of its disclosures",
            8,
        ),
        (
            "DELETE FROM audit_search_agreements WHERE seq = 9",
            "sources and agreements of its disclosures",
            9,
        ),
        (
            "INSERT INTO audit_search_sources (chain, seq, source, recorded_us) SELECT chain, seq, 'community', recorded_us FROM audit_search WHERE seq = 4",
            "sources and agreements of its disclosures",
            4,
        ),
        (
            "UPDATE audit_search_agreements SET recorded_us = recorded_us + 1 WHERE seq = 3",
            "sources and agreements of its disclosures",
            3,
        ),
        (
            "INSERT INTO audit_search_agreements (chain, seq, agreement, recorded_us) SELECT chain, 60, 'dsa-x', recorded_us FROM audit_search WHERE seq = 3",
            "source or agreement of a record it does not hold",
            60,
        ),
        (
            "UPDATE audit_records SET body = replace(body, 'Condition/gp.c2', 'Condition/community.c2') WHERE seq = 2",
            "modified",
            2,
        ),
        (
            "DELETE FROM audit_records WHERE seq >= 10",
            "cut off the end",
            10,
        ),
        (
            "UPDATE audit_records SET seq = seq + 1 WHERE seq >= 10",
            "missing or was inserted",
            11,
        ),
    ];
    for (sql, says, at) in cases {
        let (_dir, store) = store().await;
        let log = filled(&store, 12).await;
        if sql.starts_with("UPDATE audit_records SET seq = seq + 1") {
            // Shift from the end so the primary key is never violated mid-update.
            for seq in (10..12).rev() {
                exec(
                    &store,
                    &format!(
                        "UPDATE audit_records SET seq = {} WHERE seq = {seq}",
                        seq + 1
                    ),
                )
                .await;
            }
        } else if sql.contains("CASE seq") {
            exec(&store, "UPDATE audit_records SET seq = -1 WHERE seq = 2").await;
            exec(&store, "UPDATE audit_records SET seq = 2 WHERE seq = 3").await;
            exec(&store, "UPDATE audit_records SET seq = 3 WHERE seq = -1").await;
        } else {
            exec(&store, sql).await;
        }
        let broken = check(&store).await.expect_err(says);
        assert_eq!(broken.chain, log.chain(), "{sql}");
        assert_eq!(broken.seq, at, "{sql}: {broken}");
        assert!(broken.problem.contains(says), "{sql}: {broken}");
    }
}

/// `audit verify` reads a batch of records as one text (each record's position and the
/// lengths of its parts, then the parts): a body rewritten to look like that framing, or
/// holding characters of several bytes, is still a change to that one record, found there.
#[tokio::test]
async fn a_body_that_looks_like_the_batch_framing_is_found_at_its_record() {
    for sql in [
        "UPDATE audit_records SET body = '0:64:64:2:' || prev_hash || hash || '{}' WHERE seq = 5",
        "UPDATE audit_records SET body = replace(body, 'staff', 'stäff:9:9:9:😀') WHERE seq = 5",
        "UPDATE audit_records SET body = '' WHERE seq = 5",
    ] {
        let (_dir, store) = store().await;
        let log = filled(&store, 12).await;
        assert_eq!(check(&store).await.map(|v| v.records), Ok(12), "{sql}");
        exec(&store, sql).await;
        exec(
            &store,
            "UPDATE audit_records SET body = body || ':1:1:1:' WHERE seq = 9",
        )
        .await;
        let broken = check(&store).await.expect_err(sql);
        assert_eq!(broken.chain, log.chain(), "{sql}");
        assert_eq!(broken.seq, 5, "{sql}: {broken}");
        assert!(broken.problem.contains("modified"), "{sql}: {broken}");
    }
}

/// `audit verify` reads a batch's side rows while it checks the batch, up to a bound a
/// record; past that bound it reads them again, as many as the bodies call for, and the
/// record they were added to is still the one named.
#[tokio::test]
async fn side_rows_past_the_first_read_are_read_again_and_named() {
    let (_dir, store) = store().await;
    let log = filled(&store, 12).await;
    exec(
        &store,
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 199) INSERT INTO audit_search_agreements (chain, seq, agreement, recorded_us) SELECT s.chain, s.seq, 'x' || n.i, s.recorded_us FROM n, audit_search s WHERE s.seq = 4",
    )
    .await;
    let broken = check(&store).await.expect_err("extra side rows");
    assert_eq!(broken.chain, log.chain());
    assert_eq!(broken.seq, 4, "{broken}");
    assert!(
        broken.problem.contains("sources and agreements"),
        "{broken}"
    );
}

/// Records 0..n of `chain` as the writer makes them, with their search projection rows.
fn chain_of(chain: &str, n: usize) -> (Vec<Record>, Vec<Projection>) {
    let bodies: Vec<Body> = (0..n).map(body).collect();
    let texts = bodies.iter().map(|b| encode_body(b).expect("encoded"));
    (chained(chain, texts), projected(chain, &bodies))
}

/// Records 0.. of `chain` with these bodies' texts, hashed and linked as the writer does.
pub(super) fn chained(chain: &str, texts: impl IntoIterator<Item = String>) -> Vec<Record> {
    let key = AuditKey::new(KEY).expect("key");
    let mut prev = GENESIS.to_owned();
    let mut records = Vec::new();
    for (i, text) in texts.into_iter().enumerate() {
        let hash = key.hash(chain, i as i64, &prev, &text);
        records.push(Record {
            chain: chain.into(),
            seq: i as i64,
            body: text,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    records
}

/// The search projection's rows of records 0.. of `chain` with these bodies.
fn projected(chain: &str, bodies: &[Body]) -> Vec<Projection> {
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| Projection {
            chain: chain.into(),
            seq: i as i64,
            columns: Columns::of(b),
        })
        .collect()
}

/// Writes records 0..n of `chain` straight into the log and its search projection, as the
/// writer and the projector do (faster than appending one by one).
async fn written(store: &Store, chain: &str, n: usize) {
    let (records, rows) = chain_of(chain, n);
    store.append_audit(&records).await.expect("the log");
    store.project_audit(&rows).await.expect("the projection");
}

/// `audit verify` reads a chain a batch of positions at a time and compares the search
/// projection's rows with the bodies batch by batch: tampering at a batch's edges, past the
/// first batch, before the first position, with more side rows than any record calls for,
/// and in chains that have no records at all is found at the right place; a record
/// changed in an earlier batch is named before a gap in a later one.
#[tokio::test]
async fn tampering_in_any_batch_and_outside_the_chains_is_found() {
    const CHAIN: &str = "m-chain";
    const N: usize = 5_000;
    let search_row = |chain: &str, seq: i64| {
        format!(
            "INSERT INTO audit_search (chain, seq, recorded_us, person_id, user_id, org, purpose, outcome) VALUES ('{chain}', {seq}, 1000, 'p0', 'user-0', 'A81001', 'TREAT', 'success')"
        )
    };
    let cases: Vec<(String, &str, &str, i64)> = vec![
        (
            "UPDATE audit_search SET org = 'RY4' WHERE seq = 4100".into(),
            "searchable columns",
            CHAIN,
            4100,
        ),
        (
            "UPDATE audit_search SET recorded_us = recorded_us - 1 WHERE seq = 1".into(),
            "searchable columns",
            CHAIN,
            1,
        ),
        (
            "DELETE FROM audit_search_sources WHERE seq = 2048".into(),
            "sources and agreements of its disclosures",
            CHAIN,
            2048,
        ),
        (
            "UPDATE audit_search_sources SET recorded_us = recorded_us + 1 WHERE seq = 2047".into(),
            "sources and agreements of its disclosures",
            CHAIN,
            2047,
        ),
        (
            "UPDATE audit_search_agreements SET agreement = 'dsa-other' WHERE seq = 4999".into(),
            "sources and agreements of its disclosures",
            CHAIN,
            4999,
        ),
        // Ten thousand rows for one record: read no further than one more than it calls for.
        (
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9999) INSERT INTO audit_search_sources (chain, seq, source, recorded_us) SELECT s.chain, s.seq, 'x' || n.i, s.recorded_us FROM n, audit_search s WHERE s.seq = 3".into(),
            "sources and agreements of its disclosures",
            CHAIN,
            3,
        ),
        (
            search_row(CHAIN, -1),
            "not in the log",
            CHAIN,
            -1,
        ),
        (
            search_row(CHAIN, 6000),
            "not in the log",
            CHAIN,
            6000,
        ),
        (
            "DELETE FROM audit_search WHERE seq = 4096".into(),
            "missing from the search projection",
            CHAIN,
            4096,
        ),
        (
            "INSERT INTO audit_search_agreements (chain, seq, agreement, recorded_us) VALUES ('a-chain-with-no-records', 0, 'dsa', 1000)".into(),
            "source or agreement of a record it does not hold",
            "a-chain-with-no-records",
            0,
        ),
        (
            search_row("z-chain-with-no-records", 7),
            "not in the log",
            "z-chain-with-no-records",
            7,
        ),
        (
            "DELETE FROM audit_records WHERE seq = 3000".into(),
            "missing",
            CHAIN,
            3001,
        ),
        (
            "UPDATE audit_records SET body = replace(body, '\"withheld\":1', '\"withheld\":0') WHERE seq = 4999".into(),
            "modified",
            CHAIN,
            4999,
        ),
        (
            "UPDATE audit_records SET body = replace(body, '\"withheld\":1', '\"withheld\":0') WHERE seq = 2047; DELETE FROM audit_records WHERE seq = 3000".into(),
            "modified",
            CHAIN,
            2047,
        ),
    ];
    for (sql, says, chain, at) in cases {
        let (_dir, store) = store().await;
        written(&store, CHAIN, N).await;
        assert_eq!(
            check(&store).await.map(|v| v.records),
            Ok(N as u64),
            "untouched"
        );
        exec(&store, &sql).await;
        let broken = check(&store).await.expect_err(says);
        assert_eq!(
            (broken.chain.as_str(), broken.seq),
            (chain, at),
            "{sql}: {broken}"
        );
        assert!(broken.problem.contains(says), "{sql}: {broken}");
    }
}

#[tokio::test]
async fn a_failed_append_leaves_the_chain_as_it_was() {
    let (_dir, store) = store().await;
    let log = filled(&store, 3).await;
    exec(
        &store,
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_records BEGIN SELECT RAISE(FAIL, 'read-only'); END",
    )
    .await;
    assert!(log.append(&body(3)).await.is_err());
    exec(&store, "DROP TRIGGER refuse").await;
    let record = log.append(&body(4)).await.expect("append");
    assert_eq!(record.seq, 3, "the failed record took no position");
    assert_eq!(check(&store).await.map(|v| v.records), Ok(4));
}

#[tokio::test]
async fn a_caller_that_stops_waiting_does_not_break_the_chain() {
    let (_dir, store) = store().await;
    let log = filled(&store, 2).await;
    for i in 2..12 {
        // The caller gives up at once (a client that hung up); the append still completes.
        let _ =
            tokio::time::timeout(std::time::Duration::from_nanos(1), log.append(&body(i))).await;
    }
    let record = log
        .append(&body(12))
        .await
        .expect("append after abandoned ones");
    let verified = check(&store).await.expect("verifies");
    assert_eq!(verified.records as i64, record.seq + 1);
    assert!(record.seq >= 2);
}

#[tokio::test]
async fn the_head_is_read_back_after_a_failure_it_did_not_expect() {
    let (_dir, store) = store().await;
    let log = filled(&store, 3).await;
    // Another writer (or a lost acknowledgement) already took position 3.
    let key = AuditKey::new(KEY).expect("key");
    let Store::Sqlite(pool) = &store else {
        panic!("sqlite")
    };
    let prev: String = sqlx::query_scalar("SELECT hash FROM audit_records WHERE seq = 2")
        .fetch_one(pool)
        .await
        .expect("head");
    let text = serde_json::to_string(&body(3)).expect("json");
    let record = Record {
        chain: log.chain().to_owned(),
        seq: 3,
        hash: key.hash(log.chain(), 3, &prev, &text),
        prev_hash: prev,
        body: text,
    };
    store.append_audit(&[record]).await.expect("insert");
    assert!(log.append(&body(4)).await.is_err(), "position 3 is taken");
    let next = log.append(&body(4)).await.expect("the head was read back");
    assert_eq!(next.seq, 4);
    assert_eq!(check(&store).await.map(|v| v.records), Ok(5));
}

#[tokio::test]
async fn concurrent_appends_share_commits_and_keep_the_chain_exact() {
    let (_dir, store) = store().await;
    let log = AuditLog::new(store.clone(), AuditKey::new(KEY).expect("key"));
    let bodies: Vec<Body> = (0..300).map(body).collect();
    let records = futures_util::future::join_all(bodies.iter().map(|b| log.append(b))).await;
    let mut seqs: Vec<i64> = records
        .into_iter()
        .map(|r| r.expect("append").seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..300).collect::<Vec<i64>>(), "each position once");
    assert_eq!(check(&store).await.map(|v| v.records), Ok(300));
}

const REFUSE: &str = "CREATE TRIGGER refuse BEFORE INSERT ON audit_records BEGIN SELECT RAISE(FAIL, 'disk full'); END";

fn spooling(store: &Store, dir: &Path) -> AuditLog {
    AuditLog::start(
        store.clone(),
        AuditKey::new(KEY).expect("key"),
        Options {
            spool_dir: Some(dir.to_owned()),
            retry: Duration::from_millis(50),
            ..Options::default()
        },
    )
}

fn spool_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default()
}

async fn count(store: &Store) -> i64 {
    let Store::Sqlite(pool) = store else {
        panic!("sqlite")
    };
    sqlx::query_scalar("SELECT count(*) FROM audit_records")
        .fetch_one(pool)
        .await
        .expect("count")
}

/// The log's records once it holds `n` (the writer moves spooled records in on its own), or
/// what it holds after two seconds.
async fn count_when_moved_in(store: &Store, n: i64) -> i64 {
    for _ in 0..100 {
        if count(store).await == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    count(store).await
}

#[tokio::test]
async fn while_the_store_refuses_records_are_spooled_then_moved_in_order() {
    let (dir, store) = store().await;
    let spool_dir = dir.path().join("spool");
    let log = spooling(&store, &spool_dir);
    for i in 0..3 {
        log.append(&body(i)).await.expect("stored");
    }
    exec(&store, REFUSE).await;
    for i in 3..10 {
        let record = log.append(&body(i)).await.expect("spooled, not refused");
        assert_eq!(record.seq, i as i64, "the chain goes on in the spool");
    }
    assert_eq!(count(&store).await, 3);
    let files = spool_files(&spool_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(spool::read(&files[0]).expect("readable").len(), 7);
    assert_eq!(log.health().spooled, 7);

    exec(&store, "DROP TRIGGER refuse").await;
    // The writer retries on its own when no request comes.
    assert_eq!(
        count_when_moved_in(&store, 10).await,
        10,
        "every spooled record once"
    );
    let record = log.append(&body(10)).await.expect("stored");
    assert_eq!(record.seq, 10);
    assert_eq!(check(&store).await.map(|v| v.records), Ok(11));
    assert!(spool_files(&spool_dir).is_empty(), "the spool is removed");
    assert_eq!(log.health().spooled, 0);
}

#[tokio::test]
async fn commits_to_the_store_are_counted_and_spooled_records_are_not() {
    use prometheus_client::metrics::histogram::Histogram;
    let (dir, store) = store().await;
    let meters = super::CommitMeters {
        seconds: Histogram::new([0.001, 0.1]),
        records: Histogram::new([1.0, 8.0]),
    };
    let log = AuditLog::start(
        store.clone(),
        AuditKey::new(KEY).expect("key"),
        Options {
            spool_dir: Some(dir.path().join("spool")),
            retry: Duration::from_millis(50),
            meters: Some(meters.clone()),
            ..Options::default()
        },
    );
    let bodies: Vec<Body> = (0..40).map(body).collect();
    for r in futures_util::future::join_all(bodies.iter().map(|b| log.append(b))).await {
        r.expect("stored");
    }
    assert_eq!(
        meters.records.sum(),
        40.0,
        "each stored record counted in a commit"
    );
    let commits = meters.records.count();
    assert!((1..=40).contains(&commits), "{commits} commits");
    assert_eq!(meters.seconds.count(), commits, "each commit timed");
    assert!(meters.seconds.sum() > 0.0);

    exec(&store, REFUSE).await;
    log.append(&body(40)).await.expect("spooled");
    exec(&store, "DROP TRIGGER refuse").await;
    assert_eq!(
        count_when_moved_in(&store, 41).await,
        41,
        "the spooled record moved in"
    );
    assert_eq!(
        meters.records.sum(),
        40.0,
        "a refused batch and a replay are not commits"
    );
    assert_eq!(meters.records.count(), commits);
    log.append(&body(41)).await.expect("stored");
    assert_eq!(meters.records.sum(), 41.0);
    assert_eq!(meters.seconds.count(), commits + 1);
}

#[tokio::test]
async fn a_request_is_refused_only_when_neither_store_nor_spool_takes_it() {
    let (dir, store) = store().await;
    // The spool directory cannot be made: a file is in its way.
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, b"x").expect("file");
    let log = spooling(&store, &blocked.join("spool"));
    log.append(&body(0)).await.expect("stored");
    exec(&store, REFUSE).await;
    let refused = log.append(&body(1)).await.expect_err("nowhere to write");
    assert!(refused.to_string().contains("disk full"), "{refused}");
    exec(&store, "DROP TRIGGER refuse").await;
    let record = log.append(&body(2)).await.expect("stored");
    assert_eq!(record.seq, 1, "the refused record took no position");
    assert_eq!(check(&store).await.map(|v| v.records), Ok(2));
}

#[tokio::test]
async fn a_spool_left_by_a_stopped_process_is_replayed_by_the_next() {
    let (dir, store) = store().await;
    let spool_dir = dir.path().join("spool");
    let first = spooling(&store, &spool_dir);
    first.append(&body(0)).await.expect("stored");
    exec(&store, REFUSE).await;
    for i in 1..6 {
        first.append(&body(i)).await.expect("spooled");
    }
    let chain = first.chain().to_owned();
    drop(first);
    // The writer's last replay fails (the store still refuses): the file stays.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(spool_files(&spool_dir).len(), 1);
    exec(&store, "DROP TRIGGER refuse").await;

    let second = spooling(&store, &spool_dir);
    second.append(&body(6)).await.expect("stored");
    for _ in 0..100 {
        if spool_files(&spool_dir).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        spool_files(&spool_dir).is_empty(),
        "the orphan was replayed"
    );
    assert_eq!(
        check(&store).await,
        Ok(Verified {
            chains: 2,
            records: 7,
            heads: 0
        })
    );
    assert!(log_has(&store, &chain, 5).await);
}

async fn log_has(store: &Store, chain: &str, seq: i64) -> bool {
    store
        .audit_head(chain)
        .await
        .expect("head")
        .is_some_and(|(s, _)| s == seq)
}

#[tokio::test]
async fn a_record_the_store_already_has_is_not_replayed_twice() {
    // A commit whose acknowledgement was lost: the batch is in the store and in the spool.
    let (dir, store) = store().await;
    let spool_dir = dir.path().join("spool");
    let key = AuditKey::new(KEY).expect("key");
    let chain = "c0ffee00-0000-4000-8000-000000000000";
    let mut prev = GENESIS.to_owned();
    let mut rows = Vec::new();
    for i in 0..6 {
        let text = encode_body(&body(i)).expect("encoded");
        let hash = key.hash(chain, i as i64, &prev, &text);
        rows.push((
            Record {
                chain: chain.into(),
                seq: i as i64,
                body: text,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            },
            Columns::of(&body(i)),
        ));
    }
    let stored: Vec<Record> = rows[..4].iter().map(|(r, _)| r.clone()).collect();
    store.append_audit(&stored).await.expect("stored");
    let mut spooled = spool::Spool::open(&spool_dir, chain).expect("spool");
    let records: Vec<Record> = rows[2..].iter().map(|(r, _)| r.clone()).collect();
    spooled.append(&records).expect("spooled");
    drop(spooled);
    let _log = spooling(&store, &spool_dir);
    for _ in 0..100 {
        if spool_files(&spool_dir).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&store).await, 6, "positions 2 and 3 once each");
    assert_eq!(check(&store).await.map(|v| v.records), Ok(6));
}

#[tokio::test]
async fn an_edited_spool_is_never_moved_into_the_store() {
    let (dir, store) = store().await;
    let spool_dir = dir.path().join("spool");
    let first = spooling(&store, &spool_dir);
    first.append(&body(0)).await.expect("stored");
    exec(&store, REFUSE).await;
    for i in 1..4 {
        first.append(&body(i)).await.expect("spooled");
    }
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    exec(&store, "DROP TRIGGER refuse").await;
    let file = spool_files(&spool_dir).pop().expect("the spool");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&file, text.replacen("user-1", "user-9", 1)).expect("edit");
    // A torn last line (a write a crash cut short) alone would be ignored, not refused.
    let second = spooling(&store, &spool_dir);
    second
        .append(&body(9))
        .await
        .expect("its own records still go in");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = second.health();
    assert!(
        health
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("line 1") && p.contains("modified")),
        "{health:?}"
    );
    assert_eq!(health.orphaned_spools, 1);
    assert_eq!(count(&store).await, 2, "nothing of the edited spool");
    assert!(file.exists(), "left in place for a person to look at");
}

#[tokio::test]
async fn a_torn_last_line_is_ignored() {
    let dir = tempfile::tempdir().expect("dir");
    let key = AuditKey::new(KEY).expect("key");
    let text = serde_json::to_string(&body(0)).expect("json");
    let record = Record {
        chain: "c".into(),
        seq: 0,
        hash: key.hash("c", 0, GENESIS, &text),
        prev_hash: GENESIS.into(),
        body: text,
    };
    let path = dir.path().join("c.spool");
    let line = serde_json::to_string(&record).expect("json");
    std::fs::write(&path, format!("{line}\n{}", &line[..40])).expect("write");
    assert_eq!(spool::read(&path).expect("readable"), vec![record]);
    std::fs::write(&path, format!("{}\n{line}\n", &line[..40])).expect("write");
    assert!(matches!(
        spool::read(&path),
        Err(spool::SpoolError::Corrupt { line: 1, .. })
    ));
}

const HEAD_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/demo/keys/demo-audit-heads.pem"
);

async fn signed_log(store: &Store, witness: &Path, n: usize) -> AuditLog {
    let log = AuditLog::start(
        store.clone(),
        AuditKey::new(KEY).expect("key"),
        Options {
            signer: Some(heads::HeadSigner::load(Path::new(HEAD_KEY)).expect("key")),
            head_interval: Duration::from_millis(10),
            retry: Duration::from_millis(10),
            witness: heads::Witness {
                file: Some(witness.to_owned()),
                ..heads::Witness::default()
            },
            ..Options::default()
        },
    );
    for i in 0..n {
        log.append(&body(i)).await.expect("append");
    }
    for _ in 0..200 {
        if log.health().signed_head == Some(n as i64 - 1) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the head was not signed: {:?}", log.health());
}

fn head_check(witness: Option<&Path>) -> HeadCheck {
    HeadCheck {
        public_key: Some(
            heads::HeadSigner::load(Path::new(HEAD_KEY))
                .expect("key")
                .public_key()
                .to_owned(),
        ),
        witnessed: witness
            .map(|w| heads::read_witness(w).expect("witness"))
            .unwrap_or_default(),
    }
}

#[tokio::test]
async fn a_cut_off_tail_is_found_by_the_signed_heads() {
    let (dir, store) = store().await;
    let witness = dir.path().join("witness.ndjson");
    let log = signed_log(&store, &witness, 8).await;
    log.settle().await;
    let all = check_heads(&store, &head_check(Some(&witness)))
        .await
        .expect("untouched");
    assert_eq!(all.records, 8);
    assert!(
        all.heads >= 2,
        "heads from the store and the witness: {all:?}"
    );

    // Positions and hashes alone cannot show a cut tail: the heads kept in the store do,
    exec(&store, "DELETE FROM audit_records WHERE seq >= 6").await;
    let broken = check_heads(&store, &head_check(None))
        .await
        .expect_err("cut");
    assert_eq!((broken.chain.as_str(), broken.seq), (log.chain(), 6));
    assert!(broken.problem.contains("cut off"), "{broken}");
    // and so does the search projection's mark, which reached position 7;
    exec(&store, "DELETE FROM audit_heads").await;
    let broken = check_heads(&store, &head_check(None))
        .await
        .expect_err("cut");
    assert_eq!(broken.seq, 6, "{broken}");
    assert!(broken.problem.contains("search projection"), "{broken}");
    // nor, when the heads in the store and the projection's rows and mark go too, to the
    // witness's copy.
    exec(&store, "DELETE FROM audit_search WHERE seq >= 6").await;
    exec(&store, "DELETE FROM audit_search_sources WHERE seq >= 6").await;
    exec(&store, "DELETE FROM audit_search_agreements WHERE seq >= 6").await;
    exec(&store, "UPDATE audit_projected SET seq = 5").await;
    assert!(check_heads(&store, &head_check(None)).await.is_ok());
    let broken = check_heads(&store, &head_check(Some(&witness)))
        .await
        .expect_err("cut");
    assert_eq!(broken.seq, 6, "{broken}");
    // A whole chain deleted is found too.
    exec(&store, "DELETE FROM audit_records").await;
    let broken = check_heads(&store, &head_check(Some(&witness)))
        .await
        .expect_err("gone");
    assert!(broken.problem.contains("whole chain"), "{broken}");
}

#[tokio::test]
async fn a_forged_or_replaced_head_is_found() {
    let (dir, store) = store().await;
    let witness = dir.path().join("witness.ndjson");
    signed_log(&store, &witness, 4).await;
    exec(&store, "UPDATE audit_heads SET seq = seq + 5").await;
    let broken = check_heads(&store, &head_check(None))
        .await
        .expect_err("forged");
    assert!(broken.problem.contains("signature"), "{broken}");
    // Another key's heads are not ours.
    let other = heads::HeadSigner::from_pkcs8(
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .expect("key")
            .as_ref(),
    )
    .expect("signer");
    let head = other.sign("x", 0, GENESIS);
    assert!(!head.is_signed_by(head_check(None).public_key.as_deref().unwrap_or_default()));
    assert!(head.is_signed_by(other.public_key()));
}

#[test]
fn a_record_that_cannot_be_encoded_is_an_error_not_an_empty_body() {
    /// Encodes as a map with a key JSON cannot have.
    struct Unencodable;
    impl Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry(&(1, 2), &"value")?;
            map.end()
        }
    }
    assert!(matches!(encode(&Unencodable), Err(AuditError::Encode(_))));
    let text = encode(&body(0)).expect("a body encodes");
    assert!(text.starts_with('{') && text.len() > 2);
}

/// A log written before the search projection (migrations up to 0006, the searchable
/// columns in the records' own table) is moved into the new layout by migration 0007: every
/// record is still there, still verifies, is found by a search, and the chain goes on.
#[tokio::test]
async fn records_kept_before_the_search_projection_survive_its_migration() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let store = Store::connect(&url, 2).await.expect("store");
    let Store::Sqlite(pool) = &store else {
        panic!("sqlite")
    };
    migrated_to(pool, 6).await;
    let key = AuditKey::new(KEY).expect("key");
    let mut prev = GENESIS.to_owned();
    for i in 0..10_usize {
        let b = body(i);
        let text = body::disclosed::earlier_form(&b);
        let hash = key.hash("old-chain", i as i64, &prev, &text);
        sqlx::query("INSERT INTO audit_records (chain, seq, recorded_us, person_id, user_id, org, purpose, outcome, review, body, prev_hash, hash) VALUES ('old-chain', $1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10)")
            .bind(i as i64)
            .bind(b.recorded_us)
            .bind(b.person.clone())
            .bind(b.user.clone())
            .bind(b.org.clone())
            .bind(b.purpose.clone())
            .bind(b.outcome.clone())
            .bind(&text)
            .bind(std::mem::replace(&mut prev, hash.clone()))
            .bind(&hash)
            .execute(pool)
            .await
            .expect("an old-layout record");
    }
    store.migrate().await.expect("migration 0007");
    assert_eq!(check(&store).await.map(|v| v.records), Ok(10));
    let found = store
        .audit_search(&crate::store::AuditQuery {
            equals: vec![(crate::store::AuditColumn::Person, vec!["p4".into()])],
            limit: 10,
            ..crate::store::AuditQuery::default()
        })
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].record.seq, 4);
    // A search reads the row's columns; the sets of its disclosures stay in the side tables.
    let want = Columns {
        sources: Vec::new(),
        agreements: Vec::new(),
        ..Columns::of(&body(4))
    };
    assert_eq!(found[0].columns, want);
    // A new process appends its own chain beside the old one, and both verify.
    let log = filled(&store, 3).await;
    assert_ne!(log.chain(), "old-chain");
    assert_eq!(
        check(&store).await.map(|v| (v.chains, v.records)),
        Ok((2, 13))
    );
}

/// Records that reached the log but not the search projection (their process died between
/// the two) are projected from their bodies by the next process to start, and a search
/// then finds them.
#[tokio::test]
async fn records_a_dead_process_never_projected_are_projected_by_the_next() {
    let (_dir, store) = store().await;
    let (records, _) = chain_of("dead-chain", 5);
    store
        .append_audit(&records)
        .await
        .expect("appended, never projected");
    let person = |p: &str| crate::store::AuditQuery {
        equals: vec![(crate::store::AuditColumn::Person, vec![p.into()])],
        limit: 10,
        ..crate::store::AuditQuery::default()
    };
    assert!(
        store
            .audit_search(&person("p2"))
            .await
            .expect("search")
            .is_empty()
    );
    let log = AuditLog::new(store.clone(), AuditKey::new(KEY).expect("key"));
    log.settle().await;
    let found = store.audit_search(&person("p2")).await.expect("search");
    assert_eq!(found.len(), 1, "projected at start from the log");
    assert_eq!(found[0].record.chain, "dead-chain");
    assert_eq!(check(&store).await.map(|v| v.records), Ok(5));
}

/// The projection takes a row it already holds again without complaint and leaves the one it
/// holds as it was (on SQLite `INSERT OR IGNORE`, which needs no statement journal), on the
/// store's own connections and on the audit lane's: rows overlapping what is projected are
/// skipped, the rest are added once with their side rows, the mark moves over the whole run,
/// and the chain verifies.
#[tokio::test]
async fn projecting_rows_again_keeps_the_rows_already_there() {
    let (_dir, store) = store().await;
    const CHAIN: &str = "again";
    let (records, rows) = chain_of(CHAIN, 10);
    store.append_audit(&records).await.expect("the log");
    store.project_audit(&rows[..5]).await.expect("rows 0-4");
    // Rows 2-4 again, with other columns: the ones projected first stay.
    let mut again = rows[2..].to_vec();
    for row in &mut again[..3] {
        row.columns.org = Some("RY4".into());
    }
    crate::store::AuditLane::new(store.clone())
        .project(&again)
        .await
        .expect("rows 2-9 on the lane");
    store.project_audit(&again).await.expect("rows 2-9 again");
    let count = async |sql: &str| scalar(&store, sql).await;
    assert_eq!(count("SELECT count(*) FROM audit_search").await, 10);
    assert_eq!(
        count("SELECT count(*) FROM audit_search WHERE org = 'RY4'").await,
        0
    );
    assert_eq!(count("SELECT count(*) FROM audit_search_sources").await, 10);
    assert_eq!(
        count("SELECT count(*) FROM audit_search_agreements").await,
        10
    );
    assert_eq!(
        store.audit_projection_marks().await.expect("marks"),
        vec![(CHAIN.to_owned(), 9)]
    );
    assert_eq!(check(&store).await.map(|v| v.records), Ok(10));
}

/// Appends without a pause from many writers keep SQLite's write-ahead log from growing
/// with everything written: the checkpoints let it start again from its beginning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_appends_keep_the_sqlite_write_ahead_log_bounded() {
    let (dir, store) = store().await;
    let log = AuditLog::new(store.clone(), AuditKey::new(KEY).expect("key"));
    // Records as wide as the demo's widest: 60 resources, each named by a gateway id
    // (`Type/{source}.{uuid}`), about 3.5 KB each.
    let wide = |i: usize| {
        let mut b = body(i);
        b.disclosed = (0..60)
            .map(|j| Disclosure {
                reference: format!(
                    "Observation/gp.{i:08x}-{j:04x}-4000-8000-{:012x}",
                    i * 60 + j
                )
                .into(),
                agreement: "dsa".into(),
                rule: "r".into(),
                emergency: false,
            })
            .collect();
        b
    };
    let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = std::time::Instant::now();
    // Steady load for long enough that the log would hold everything written several times
    // over without its checkpoints (at least 24 MB and 2 s; at most 20 s on a slow machine).
    let busy = move |written: u64| {
        (written < 24 << 20 || started.elapsed() < Duration::from_secs(2))
            && started.elapsed() < Duration::from_secs(20)
    };
    let writers = (0..64).map(|w| {
        let log = log.clone();
        let bytes = bytes.clone();
        async move {
            let mut i = w;
            while busy(bytes.load(std::sync::atomic::Ordering::Relaxed)) {
                let b = wide(i);
                let len = serde_json::to_vec(&b).expect("json").len() as u64;
                log.append(&b).await.expect("append");
                bytes.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                i += 64;
            }
        }
    });
    futures_util::future::join_all(writers.map(tokio::spawn)).await;
    let written = bytes.load(std::sync::atomic::Ordering::Relaxed);
    let wal = std::fs::metadata(dir.path().join("audit.db-wal"))
        .expect("the write-ahead log")
        .len();
    assert!(written >= 24 << 20, "{written} bytes written");
    assert!(
        wal < written / 2,
        "the write-ahead log is {wal} bytes after {written} bytes of records"
    );
    log.settle().await;
    assert!(check(&store).await.is_ok(), "the chain verifies");
}

/// A chain whose first records were written with `disclosed` in its earlier form (one object
/// per resource) and whose later ones have the compact form verifies as one, and `audit
/// verify` reads the sources and agreements of both forms' disclosures: a side row missing
/// from either is named.
#[tokio::test]
async fn records_of_both_encodings_of_the_disclosures_verify_in_one_chain() {
    let mixed = |i: usize| Body {
        disclosed: ["gp", "community", "gp"]
            .iter()
            .enumerate()
            .map(|(n, source)| Disclosure {
                reference: format!("Observation/{source}.o{i}-{n}").into(),
                agreement: format!("dsa-{source}").into(),
                rule: format!("rule-{source}").into(),
                emergency: n == 2,
            })
            .collect(),
        ..body(i)
    };
    let bodies: Vec<Body> = (0..6).map(mixed).collect();
    let texts: Vec<String> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if i < 3 {
                body::disclosed::earlier_form(b)
            } else {
                encode_body(b).expect("encoded")
            }
        })
        .collect();
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(text.contains("\"permits\""), i >= 3);
    }
    let (records, rows) = (chained("both", texts), projected("both", &bodies));
    for (table, seq) in [
        ("", 0),
        ("audit_search_agreements", 1),
        ("audit_search_sources", 4),
    ] {
        let (_dir, store) = store().await;
        store.append_audit(&records).await.expect("the log");
        store.project_audit(&rows).await.expect("the projection");
        if table.is_empty() {
            assert_eq!(check(&store).await.map(|v| v.records), Ok(6));
            assert_eq!(
                rows[4].columns.agreements,
                ["dsa-community", "dsa-gp"],
                "each agreement once"
            );
            continue;
        }
        let column = if table.ends_with("sources") {
            "source"
        } else {
            "agreement"
        };
        exec(
            &store,
            &format!("DELETE FROM {table} WHERE seq = {seq} AND {column} LIKE '%community'"),
        )
        .await;
        let broken = check(&store).await.expect_err(table);
        assert_eq!(
            (broken.chain.as_str(), broken.seq),
            ("both", seq),
            "{broken}"
        );
        assert!(
            broken.problem.contains("sources and agreements"),
            "{broken}"
        );
    }
}

/// A list of records with more parameters than one SQLite statement may have (32,766; five
/// a record) goes into the log whole and in order, on the pool (before the lane's chain is
/// named) and on the lane's kept connection (after): each writer's batch of it
/// ([`MAX_BATCH`](super::MAX_BATCH)) is an insert of its own in the same text.
#[tokio::test]
async fn appends_longer_than_one_statement_keep_every_record_in_order() {
    let (_dir, store) = store().await;
    let lane = crate::store::AuditLane::new(store.clone());
    let long = 32_766 / 5 + 1;
    let (records, _) = chain_of("long", 2 * long);
    lane.append(&records[..long])
        .await
        .expect("appended, chain named");
    lane.append(&records[long..])
        .await
        .expect("appended in the lane's turn");
    assert_eq!(
        scalar(&store, "SELECT count(*) FROM audit_records").await,
        (2 * long) as i64
    );
    assert_eq!(
        scalar(&store, "SELECT max(seq) FROM audit_records").await,
        (2 * long - 1) as i64
    );
    assert_eq!(check(&store).await.map(|v| v.records), Ok(2 * long as u64));
}

/// A turn of the audit lane (an append, before and after its chain is named, and a
/// projection) that fails after its first statement keeps nothing (its transaction is rolled back with the connection the lane then closes),
/// the next turn starts on a clean connection, and that connection commits durably again
/// (`synchronous=FULL`, not the projection's NORMAL left behind).
#[tokio::test]
async fn a_lane_turn_that_fails_partway_keeps_nothing_and_the_next_starts_clean() {
    let (_dir, store) = store().await;
    let count = async |sql: &str| scalar(&store, sql).await;
    let lane = crate::store::AuditLane::new(store.clone());
    let (records, rows) = chain_of("partway", 6);
    // The records go in, then naming the chain fails: the records are not kept.
    exec(
        &store,
        "CREATE TRIGGER search.refuse BEFORE INSERT ON audit_projected BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .await;
    assert!(lane.append(&records[..3]).await.is_err());
    assert_eq!(count("SELECT count(*) FROM audit_records").await, 0);
    exec(&store, "DROP TRIGGER search.refuse").await;
    lane.append(&records[..3]).await.expect("appended");
    // The chain is named: an append is one round trip, `BEGIN`, the insert and `COMMIT` in
    // one text. The insert's third row (a record already in the log) fails after the first
    // two went in: none is kept.
    let clash = [records[3].clone(), records[4].clone(), records[2].clone()];
    assert!(lane.append(&clash).await.is_err());
    assert_eq!(count("SELECT count(*) FROM audit_records").await, 3);
    lane.append(&records[3..]).await.expect("appended");
    assert_eq!(count("SELECT count(*) FROM audit_records").await, 6);
    // The search rows go in, then a side table refuses: no search row is kept either, and
    // the mark stays where it was. (A trigger of another name: a pool connection that did not
    // drop the first may still hold it in its schema when it parses the statement, and SQLite
    // then says the name exists without looking at the file again.)
    exec(
        &store,
        "CREATE TRIGGER search.refuse_side_rows BEFORE INSERT ON audit_search_agreements BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .await;
    assert!(lane.project(&rows).await.is_err());
    assert_eq!(
        lane.synchronous().await.expect("asked"),
        (2, 1),
        "appends commit with FULL, the projection with NORMAL, after a failed turn too"
    );
    assert_eq!(count("SELECT count(*) FROM audit_search").await, 0);
    assert_eq!(
        store.audit_projection_marks().await.expect("marks"),
        vec![("partway".to_owned(), -1)]
    );
    exec(&store, "DROP TRIGGER search.refuse_side_rows").await;
    lane.project(&rows).await.expect("projected");
    assert_eq!(count("SELECT count(*) FROM audit_search").await, 6);
    assert_eq!(
        store.audit_projection_marks().await.expect("marks"),
        vec![("partway".to_owned(), 5)]
    );
    assert_eq!(lane.synchronous().await.expect("asked"), (2, 1));
    assert_eq!(check(&store).await.map(|v| v.records), Ok(6));
}
