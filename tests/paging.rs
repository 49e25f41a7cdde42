//! Paging across merged sources: every resource exactly once, in one total order.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::app::{SourceSpec, TestApp, matches, next_link};
use crate::support::data::{self, ANN};
use crate::support::upstream::Upstream;

fn provider(prefix: &str, patient_local: &str, n: usize) -> Vec<Value> {
    let mut out = vec![data::patient(
        patient_local,
        ANN,
        "Smith",
        "01632 960001",
        "Riverside",
    )];
    for i in 0..n {
        // Few distinct dates, so many resources tie and the id must break the tie.
        let day = 1 + (i % 3);
        out.push(data::observation(
            &format!("{prefix}{i}"),
            patient_local,
            "27113001",
            &format!("2026-05-0{day}"),
        ));
    }
    // One without any date: sorted last.
    let mut undated = data::observation(
        &format!("{prefix}-undated"),
        patient_local,
        "27113001",
        "2026-05-01",
    );
    if let Some(o) = undated.as_object_mut() {
        o.remove("effectiveDateTime");
    }
    out.push(undated);
    out
}

async fn walk(app: &TestApp, first: &str) -> (Vec<String>, usize) {
    let (resources, pages) = walk_resources(app, first).await;
    (
        resources
            .iter()
            .map(|r| r["id"].as_str().unwrap_or("").to_owned())
            .collect(),
        pages,
    )
}

async fn walk_resources(app: &TestApp, first: &str) -> (Vec<Value>, usize) {
    let mut url = first.to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = app.get(&url).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        pages += 1;
        assert!(pages < 50, "paging does not end");
        seen.extend(matches(&page.body));
        match next_link(&page.body) {
            Some(next) => {
                assert!(
                    next.starts_with(&app.base),
                    "next links point at the gateway: {next}"
                );
                url = next;
            }
            None => break,
        }
    }
    (seen, pages)
}

#[tokio::test]
async fn paging_across_merged_sources_returns_every_resource_exactly_once() {
    let gp = Upstream::start(provider("g", "gp-1", 7)).await;
    let community = Upstream::start(provider("c", "cm-1", 5)).await;
    let social = Upstream::start(provider("s", "sc-1", 9)).await;
    // The upstreams page too, so the gateway follows their next links as well.
    for up in [&gp, &community, &social] {
        up.set_page_size(2);
    }
    let app = TestApp::start(vec![
        SourceSpec::fhir("gp", "Riverside Medical Practice", "A81001", gp.base_url()),
        SourceSpec::fhir(
            "community",
            "Northshire Community Health",
            "RY4",
            community.base_url(),
        ),
        SourceSpec::fhir(
            "social",
            "Northshire Adult Social Care",
            "LA001",
            social.base_url(),
        ),
    ])
    .await;
    let id = app.patient_id(ANN).await;
    let expected = 7 + 5 + 9 + 3;

    for (query, by_date, descending) in [
        ("", true, true),
        ("&_sort=date", true, false),
        ("&_sort=-date", true, true),
        ("&_sort=_lastUpdated,_id", false, false),
    ] {
        let (resources, pages) =
            walk_resources(&app, &format!("Observation?patient={id}&_count=4{query}")).await;
        let seen: Vec<&str> = resources
            .iter()
            .map(|r| r["id"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(seen.len(), expected, "{query}: {seen:?}");
        assert_eq!(
            seen.iter().collect::<HashSet<_>>().len(),
            expected,
            "{query}: duplicates in {seen:?}"
        );
        assert_eq!(pages, expected.div_ceil(4), "{query}");
        if by_date {
            assert!(
                seen.iter().rev().take(3).all(|i| i.ends_with("-undated")),
                "{query}: undated last whatever the direction: {seen:?}"
            );
            let dates: Vec<&str> = resources
                .iter()
                .filter_map(|r| r["effectiveDateTime"].as_str())
                .collect();
            let mut ordered = dates.clone();
            ordered.sort();
            if descending {
                ordered.reverse();
            }
            assert_eq!(dates, ordered, "{query}");
            // Within one date, ties are broken by id, ascending.
            for pair in resources.windows(2) {
                if pair[0]["effectiveDateTime"] == pair[1]["effectiveDateTime"] {
                    assert!(
                        pair[0]["id"].as_str() < pair[1]["id"].as_str(),
                        "{query}: tie order {seen:?}"
                    );
                }
            }
        } else {
            let keys: Vec<(&str, &str)> = resources
                .iter()
                .map(|r| {
                    (
                        r["meta"]["lastUpdated"].as_str().unwrap_or(""),
                        r["id"].as_str().unwrap_or(""),
                    )
                })
                .collect();
            let mut ordered = keys.clone();
            ordered.sort();
            assert_eq!(keys, ordered, "{query}");
        }
    }

    // Everything pages the same way, with the merged Patient once, on the first page.
    let (seen, _) = walk(&app, &format!("Patient/{id}/$everything?_count=5")).await;
    assert_eq!(seen.len(), expected + 1);
    assert_eq!(seen[0], id);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), expected + 1);

    // Total is the whole result; _count=0 gives only the total.
    let total = app.get(&format!("Observation?patient={id}&_count=0")).await;
    assert_eq!(total.body["total"], expected);
    assert!(matches(&total.body).is_empty());
}

#[tokio::test]
async fn a_next_link_stays_correct_when_new_records_arrive_between_pages() {
    let gp = Upstream::start(provider("g", "gp-1", 6)).await;
    let app = TestApp::start(vec![SourceSpec::fhir(
        "gp",
        "Riverside Medical Practice",
        "A81001",
        gp.base_url(),
    )])
    .await;
    let id = app.patient_id(ANN).await;
    let first = app
        .get(&format!("Observation?patient={id}&_count=3&_sort=date"))
        .await;
    let first_ids: Vec<String> = matches(&first.body)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_owned())
        .collect();
    // A record dated before the whole first page arrives: it must not shift the next page.
    gp.add_resource(data::observation("early", "gp-1", "27113001", "2020-01-01"));
    let next = next_link(&first.body).expect("more pages");
    let (rest, _) = walk(&app, &next).await;
    for id in &first_ids {
        assert!(!rest.contains(id), "{id} returned twice");
    }
    assert_eq!(
        first_ids.len() + rest.len(),
        7,
        "every record that was there is returned: {first_ids:?} {rest:?}"
    );
}
