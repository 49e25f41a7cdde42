//! The search projection in a SQLite file of its own (`store::search`, migration 0015): the
//! appends never wait for its writer, a projection file that is gone is rebuilt from the log,
//! and a projection kept in the store's own file before the migration is moved, not lost.

use super::tests::{KEY, body, check, exec, filled, migrated_to, scalar, store};
use super::*;
use crate::store::{AuditColumn, AuditQuery, Store};

/// The positions of the records a search for `person` finds.
async fn found(store: &Store, person: &str) -> Vec<i64> {
    let query = AuditQuery {
        equals: vec![(AuditColumn::Person, vec![person.into()])],
        limit: 10,
        ..AuditQuery::default()
    };
    let rows = store.audit_search(&query).await.expect("search");
    rows.iter().map(|r| r.record.seq).collect()
}

/// The projection's tables in the schema `schema` (`main` or `search`).
async fn projection_tables(store: &Store, schema: &str) -> i64 {
    scalar(
        store,
        &format!("SELECT count(*) FROM {schema}.sqlite_master WHERE type = 'table' AND name IN ('audit_search', 'audit_search_sources', 'audit_search_agreements', 'audit_projected')"),
    )
    .await
}

/// While another connection holds the projection's file in a write transaction (as the
/// projector does for each of its turns), a request's durable append still commits: the
/// two take different files' locks. With the projection in the store's file, the append
/// would have waited for the lock and failed once SQLite's busy timeout ran out.
#[tokio::test]
async fn appends_commit_while_the_projection_file_is_being_written() {
    let (dir, store) = store().await;
    assert!(dir.path().join("audit.db-search").exists());
    assert_eq!(projection_tables(&store, "main").await, 0);
    assert_eq!(projection_tables(&store, "search").await, 4);
    let log = filled(&store, 3).await;
    let Store::Sqlite(pool) = &store else {
        panic!("sqlite")
    };
    let mut holder = pool.acquire().await.expect("a connection");
    sqlx::query("BEGIN")
        .execute(&mut *holder)
        .await
        .expect("begin");
    sqlx::query("INSERT INTO audit_projected (chain, seq) VALUES ('held', -1)")
        .execute(&mut *holder)
        .await
        .expect("the projection's write lock");
    for i in 3..6 {
        log.append(&body(i))
            .await
            .expect("appended while the projection's file is locked");
    }
    assert_eq!(
        scalar(&store, "SELECT count(*) FROM audit_records").await,
        6
    );
    sqlx::query("ROLLBACK")
        .execute(&mut *holder)
        .await
        .expect("rollback");
    drop(holder);
    log.settle().await;
    assert_eq!(found(&store, "p5").await, [5]);
    assert_eq!(check(&store).await.map(|v| v.records), Ok(6));
}

/// With the gateway stopped, deleting the projection's file (and its log) loses nothing: the
/// next start makes it anew, names every chain of the log and projects their records from
/// their bodies, and searches and `audit verify` find the projection whole again.
#[tokio::test]
async fn a_deleted_projection_file_is_rebuilt_from_the_log() {
    let (dir, store) = store().await;
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let log = filled(&store, 12).await;
    let old_chain = log.chain().to_owned();
    drop(log);
    let Store::Sqlite(pool) = &store else {
        panic!("sqlite")
    };
    pool.close().await;
    for suffix in ["-search", "-search-wal", "-search-shm"] {
        let file = dir.path().join(format!("audit.db{suffix}"));
        if file.exists() {
            std::fs::remove_file(&file).expect("deleted");
        }
    }
    let store = Store::connect(&url, 2).await.expect("store");
    store.migrate().await.expect("migrate");
    assert_eq!(scalar(&store, "SELECT count(*) FROM audit_search").await, 0);
    assert_eq!(
        store.audit_projection_marks().await.expect("marks"),
        vec![(old_chain, -1)],
        "the log's chain is named, nothing of it projected yet"
    );
    let log = AuditLog::new(store.clone(), AuditKey::new(KEY).expect("key"));
    log.settle().await;
    assert_eq!(
        scalar(&store, "SELECT count(*) FROM audit_search").await,
        12
    );
    assert_eq!(found(&store, "p7").await, [7]);
    assert_eq!(check(&store).await.map(|v| v.records), Ok(12));
}

/// A store whose projection is in the store's own file (migrations up to 0014) keeps every search row,
/// side row and mark through migration 0015: they are copied into the projection's file, not
/// projected again, and the store's file no longer holds those tables.
#[tokio::test]
async fn migration_0015_moves_the_projection_into_its_own_file() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("before.db").display());
    let store = Store::connect(&url, 2).await.expect("store");
    let Store::Sqlite(pool) = &store else {
        panic!("sqlite")
    };
    migrated_to(pool, 14).await;
    assert_eq!(projection_tables(&store, "main").await, 4);
    // A gateway of 0014 appended ten records and projected the first eight.
    let bodies: Vec<Body> = (0..10).map(body).collect();
    let records = super::tests::chained(
        "kept",
        bodies.iter().map(|b| encode_body(b).expect("encoded")),
    );
    store.append_audit(&records).await.expect("the log");
    let rows: Vec<Projection> = bodies[..8]
        .iter()
        .enumerate()
        .map(|(seq, b)| Projection {
            chain: "kept".into(),
            seq: seq as i64,
            columns: Columns::of(b),
        })
        .collect();
    store.project_audit(&rows).await.expect("projected");
    // A row that only a copy keeps (no record's body would project it again).
    exec(
        &store,
        "UPDATE main.audit_search SET org = 'copied' WHERE seq = 2",
    )
    .await;
    let count = async |sql: &str| scalar(&store, sql).await;
    assert_eq!(count("SELECT count(*) FROM main.audit_search").await, 8);
    let sources = count("SELECT count(*) FROM main.audit_search_sources").await;
    let agreements = count("SELECT count(*) FROM main.audit_search_agreements").await;
    assert_eq!((sources, agreements), (8, 8));
    store.migrate().await.expect("migration 0015");
    assert_eq!(projection_tables(&store, "main").await, 0);
    assert_eq!(count("SELECT count(*) FROM search.audit_search").await, 8);
    assert_eq!(
        count("SELECT count(*) FROM search.audit_search WHERE org = 'copied'").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM search.audit_search_sources").await,
        sources
    );
    assert_eq!(
        count("SELECT count(*) FROM search.audit_search_agreements").await,
        agreements
    );
    assert_eq!(
        store.audit_projection_marks().await.expect("marks"),
        vec![("kept".to_owned(), 7)]
    );
    // The next process projects the last two from the log, and the log verifies (with the
    // copied row told apart from its record's body).
    let log = AuditLog::new(store.clone(), AuditKey::new(KEY).expect("key"));
    log.settle().await;
    assert_eq!(count("SELECT count(*) FROM audit_search").await, 10);
    let broken = check(&store).await.expect_err("the changed row is named");
    assert_eq!((broken.chain.as_str(), broken.seq), ("kept", 2), "{broken}");
    exec(
        &store,
        "UPDATE audit_search SET org = 'A81001' WHERE seq = 2",
    )
    .await;
    assert_eq!(check(&store).await.map(|v| v.records), Ok(10));
}

/// An in-memory store (`sqlite::memory:`) has its projection in memory too, shared by every
/// connection of its pool: what one connection projects, a search on another finds.
#[tokio::test]
async fn an_in_memory_store_keeps_its_projection_in_memory() {
    let store = Store::connect("sqlite::memory:", 4).await.expect("store");
    store.migrate().await.expect("migrate");
    let log = filled(&store, 5).await;
    let Store::Sqlite(pool) = &store else {
        panic!("sqlite")
    };
    // Every connection of the pool busy at once, so that each is asked.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.acquire().await.expect("a connection"));
    }
    for conn in &mut held {
        let projected: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_search")
            .fetch_one(&mut **conn)
            .await
            .expect("count");
        assert_eq!(projected, 5);
        let file: String =
            sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'search'")
                .fetch_one(&mut **conn)
                .await
                .expect("the projection's file");
        assert_eq!(file, "", "in memory, no file");
    }
    drop(held);
    assert_eq!(found(&store, "p3").await, [3]);
    assert_eq!(check(&store).await.map(|v| v.records), Ok(5));
    drop(log);
}
