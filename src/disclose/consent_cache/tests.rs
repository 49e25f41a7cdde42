//! The consent cache against a real SQLite store: evicted, bypassed and cleared.

use std::time::Duration;

use super::*;
use crate::fhir::NhsNumber;
use crate::store::{ConsentRecord, Store};

/// A federation with no sources over a fresh SQLite store, and one person in it.
async fn setup(dir: &std::path::Path) -> (Federation, Person) {
    let url = format!("sqlite://{}/concord.db", dir.display());
    let store = Store::connect(&url, 2).await.expect("store");
    store.migrate().await.expect("migrate");
    let id = store.ensure_person("9990000018", 1).await.expect("person");
    let federation = Federation::new(
        Vec::new(),
        store,
        crate::telemetry::Metrics::new(),
        Duration::from_secs(3600),
        Duration::from_secs(30),
    );
    let person = Person {
        id,
        nhs: NhsNumber::parse("9990000018").expect("nhs"),
        links: HashMap::new(),
    };
    (federation, person)
}

/// Records an objection to sharing `org`'s records straight into the store, as another
/// instance would: nothing here is evicted.
async fn objection_elsewhere(federation: &Federation, person: &Person, org: &str) {
    let record = ConsentRecord {
        id: uuid::Uuid::new_v4(),
        person: person.id,
        kind: "not_from".into(),
        org: org.into(),
        active: true,
        recorded_us: jiff::Timestamp::now().as_microsecond(),
        resource: "{}".into(),
    };
    federation
        .store()
        .record_consent(&record)
        .await
        .expect("record");
}

#[tokio::test]
async fn untrusted_the_store_is_read_every_time_and_trusted_again_only_after_clearing() {
    let dir = tempfile::tempdir().expect("dir");
    let (federation, person) = setup(dir.path()).await;
    let cache = ConsentCache::new(Duration::from_secs(600));
    assert!(
        cache
            .of(&federation, &person)
            .await
            .expect("read")
            .not_from
            .is_empty()
    );
    // Cached: another instance's choice is not seen until its notice evicts the person.
    objection_elsewhere(&federation, &person, "A81001").await;
    assert!(
        cache
            .of(&federation, &person)
            .await
            .expect("read")
            .not_from
            .is_empty()
    );
    cache.evict(person.id);
    assert_eq!(
        cache.of(&federation, &person).await.expect("read").not_from,
        ["A81001"]
    );

    // Changes may go unheard: every read goes to the store, and nothing is kept.
    federation.trust_caches(false);
    objection_elsewhere(&federation, &person, "RY4").await;
    assert_eq!(
        cache
            .of(&federation, &person)
            .await
            .expect("read")
            .not_from
            .len(),
        2
    );
    objection_elsewhere(&federation, &person, "LA001").await;
    assert_eq!(
        cache
            .of(&federation, &person)
            .await
            .expect("read")
            .not_from
            .len(),
        3
    );

    // Listening again: cleared first, so the entry cached before the listener was lost
    // (two choices ago) is not used.
    cache.clear();
    federation.trust_caches(true);
    assert_eq!(
        cache
            .of(&federation, &person)
            .await
            .expect("read")
            .not_from
            .len(),
        3
    );
}
