//! The chain against a real SQLite file: an untouched chain verifies; each kind of tampering
//! is found at the right record.

use super::*;

const KEY: &[u8] = b"a test audit key of at least thirty-two bytes";

fn body(i: usize) -> Body {
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
            reference: format!("Condition/gp.c{i}"),
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

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = Store::connect(&url, 2).await.expect("store");
    store.migrate().await.expect("migrate");
    (dir, store)
}

async fn filled(store: &Store, n: usize) -> AuditLog {
    let log = AuditLog::new(store.clone(), AuditKey::new(KEY).expect("key"));
    for i in 0..n {
        log.append(&body(i)).await.expect("append");
    }
    log
}

async fn exec(store: &Store, sql: &str) {
    let Store::Sqlite(pool) = store else {
        panic!("sqlite")
    };
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .expect(sql);
}

async fn check(store: &Store) -> Result<Verified, Broken> {
    verify(store, &AuditKey::new(KEY).expect("key"))
        .await
        .expect("readable")
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
            records: 25
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
    let cases: [(&str, &str, i64); 6] = [
        (
            "UPDATE audit_records SET body = replace(body, '\"withheld\":1', '\"withheld\":0') WHERE seq = 7",
            "modified",
            7,
        ),
        ("DELETE FROM audit_records WHERE seq = 4", "missing", 5),
        (
            "INSERT INTO audit_records SELECT chain, 100, recorded_us, person_id, user_id, org, purpose, outcome, body, prev_hash, hash FROM audit_records WHERE seq = 9",
            "missing or was inserted",
            100,
        ),
        (
            "UPDATE audit_records SET seq = CASE seq WHEN 2 THEN 3 ELSE 2 END WHERE seq IN (2, 3)",
            "does not follow",
            2,
        ),
        (
            "UPDATE audit_records SET user_id = 'someone-else' WHERE seq = 6",
            "searchable columns",
            6,
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
    store
        .append_audit(&[(record, Columns::of(&body(3)))])
        .await
        .expect("insert");
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
