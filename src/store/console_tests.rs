//! The console's sessions and sign-ins under way, on SQLite and (when
//! `CONCORD_TEST_DATABASE_URL` is set) PostgreSQL.

use super::*;
use crate::testing::TestDatabase;

fn session(id_hash: &str, role: Option<&str>, now: i64) -> ConsoleSession {
    ConsoleSession {
        id_hash: id_hash.into(),
        csrf: "token".into(),
        issuer: "https://idp.example".into(),
        subject: "u1".into(),
        name: Some("Isla".into()),
        org: None,
        role: role.map(str::to_owned),
        choices: role
            .is_none()
            .then(|| r#"[["ig-lead","RY4"],["ig-lead","A81001"]]"#.to_owned()),
        created_s: now,
        last_seen_s: now,
    }
}

fn login(state_hash: &str, created_s: i64) -> PendingLogin {
    PendingLogin {
        state_hash: state_hash.into(),
        browser_hash: "b".into(),
        nonce_hash: "n".into(),
        verifier: "v".into(),
        created_s,
    }
}

async fn exercise(store: &Store) {
    store.migrate().await.expect("migrate");
    store
        .create_console_session(&session("a", Some("ig-lead"), 1000))
        .await
        .expect("create");
    assert_eq!(
        store.console_session("a").await.expect("read"),
        Some(session("a", Some("ig-lead"), 1000))
    );
    store.touch_console_session("a", 1500).await.expect("touch");
    assert_eq!(
        store
            .console_session("a")
            .await
            .expect("read")
            .map(|s| s.last_seen_s),
        Some(1500)
    );
    assert!(
        !store
            .choose_console_role("a", "x", None)
            .await
            .expect("choose"),
        "a settled session has no choice to make"
    );

    store
        .create_console_session(&session("b", None, 1000))
        .await
        .expect("create");
    assert!(
        store
            .choose_console_role("b", "ig-lead", Some("RY4"))
            .await
            .expect("choose")
    );
    let b = store.console_session("b").await.expect("read").expect("b");
    assert_eq!(
        (b.role.as_deref(), b.org.as_deref(), b.choices),
        (Some("ig-lead"), Some("RY4"), None)
    );

    // Idle (last seen before 1200) or too old (created before 900): only `b` goes.
    assert_eq!(
        store
            .expire_console_sessions(1200, 900)
            .await
            .expect("expire"),
        1
    );
    assert!(store.console_session("b").await.expect("read").is_none());
    assert!(store.delete_console_session("a").await.expect("delete"));
    assert!(!store.delete_console_session("a").await.expect("again"));

    assert!(
        store
            .begin_console_login(&login("s1", 100), 0, 2)
            .await
            .expect("begin")
    );
    assert!(
        store
            .begin_console_login(&login("s2", 100), 0, 2)
            .await
            .expect("begin")
    );
    assert!(
        !store
            .begin_console_login(&login("s3", 100), 0, 2)
            .await
            .expect("begin"),
        "at most two under way"
    );
    assert_eq!(
        store.take_console_login("s1").await.expect("take"),
        Some(login("s1", 100))
    );
    assert_eq!(
        store.take_console_login("s1").await.expect("again"),
        None,
        "taken once"
    );
    // Those begun before 150 have expired and make room.
    assert!(
        store
            .begin_console_login(&login("s4", 200), 150, 1)
            .await
            .expect("begin")
    );
    assert_eq!(store.take_console_login("s2").await.expect("expired"), None);
}

#[tokio::test]
async fn console_sessions_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/concord.db", dir.path().display());
    exercise(&Store::connect(&url, 2).await.expect("connect")).await;
}

#[tokio::test]
async fn console_sessions_on_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    exercise(&Store::connect(db.url(), 2).await.expect("connect")).await;
    db.drop().await;
}
