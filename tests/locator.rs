//! The record locator (issue 17, item 2): with hundreds of sources, finding a person asks only
//! the sources the index says hold them. Many sources share one test HTTP server
//! ([`Upstreams`]), each on its own base path, and every base counts the calls it gets.
//! Each test starts on an empty store and waits for the background sync, as seen in the
//! operator's readiness view.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::app::{
    Policies, SourceSpec, StoreChoice, TestApp, matches, outcome_issues, postgres,
};
use crate::support::data::{ANN, BOB, CAT, observation, patient};
use crate::support::upstream::{Base, Mode, Upstreams};

/// A region's GP practices: `n` sources, each holding a few people of its own, and `ANN`
/// (with one Observation) at the sources in `ann_at`.
fn region(n: usize, ann_at: &[usize]) -> Vec<(String, Vec<Value>)> {
    let mut numbers = valid_nhs_numbers();
    (0..n)
        .map(|i| {
            let mut resources: Vec<Value> = (0..3)
                .map(|k| {
                    let nhs = numbers.next().expect("enough NHS numbers");
                    patient(
                        &format!("p{k}"),
                        &nhs,
                        "Local",
                        "01000 000000",
                        "Northshire",
                    )
                })
                .collect();
            if ann_at.contains(&i) {
                resources.push(patient("ann", ANN, "Ann", "01000 000001", "Northshire"));
                resources.push(observation("obs-ann", "ann", "29463-7", "2026-05-01"));
            }
            (name(i), resources)
        })
        .collect()
}

/// Valid NHS numbers (Modulus 11) in the 943… range, none of them the test people's.
fn valid_nhs_numbers() -> impl Iterator<Item = String> {
    (943_000_000u64..).filter_map(|base| {
        let digits: Vec<u64> = base
            .to_string()
            .bytes()
            .map(|b| u64::from(b - b'0'))
            .collect();
        let sum: u64 = digits
            .iter()
            .enumerate()
            .map(|(i, d)| d * (10 - i as u64))
            .sum();
        let check = (11 - sum % 11) % 11;
        (check != 10).then(|| format!("{base}{check}"))
    })
}

/// The base path and source id of the `i`th practice.
fn name(i: usize) -> String {
    format!("gp{i:03}")
}

/// A `'static` string for a [`SourceSpec`] (a few hundred short strings per test run).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// One fhir source per base, ids `gp000`…, ODS codes `Y00000`…; `extra` adds TOML lines to
/// each.
fn specs(upstreams: &Upstreams, extra: &str) -> Vec<SourceSpec> {
    upstreams
        .bases()
        .iter()
        .enumerate()
        .map(|(i, base)| {
            SourceSpec::fhir(
                leak(name(i)),
                leak(format!("Practice {i}")),
                leak(format!("Y{i:05}")),
                base.base_url(),
            )
            .with("conformance = \"off\"\ntimeout_ms = 5000")
            .with(extra)
        })
        .collect()
}

/// `[locator]`, enabled, with this fallback; rounds run 32 at once so that 300 sources sync
/// in seconds.
fn locator_toml(fallback: &str) -> String {
    format!("[locator]\nenabled = true\nfallback = \"{fallback}\"\nmax_concurrent_syncs = 32\n")
}

/// `[server]` lines for a gateway over many sources on a small shared machine: a request
/// may take longer than the tests' default 1.5 s when it asks 300 sources.
const MANY_SOURCES: &str = "request_timeout_ms = 10000";

async fn start(upstreams: &Upstreams, store: StoreChoice, extra_toml: &str) -> TestApp {
    TestApp::start_config(
        specs(upstreams, ""),
        store,
        MANY_SOURCES,
        Policies::ReadPath,
        extra_toml,
    )
    .await
}

/// The readiness view's `locator.sources`, by id.
async fn locator_view(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.readiness().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: Value = serde_json::from_str(&body).expect("readiness JSON");
    body["locator"]["sources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the readiness view shows every source in `ids` in one of `states`.
async fn wait_for(app: &TestApp, ids: &[String], states: &[&str]) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let view = locator_view(app).await;
        let done = ids.iter().all(|id| {
            view.iter().any(|s| {
                s["id"] == id.as_str() && states.contains(&s["state"].as_str().unwrap_or(""))
            })
        });
        if done {
            return view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the sources did not reach {states:?}: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn all_ids(upstreams: &Upstreams) -> Vec<String> {
    (0..upstreams.bases().len()).map(name).collect()
}

/// The indexes of the bases that received any request since they were last cleared.
fn asked(upstreams: &Upstreams) -> Vec<usize> {
    upstreams
        .bases()
        .iter()
        .enumerate()
        .filter(|(_, b)| b.request_count() > 0)
        .map(|(i, _)| i)
        .collect()
}

/// The indexes of the bases asked whether they know someone (`Patient?identifier=`) since
/// they were last cleared.
fn identified(upstreams: &Upstreams) -> Vec<usize> {
    upstreams
        .bases()
        .iter()
        .enumerate()
        .filter(|(_, b)| {
            b.requests()
                .iter()
                .any(|r| r.starts_with("/fhir/Patient?identifier="))
        })
        .map(|(i, _)| i)
        .collect()
}

fn clear(upstreams: &Upstreams) {
    for base in upstreams.bases() {
        base.clear_requests();
    }
}

/// The codes of the locator notices in a Bundle's OperationOutcome entries.
fn locator_notices(bundle: &Value) -> Vec<String> {
    outcome_issues(bundle)
        .iter()
        .flat_map(|i| {
            i["details"]["coding"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|c| c["system"] == concord::server::api::LOCATOR_CODE_SYSTEM)
        .filter_map(|c| c["code"].as_str().map(str::to_owned))
        .collect()
}

/// The sources an answer says the record locator ruled out (the ones it names), in order.
fn ruled_out(bundle: &Value) -> Vec<String> {
    outcome_issues(bundle)
        .iter()
        .filter(|i| i["details"]["coding"][0]["code"] == "locator-ruled-out")
        .filter_map(|i| {
            i["details"]["coding"][1]["code"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The sources (by gateway id prefix) the Observations of an answer came from.
fn observation_sources(bundle: &Value) -> Vec<String> {
    let mut from: Vec<String> = matches(bundle)
        .iter()
        .filter(|r| r["resourceType"] == "Observation")
        .filter_map(|r| {
            r["id"]
                .as_str()
                .and_then(|id| id.split_once('.'))
                .map(|(s, _)| s.to_owned())
        })
        .collect();
    from.sort();
    from
}

async fn only_the_holders_are_asked(store: StoreChoice) {
    let holders = [17, 123, 299];
    let upstreams = Upstreams::start(region(300, &holders)).await;
    let app = start(&upstreams, store, &locator_toml("all")).await;
    let view = wait_for(&app, &all_ids(&upstreams), &["synced"]).await;
    assert!(
        view.iter()
            .all(|s| s["entries"].as_i64() >= Some(3) && s["age_secs"].is_number()),
        "every source's freshness and entries are shown: {view:?}"
    );
    let synced = upstreams.bases()[5].requests();
    assert!(
        synced
            .iter()
            .any(|r| r.contains("_elements=identifier") && r.contains("_count=")),
        "the sync asks for identifiers only, paged: {synced:?}"
    );
    clear(&upstreams);

    let id = app.patient_id(ANN).await;
    assert_eq!(
        asked(&upstreams),
        holders,
        "finding the person asks only its holders"
    );
    let answer = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        asked(&upstreams),
        holders,
        "and so does gathering their record"
    );
    assert_eq!(
        observation_sources(&answer.body),
        ["gp017", "gp123", "gp299"],
        "the record is complete: {}",
        answer.body
    );
    // Nothing is reported missing and no fallback was needed; the answer names the sources
    // the index ruled out: the first 20 one by one, the rest counted.
    let issues = outcome_issues(&answer.body);
    assert!(
        issues
            .iter()
            .all(|i| i["details"]["coding"][0]["code"] == "locator-ruled-out"),
        "{}",
        answer.body
    );
    assert_eq!(issues.len(), 1 + 20 + 1, "{}", answer.body);
    assert!(
        issues[0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains("ruled out 297 provider(s)")),
        "{}",
        issues[0]
    );
    assert_eq!(ruled_out(&answer.body)[..2], ["gp000", "gp001"]);
    assert!(
        issues[21]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.starts_with("277 more provider(s)")),
        "{}",
        issues[21]
    );
    let (_, metrics) = app.get_root("/metrics").await;
    assert!(
        metrics.contains("concord_locator_sync_age_seconds{source=\"gp017\"}")
            && metrics.contains("concord_locator_entries{source=\"gp017\"} 4"),
        "the metrics show each source's freshness and entries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_sync_only_the_sources_holding_the_person_are_asked() {
    only_the_holders_are_asked(StoreChoice::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_sync_only_the_sources_holding_the_person_are_asked_on_postgres() {
    let Some(db) = postgres().await else {
        return;
    };
    only_the_holders_are_asked(StoreChoice::Postgres(db.url().to_owned())).await;
}

/// The control: without `[locator]` (the default), finding a person asks every source, as
/// before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_locator_every_source_is_asked() {
    let upstreams = Upstreams::start(region(300, &[17, 123, 299])).await;
    let app = start(&upstreams, StoreChoice::Sqlite, "").await;
    app.patient_id(ANN).await;
    assert_eq!(asked(&upstreams).len(), 300);
    let (_, detail) = app.readiness().await;
    let detail: Value = serde_json::from_str(&detail).expect("JSON");
    assert_eq!(detail["locator"]["enabled"], false);
}

/// Points the next round of `source` at now, as its interval running out would.
async fn sync_now(app: &TestApp, source: &str) {
    let sql = "UPDATE locator_sources SET due_at = 0 WHERE source_id = $1";
    match app.state.door.federation().store() {
        concord::store::Store::Sqlite(pool) => {
            sqlx::query(sql)
                .bind(source)
                .execute(pool)
                .await
                .expect("update");
        }
        concord::store::Store::Postgres(pool) => {
            sqlx::query(sql)
                .bind(source)
                .execute(pool)
                .await
                .expect("update");
        }
    }
}

fn source_view<'v>(view: &'v [Value], id: &str) -> &'v Value {
    view.iter()
        .find(|s| s["id"] == id)
        .expect("the source is listed")
}

async fn gains_the_person(store: StoreChoice) {
    let upstreams = Upstreams::start(region(6, &[1])).await;
    let app = start(&upstreams, store, &locator_toml("all")).await;
    let ids = all_ids(&upstreams);
    let before = wait_for(&app, &ids, &["synced"]).await;
    let gp004 = &upstreams.bases()[4];
    gp004.add_resource(patient("ann-new", ANN, "Ann", "01000 000001", "Northshire"));
    gp004.add_resource(observation("obs-new", "ann-new", "29463-7", "2026-06-01"));
    clear(&upstreams);

    let id = app.patient_id(ANN).await;
    assert_eq!(
        asked(&upstreams),
        [1],
        "gp004 registered her after its sync: not known yet"
    );
    let first = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(observation_sources(&first.body), ["gp001"]);

    // The next round of gp004's sync (its interval is an hour; the test brings it forward).
    let entries = source_view(&before, "gp004")["entries"]
        .as_i64()
        .expect("entries");
    sync_now(&app, "gp004").await;
    let started = std::time::Instant::now();
    loop {
        let view = locator_view(&app).await;
        if source_view(&view, "gp004")["entries"].as_i64() == Some(entries + 1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "gp004 was not synced again: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    clear(&upstreams);
    let second = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(
        identified(&upstreams),
        [4],
        "only the source found by the sync is asked whether it knows her"
    );
    assert_eq!(
        asked(&upstreams),
        [1, 4],
        "and both are asked for her record"
    );
    assert_eq!(observation_sources(&second.body), ["gp001", "gp004"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_gains_the_person_is_found_after_its_next_sync() {
    gains_the_person(StoreChoice::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_gains_the_person_is_found_after_its_next_sync_on_postgres() {
    let Some(db) = postgres().await else {
        return;
    };
    gains_the_person(StoreChoice::Postgres(db.url().to_owned())).await;
}

/// When the index knows no source for the person, fallback `all` asks every source and says
/// so in the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_all_asks_every_source_and_says_so() {
    let upstreams = Upstreams::start(region(4, &[])).await;
    let app = start(&upstreams, StoreChoice::Sqlite, &locator_toml("all")).await;
    wait_for(&app, &all_ids(&upstreams), &["synced"]).await;
    upstreams.bases()[2].add_resource(patient("cat", CAT, "Cat", "01000 000003", "Northshire"));
    clear(&upstreams);
    let answer = app
        .get(&format!(
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{CAT}"
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(matches(&answer.body).len(), 1, "found: {}", answer.body);
    assert_eq!(asked(&upstreams), [0, 1, 2, 3]);
    assert_eq!(locator_notices(&answer.body), ["locator-fallback-all"]);
    let (_, metrics) = app.get_root("/metrics").await;
    assert!(
        metrics.contains("concord_locator_fallbacks_total{mode=\"all\"} 1"),
        "{metrics}"
    );

    // Now known: the next person search says nothing of a fallback.
    let again = app
        .get(&format!(
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{CAT}"
        ))
        .await;
    assert!(locator_notices(&again.body).is_empty(), "{}", again.body);
}

/// Fallback `none` asks only the sources the index cannot rule out (here one whose sync is
/// off), and the answer warns that a source that registered the person since its sync may
/// be missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_none_asks_only_what_cannot_be_ruled_out_and_warns() {
    let upstreams = Upstreams::start(region(4, &[])).await;
    let mut sources = specs(&upstreams, "");
    sources[3] = SourceSpec::fhir(
        "gp003",
        "Practice 3",
        "Y00003",
        upstreams.bases()[3].base_url(),
    )
    .with("conformance = \"off\"\nlocator_sync_secs = 0");
    let app = TestApp::start_config(
        sources,
        StoreChoice::Sqlite,
        MANY_SOURCES,
        Policies::ReadPath,
        &locator_toml("none"),
    )
    .await;
    let view = wait_for(&app, &all_ids(&upstreams)[..3], &["synced"]).await;
    assert_eq!(
        source_view(&view, "gp003")["state"],
        "not synced (always asked)"
    );
    for i in [1, 3] {
        upstreams.bases()[i].add_resource(patient("cat", CAT, "Cat", "01000 000003", "Northshire"));
        upstreams.bases()[i].add_resource(observation("obs-cat", "cat", "29463-7", "2026-06-01"));
    }
    clear(&upstreams);
    let answer = app
        .get(&format!(
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{CAT}"
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        asked(&upstreams),
        [3],
        "only the source that is never synced"
    );
    let notices = locator_notices(&answer.body);
    assert_eq!(notices[0], "locator-fallback-none", "{notices:?}");
    assert!(
        notices[1..].iter().all(|n| n == "locator-ruled-out"),
        "{notices:?}"
    );
    assert_eq!(
        ruled_out(&answer.body),
        ["gp000", "gp001", "gp002"],
        "gp001 holds her since its sync: it is named among those not asked"
    );
    let warning = outcome_issues(&answer.body)
        .into_iter()
        .find(|i| i["code"] == "incomplete")
        .expect("the answer says it may be incomplete");
    assert_eq!(warning["severity"], "warning");

    // Someone nobody is asked about: nothing to show, and nothing said of the index.
    clear(&upstreams);
    let nobody = app
        .get(&format!(
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{BOB}"
        ))
        .await;
    assert_eq!(nobody.status, StatusCode::OK);
    assert!(matches(&nobody.body).is_empty());
    assert!(locator_notices(&nobody.body).is_empty(), "{}", nobody.body);
    assert_eq!(asked(&upstreams), [3]);
}

/// A source whose listing fails does not hold up the others' syncs; the readiness view and
/// the metrics show it failing, and it is still asked (it cannot be ruled out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_does_not_block_the_others_and_shows_in_readiness() {
    let upstreams = Upstreams::start(region(5, &[1])).await;
    let failing: &Base = &upstreams.bases()[3];
    failing.set_mode(Mode::Status(500));
    let app = start(&upstreams, StoreChoice::Sqlite, &locator_toml("all")).await;
    let ids = all_ids(&upstreams);
    let view = wait_for(&app, &ids, &["synced", "failing"]).await;
    for id in ["gp000", "gp001", "gp002", "gp004"] {
        assert_eq!(source_view(&view, id)["state"], "synced", "{view:?}");
    }
    let gp003 = source_view(&view, "gp003");
    assert_eq!(gp003["state"], "failing");
    assert_eq!(gp003["last_failure"]["kind"], "http_error");
    assert!(gp003["synced_at"].is_null());
    let (_, metrics) = app.get_root("/metrics").await;
    assert!(
        metrics.contains("concord_locator_sync_failing{source=\"gp003\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("concord_locator_sync_failing{source=\"gp001\"} 0"),
        "{metrics}"
    );

    clear(&upstreams);
    let answer = app
        .get(&format!(
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{ANN}"
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        asked(&upstreams),
        [1, 3],
        "the holder, and the source never synced"
    );
    assert!(
        outcome_issues(&answer.body)
            .iter()
            .any(|i| i["details"]["coding"][0]["code"] == "gp003"),
        "its failure is reported: {}",
        answer.body
    );
}

/// A source the index lists answers that it does not hold the person (after its sync, it
/// gave her Patient record another NHS number): the index forgets the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_no_longer_holds_the_person_is_dropped_from_the_index() {
    let upstreams = Upstreams::start(region(3, &[0, 2])).await;
    let app = start(&upstreams, StoreChoice::Sqlite, &locator_toml("all")).await;
    wait_for(&app, &all_ids(&upstreams), &["synced"]).await;
    // gp002 merges her record away: its Patient no longer carries her NHS number.
    upstreams.bases()[2].add_resource(patient("ann", CAT, "Cat", "01000 000003", "Northshire"));
    clear(&upstreams);
    app.patient_id(ANN).await;
    assert_eq!(asked(&upstreams), [0, 2]);
    let holders = app
        .state
        .door
        .federation()
        .store()
        .locator_holders(ANN)
        .await
        .expect("store");
    assert_eq!(holders, ["gp000"], "the source's answer removed its entry");
}

/// A listing longer than a round may read (pages of 2, at most 2 pages a round) is read over
/// several rounds, each resuming where the last stopped, until the pass completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_listing_is_read_over_bounded_rounds() {
    let mut bases = region(2, &[1]);
    let mut numbers = valid_nhs_numbers().skip(1_000);
    for k in 0..9 {
        let nhs = numbers.next().expect("number");
        bases[1].1.push(patient(
            &format!("more{k}"),
            &nhs,
            "More",
            "01000 000000",
            "Northshire",
        ));
    }
    let upstreams = Upstreams::start(bases).await;
    upstreams.bases()[1].set_page_size(2);
    let app = start(
        &upstreams,
        StoreChoice::Sqlite,
        "[locator]\nenabled = true\npage_size = 2\nmax_pages_per_round = 2\n",
    )
    .await;
    let view = wait_for(&app, &all_ids(&upstreams), &["synced"]).await;
    // 3 people of its own, Ann and 9 more: 13 numbers, 7 pages of 2, over 4 rounds.
    assert_eq!(source_view(&view, "gp001")["entries"], 13, "{view:?}");
    let listings = upstreams.bases()[1]
        .requests()
        .iter()
        .filter(|r| r.contains("_elements=identifier"))
        .count();
    assert_eq!(listings, 7);
    let (_, metrics) = app.get_root("/metrics").await;
    assert!(
        metrics
            .contains("concord_locator_sync_rounds_total{source=\"gp001\",result=\"partial\"} 3"),
        "{metrics}"
    );
}

/// Every answer that used the index names the sources it ruled out, each with the start of
/// the sync pass its entries come from (as the readiness view shows it); an answer that shows
/// the caller nothing says nothing of the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_name_the_sources_ruled_out_and_how_fresh_their_entries_are() {
    let upstreams = Upstreams::start(region(5, &[1, 3])).await;
    let app = start(&upstreams, StoreChoice::Sqlite, &locator_toml("all")).await;
    let view = wait_for(&app, &all_ids(&upstreams), &["synced"]).await;
    clear(&upstreams);

    let found = app
        .get(&format!(
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{ANN}"
        ))
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(asked(&upstreams), [1, 3]);
    assert_eq!(ruled_out(&found.body), ["gp000", "gp002", "gp004"]);
    let issues = outcome_issues(&found.body);
    for id in ["gp000", "gp002", "gp004"] {
        let synced_at = source_view(&view, id)["synced_at"]
            .as_str()
            .expect("synced")
            .to_owned();
        let issue = issues
            .iter()
            .find(|i| i["details"]["coding"][1]["code"] == id)
            .expect("named");
        assert_eq!(issue["severity"], "information");
        let text = issue["diagnostics"].as_str().expect("diagnostics");
        assert!(
            text.contains(&synced_at) && text.contains(&format!("({id})")),
            "{text} names {id} and its sync of {synced_at}"
        );
    }
    assert!(
        issues[0]["diagnostics"].as_str().is_some_and(
            |d| d.contains("ruled out 3 provider(s)") && d.contains("X-Concord-Lookup: full")
        ),
        "{}",
        issues[0]
    );
    let id = matches(&found.body)[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // The sources ruled out were not asked, so their links stay stale: the next answer about
    // her uses the index again, and says so again.
    let everything = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(everything.status, StatusCode::OK, "{}", everything.body);
    assert_eq!(ruled_out(&everything.body), ["gp000", "gp002", "gp004"]);
    assert_eq!(observation_sources(&everything.body), ["gp001", "gp003"]);

    // A search that finds nothing the caller may see: the answer that shows nothing is the
    // same as for anybody, and says nothing of the index.
    let nothing = app
        .get(&format!(
            "Observation?patient={id}&code=http://snomed.info/sct|1"
        ))
        .await;
    assert_eq!(nothing.status, StatusCode::OK, "{}", nothing.body);
    assert!(matches(&nothing.body).is_empty(), "{}", nothing.body);
    assert!(
        locator_notices(&nothing.body).is_empty(),
        "{}",
        nothing.body
    );
}

/// `X-Concord-Lookup: full` asks every source for one request: the source the index did not
/// know holds the person is found, the index learns it, the answer says a full look-up was
/// made and its audit record says `lookup: full`. It is for staff, `full` is its only value,
/// and an instance makes at most `full_lookups_per_minute` of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_look_up_asks_every_source_is_audited_and_bounded() {
    let upstreams = Upstreams::start(region(4, &[1])).await;
    let app = start(
        &upstreams,
        StoreChoice::Sqlite,
        &format!("{}full_lookups_per_minute = 1\n", locator_toml("all")),
    )
    .await;
    wait_for(&app, &all_ids(&upstreams), &["synced"]).await;
    // gp002 registers her after its sync: the index does not know.
    let gp002 = &upstreams.bases()[2];
    gp002.add_resource(patient("ann-new", ANN, "Ann", "01000 000001", "Northshire"));
    gp002.add_resource(observation("obs-new", "ann-new", "29463-7", "2026-06-01"));
    let id = app.patient_id(ANN).await;
    clear(&upstreams);
    let indexed = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(observation_sources(&indexed.body), ["gp001"]);
    assert_eq!(ruled_out(&indexed.body), ["gp000", "gp002", "gp003"]);
    assert_eq!(asked(&upstreams), [1]);

    clear(&upstreams);
    let full = app
        .get_with(
            &format!("Patient/{id}/$everything"),
            &[("X-Concord-Lookup", "full")],
        )
        .await;
    assert_eq!(full.status, StatusCode::OK, "{}", full.body);
    assert_eq!(
        identified(&upstreams),
        [0, 2, 3],
        "every source not asked lately is asked whether it knows her"
    );
    assert_eq!(observation_sources(&full.body), ["gp001", "gp002"]);
    assert_eq!(locator_notices(&full.body), ["locator-full"]);
    let store = app.state.door.federation().store();
    let mut holders = store.locator_holders(ANN).await.expect("store");
    holders.sort();
    assert_eq!(
        holders,
        ["gp001", "gp002"],
        "the index learnt what the full look-up found"
    );

    // The instance's allowance (one a minute) is spent.
    let spent = app
        .get_with(
            &format!("Patient/{id}/$everything"),
            &[("X-Concord-Lookup", "full")],
        )
        .await;
    assert_eq!(
        spent.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        spent.body
    );
    assert_eq!(spent.body["issue"][0]["code"], "throttled");
    let (_, metrics) = app.get_root("/metrics").await;
    assert!(
        metrics.contains("concord_locator_full_lookups_total{result=\"made\"} 1")
            && metrics.contains("concord_locator_full_lookups_total{result=\"refused\"} 1"),
        "{metrics}"
    );
    let odd = app
        .get_with(
            &format!("Patient/{id}/$everything"),
            &[("X-Concord-Lookup", "everything")],
        )
        .await;
    assert_eq!(odd.status, StatusCode::BAD_REQUEST, "{}", odd.body);
    let person = app.token_with(&[
        ("scope", serde_json::json!("patient/*.rs")),
        ("nhs_number", serde_json::json!(ANN)),
        ("role", serde_json::json!("patient")),
        ("org", Value::Null),
    ]);
    let theirs = app
        .get_raw(
            &format!("Patient/{id}/$everything"),
            &[
                ("Authorization", &format!("Bearer {person}")),
                ("X-Concord-Lookup", "full"),
            ],
        )
        .await;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN, "{}", theirs.body);

    // The records: the full look-up says so (and so does the one refused); the others not.
    use futures_util::TryStreamExt;
    let records: Vec<concord::audit::Record> =
        store.audit_rows().try_collect().await.expect("rows");
    let everything: Vec<(u64, Option<String>)> = records
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .filter(|b| b["route"] == "/fhir/Patient/{id}/$everything")
        .map(|b| {
            (
                b["status"].as_u64().unwrap_or_default(),
                b["lookup"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        everything,
        [
            (200, None),
            (200, Some("full".to_owned())),
            (429, Some("full".to_owned())),
            (400, None),
            (403, None),
        ],
        "{everything:?}"
    );
}

/// A listing whose `next` link points outside the source's base (here at another source on
/// the same server) is not followed: the sync fails (`invalid_response`), the other source
/// is never asked for that page, and the source, never synced, is still asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_whose_next_link_leaves_the_source_is_not_followed() {
    let upstreams = Upstreams::start(region(3, &[1, 2])).await;
    let (gp000, gp001) = (&upstreams.bases()[0], &upstreams.bases()[1]);
    gp001.set_page_size(2);
    gp001.set_next_base(Some(gp000.base_url()));
    let app = start(&upstreams, StoreChoice::Sqlite, &locator_toml("all")).await;
    let view = wait_for(&app, &all_ids(&upstreams), &["synced", "failing"]).await;
    let failing = source_view(&view, "gp001");
    assert_eq!(failing["state"], "failing", "{view:?}");
    assert_eq!(failing["last_failure"]["kind"], "invalid_response");
    assert!(failing["synced_at"].is_null());
    assert_eq!(
        failing["entries"], 0,
        "the page that pointed away is not kept"
    );
    assert_eq!(source_view(&view, "gp000")["state"], "synced");
    assert!(
        gp000.requests().iter().all(|r| !r.contains("_offset=")),
        "gp001's next page was never asked of gp000: {:?}",
        gp000.requests()
    );
    assert!(
        gp001.requests().iter().all(|r| !r.contains("_offset=")),
        "{:?}",
        gp001.requests()
    );

    clear(&upstreams);
    let answer = app
        .get(&format!(
            "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{ANN}"
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        asked(&upstreams),
        [1, 2],
        "the holder the index knows, and the source never synced"
    );
    assert_eq!(ruled_out(&answer.body), ["gp000"]);
}
