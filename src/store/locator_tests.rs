//! The record locator's index and sync rows, against a real SQLite file and against
//! PostgreSQL when `CONCORD_TEST_DATABASE_URL` is set.

use super::*;
use crate::testing::TestDatabase;

async fn leases_pages_and_entries(store: &Store) {
    store.migrate().await.expect("migrate");
    let sources = ["gp".to_owned(), "cc".to_owned()];
    store
        .locator_register(&sources, 100)
        .await
        .expect("register");
    // Registering again keeps what is there.
    store.locator_register(&sources, 500).await.expect("again");
    let rows = store.locator_sources().await.expect("rows");
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.due_at == 100 && r.synced_at.is_none())
    );

    // One instance takes the round; another cannot while the lease holds.
    let taken = store
        .locator_claim("gp", "instance-a", 200, 290)
        .await
        .expect("claim");
    assert!(taken.is_some_and(|r| r.cursor.is_none()));
    assert!(
        store
            .locator_claim("gp", "instance-b", 250, 340)
            .await
            .expect("claim")
            .is_none(),
        "leased to a"
    );

    // A page of the pass, then the round ends unfinished.
    let numbers = ["9990000018".to_owned(), "9990000026".to_owned()];
    let page = PageRead {
        numbers: &numbers,
        next: Some("http://gp.example/fhir?page=2"),
        pass_started_at: 200,
        pages: 1,
    };
    store
        .locator_save_page("gp", &page, 210)
        .await
        .expect("page");
    let end = RoundEnd {
        completed: None,
        due_at: 211,
        failure: None,
    };
    assert_eq!(store.locator_end_round("gp", &end).await.expect("end"), 2);
    let resumed = store
        .locator_claim("gp", "instance-b", 212, 300)
        .await
        .expect("claim")
        .expect("due again at once");
    assert_eq!(
        resumed.cursor.as_deref(),
        Some("http://gp.example/fhir?page=2")
    );
    assert_eq!((resumed.pass_started_at, resumed.pages), (Some(200), 1));

    // The last page completes the pass.
    let last = ["9990000034".to_owned()];
    let page = PageRead {
        numbers: &last,
        next: None,
        pass_started_at: 200,
        pages: 2,
    };
    store
        .locator_save_page("gp", &page, 220)
        .await
        .expect("page");
    let end = RoundEnd {
        completed: Some(200),
        due_at: 4_000,
        failure: None,
    };
    assert_eq!(store.locator_end_round("gp", &end).await.expect("end"), 3);
    let gp = store
        .locator_sources()
        .await
        .expect("rows")
        .into_iter()
        .find(|r| r.source_id == "gp")
        .expect("gp");
    assert_eq!(gp.synced_at, Some(200));
    assert!(gp.cursor.is_none() && gp.lease_until.is_none());
    assert!(
        store
            .locator_claim("gp", "instance-a", 300, 400)
            .await
            .expect("claim")
            .is_none(),
        "not due until 4000"
    );
    assert_eq!(
        store.locator_holders("9990000018").await.expect("holders"),
        ["gp"]
    );

    // What a source answers: cc has her, gp no longer has Ann.
    store
        .locator_note("cc", "9990000018", true, 300)
        .await
        .expect("note");
    store
        .locator_note("gp", "9990000018", false, 300)
        .await
        .expect("note");
    assert_eq!(
        store.locator_holders("9990000018").await.expect("holders"),
        ["cc"]
    );

    // A failed round: the failure is kept and the pass starts again next time.
    store
        .locator_claim("cc", "instance-a", 300, 400)
        .await
        .expect("claim")
        .expect("cc is due");
    let page = PageRead {
        numbers: &[],
        next: Some("http://cc.example/fhir?page=2"),
        pass_started_at: 300,
        pages: 1,
    };
    store
        .locator_save_page("cc", &page, 301)
        .await
        .expect("page");
    let end = RoundEnd {
        completed: None,
        due_at: 360,
        failure: Some((300, "http_error")),
    };
    store.locator_end_round("cc", &end).await.expect("end");
    let cc = store
        .locator_sources()
        .await
        .expect("rows")
        .into_iter()
        .find(|r| r.source_id == "cc")
        .expect("cc");
    assert_eq!(
        (cc.failed_at, cc.failure.as_deref()),
        (Some(300), Some("http_error"))
    );
    assert!(cc.cursor.is_none() && cc.pass_started_at.is_none());
    assert_eq!(cc.entries, 1, "the entry learnt from its answer is kept");
}

#[tokio::test]
async fn sqlite_leases_pages_and_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/concord.db", dir.path().display());
    let store = Store::connect(&url, 2).await.expect("connect");
    leases_pages_and_entries(&store).await;
}

#[tokio::test]
async fn postgres_leases_pages_and_entries() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = Store::connect(db.url(), 2).await.expect("connect");
    leases_pages_and_entries(&store).await;
    db.drop().await;
}
