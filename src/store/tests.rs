//! Store tests against a real SQLite file, and against PostgreSQL when
//! `CONCORD_TEST_DATABASE_URL` is set (see `crate::testing`).

use super::*;
use crate::testing::TestDatabase;

async fn exercise(store: &Store) {
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrating twice is a no-op");
    store.ping().await.expect("ping");

    assert!(
        store
            .person_by_nhs("9990000018")
            .await
            .expect("lookup")
            .is_none()
    );
    let id = store
        .ensure_person("9990000018", 100)
        .await
        .expect("create");
    assert_eq!(
        store.ensure_person("9990000018", 200).await.expect("again"),
        id,
        "one person per NHS number"
    );

    store
        .record_links(id, "gp", &["p1".into(), "p2".into()], 300)
        .await
        .expect("links");
    store
        .record_links(id, "social", &[], 300)
        .await
        .expect("negative check");
    let person = store
        .person_by_nhs("9990000018")
        .await
        .expect("lookup")
        .expect("exists");
    assert_eq!(person.id, id);
    assert_eq!(person.links.len(), 2);
    assert_eq!(person.checked.len(), 2);

    // A fresh answer replaces the old links.
    store
        .record_links(id, "gp", &["p2".into()], 400)
        .await
        .expect("relink");
    let person = store
        .person_by_id(id)
        .await
        .expect("lookup")
        .expect("exists");
    assert_eq!(
        person.links,
        vec![Link {
            source_id: "gp".into(),
            local_id: "p2".into()
        }]
    );
    assert!(person.checked.contains(&("gp".to_owned(), 400)));

    // A local id that moves to another person (the source corrected an NHS number).
    let other = store
        .ensure_person("9990000026", 500)
        .await
        .expect("second person");
    store
        .record_links(other, "gp", &["p2".into()], 500)
        .await
        .expect("move");
    assert_eq!(
        store.person_by_link("gp", "p2").await.expect("lookup"),
        Some(other)
    );
    assert_eq!(
        store.person_by_link("gp", "nobody").await.expect("lookup"),
        None
    );

    // Sharing choices: kept in order, never changed.
    let choice = |org: &str, active: bool, at: i64| ConsentRecord {
        id: Uuid::new_v4(),
        person: id,
        kind: "not_from".into(),
        org: org.into(),
        active,
        recorded_us: at,
        resource: format!("{{\"org\":\"{org}\"}}"),
    };
    assert!(store.consents(id).await.expect("none yet").is_empty());
    let first = choice("RY4", true, 1_000);
    let second = choice("RY4", false, 2_000);
    store.record_consent(&second).await.expect("record");
    store.record_consent(&first).await.expect("record");
    let read = store.consents(id).await.expect("read");
    assert_eq!(
        read,
        vec![first, second],
        "oldest first, whatever the insert order"
    );

    // The audit chain appends and verifies on this backend too.
    let key = || crate::audit::AuditKey::new(&[7u8; 32]).expect("key");
    let log = crate::audit::AuditLog::new(store.clone(), key());
    for i in 0..5 {
        let body = crate::audit::Body {
            recorded_us: i,
            caller: "staff".into(),
            outcome: "success".into(),
            person: Some(id.to_string()),
            ..crate::audit::Body::default()
        };
        assert_eq!(log.append(&body).await.expect("append").seq, i);
    }
    let verified = crate::audit::verify(store, &key())
        .await
        .expect("readable")
        .expect("verifies");
    assert_eq!(verified.records, 5);

    // A spool a stopped process left is moved in, checked, after the stored records.
    let (last, head) = store
        .audit_head(log.chain())
        .await
        .expect("head")
        .expect("records");
    let spool_dir = tempfile::tempdir().expect("spool dir");
    let mut prev = head;
    let mut spooled = Vec::new();
    for seq in last + 1..last + 4 {
        let body = crate::audit::Body {
            recorded_us: seq,
            caller: "staff".into(),
            outcome: "success".into(),
            ..crate::audit::Body::default()
        };
        let text = serde_json::to_string(&body).expect("json");
        let hash = key().hash(log.chain(), seq, &prev, &text);
        spooled.push(crate::audit::Record {
            chain: log.chain().to_owned(),
            seq,
            body: text,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    let mut file = crate::audit::spool::Spool::open(spool_dir.path(), log.chain()).expect("spool");
    file.append(&spooled).expect("spooled");
    drop(file);
    let _next = crate::audit::AuditLog::start(
        store.clone(),
        key(),
        crate::audit::Options {
            spool_dir: Some(spool_dir.path().to_owned()),
            ..crate::audit::Options::default()
        },
    );
    for _ in 0..100 {
        if store
            .audit_head(log.chain())
            .await
            .expect("head")
            .map(|h| h.0)
            == Some(last + 3)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Replayed records reach the search projection from the log (as `audit export` makes
    // sure before it counts).
    crate::audit::project_pending(store)
        .await
        .expect("projected");
    assert_eq!(store.audit_count(None, None).await.expect("count"), 8);

    // Signed heads are kept, and a tail cut after one was signed is found.
    let signer = crate::audit::heads::HeadSigner::from_pkcs8(
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .expect("key")
            .as_ref(),
    )
    .expect("signer");
    let signed = signer.sign(log.chain(), 7, &prev);
    store.record_audit_head(&signed).await.expect("head kept");
    store.record_audit_head(&signed).await.expect("kept once");
    assert_eq!(store.audit_heads().await.expect("heads"), vec![signed]);
    let heads = crate::audit::HeadCheck {
        public_key: Some(signer.public_key().to_owned()),
        witnessed: Vec::new(),
    };
    let all = crate::audit::verify_with_heads(store, &key(), &heads)
        .await
        .expect("readable")
        .expect("verifies");
    assert_eq!((all.records, all.heads), (8, 1));

    // Export streams a time span, oldest first.
    use futures_util::TryStreamExt;
    let span: Vec<crate::audit::Row> = store
        .audit_export(Some(2), Some(6))
        .try_collect()
        .await
        .expect("export");
    let times: Vec<i64> = span.iter().map(|r| r.columns.recorded_us).collect();
    assert_eq!(times, vec![2, 3, 4, 5]);
    assert_eq!(store.audit_count(Some(2), Some(6)).await.expect("count"), 4);

    with_pool!(store, pool => {
        sqlx::query("DELETE FROM audit_records WHERE seq = 7").execute(pool).await.expect("cut");
    });
    let cut = crate::audit::verify_with_heads(store, &key(), &heads)
        .await
        .expect("readable")
        .expect_err("cut off");
    assert_eq!(cut.seq, 7, "{cut}");

    // Walked in parts (a seam at every other position), the chain is checked the same on
    // this backend: whole, and with a record missing at a seam.
    let in_parts = |heads: crate::audit::HeadCheck| async move {
        let parts = crate::audit::Parts::new(4, 2);
        crate::audit::verify_with_progress(store, &key(), &heads, parts, &mut |_| {})
            .await
            .expect("readable")
    };
    assert_eq!(in_parts(heads.clone()).await, Err(cut.clone()));
    // The store's own head vouches for position 7 too.
    let whole = crate::audit::verify(store, &key()).await.expect("readable");
    assert_eq!(whole.as_ref().map_err(|b| b.seq), Err(7));
    assert_eq!(in_parts(crate::audit::HeadCheck::default()).await, whole);
    with_pool!(store, pool => {
        sqlx::query("DELETE FROM audit_records WHERE seq = 4").execute(pool).await.expect("cut");
    });
    let gap = in_parts(crate::audit::HeadCheck::default())
        .await
        .expect_err("a record missing");
    assert_eq!(
        (gap.seq, gap.problem.contains("expected position 4")),
        (5, true),
        "{gap}"
    );
}

#[tokio::test]
async fn sqlite_file_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/nested/concord.db", dir.path().display());
    let store = Store::connect(&url, 2).await.expect("connect");
    assert_eq!(store.backend(), "sqlite");
    exercise(&store).await;
}

#[tokio::test]
async fn postgres_store() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = Store::connect(db.url(), 2).await.expect("connect");
    assert_eq!(store.backend(), "postgres");
    exercise(&store).await;
    db.drop().await;
}

#[tokio::test]
async fn bad_urls_are_refused() {
    assert!(matches!(
        Store::connect("mysql://x", 1).await,
        Err(StoreError::Url(_))
    ));
}
