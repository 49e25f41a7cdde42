use futures_util::TryStreamExt;

use super::{Filters, FormError, csv_batches, groups};
use crate::audit::export::csv_line;
use crate::store::{AuditColumn, AuditQuery, Columns, Projection, Record, Store};

fn run_all(query: &str) -> Result<AuditQuery, Vec<FormError>> {
    let mut q = AuditQuery::default();
    let mut errors = Vec::new();
    groups(&Filters::from_query(Some(query)), &mut q, &mut errors);
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(errors)
    }
}

fn run(query: &str) -> Result<AuditQuery, FormError> {
    run_all(query).map_err(|mut e| e.remove(0))
}

#[test]
fn bad_fields_are_refused_without_repeating_them() {
    for (query, expected) in [
        ("from=yesterday", "the date from must be"),
        ("to=2026-13-45", "the date to must be"),
        ("from=lt2026-01-01", "the date from must be"),
        ("outcome=maybe", "the outcome must be"),
        ("purpose=%3Cscript%3E", "the purpose of use must be"),
        ("review=whatever", "the review flag must be"),
        ("agreement=%22%3E%3Cb%3E", "the agreement must be"),
        ("agreement=DSA-Upper", "the agreement must be"),
    ] {
        let message = run(query).map(|_| ()).err().map(|e| e.to_string());
        assert!(
            message.as_deref().is_some_and(|m| m.starts_with(expected)),
            "{query}: {message:?}"
        );
    }
}

#[test]
fn every_mistake_is_found_in_the_form_order_each_at_its_field() {
    let errors = run_all("to=2026-13-45&user=u&outcome=maybe&agreement=X&from=yesterday")
        .map(|_| ())
        .expect_err("four mistakes");
    let fields: Vec<_> = errors.iter().map(FormError::field).collect();
    assert_eq!(
        fields,
        [
            Some("f-from"),
            Some("f-to"),
            Some("f-outcome"),
            Some("f-agreement")
        ]
    );
    assert_eq!(FormError::Nhs.field(), Some("f-nhs"));
    assert_eq!(FormError::TooLong("user id").field(), Some("f-user"));
    assert_eq!(FormError::TooLong("organisation").field(), Some("f-org"));
    assert_eq!(FormError::Cursor.field(), None, "a link, not a field");
}

#[test]
fn a_range_that_ends_before_it_starts_is_refused_at_the_date_to() {
    for query in [
        "from=2026-11-02&to=2026-11-01",
        "from=2026-11&to=2026-10-31",
    ] {
        let errors = run_all(query).map(|_| ()).expect_err(query);
        assert_eq!(errors, [FormError::Backwards], "{query}");
        assert_eq!(errors[0].field(), Some("f-to"));
        assert!(errors[0].to_string().contains("after the date from"));
    }
    for query in [
        "from=2026-11-01&to=2026-11-01",
        "from=2026-11-01&to=2026-11-02",
        "from=2026-11-01",
        "to=2026-11-01",
    ] {
        assert!(run_all(query).is_ok(), "{query}: one day or more");
    }
}

#[test]
fn good_fields_make_groups_and_blanks_mean_any() {
    let q = run(
        "user=u1&org=&outcome=4&purpose=ETREAT&review=break-glass&from=2026-11-01&to=2026-11-30",
    )
    .map_err(|e| e.to_string());
    let q = q.as_ref().map(|q| (q.equals.len(), q.recorded.len()));
    assert_eq!(q, Ok((4, 2)));
    let q = run("agreement=dsa-northshire-direct-care").map_err(|e| e.to_string());
    assert_eq!(
        q.map(|q| q.equals),
        Ok(vec![(
            AuditColumn::Agreement,
            vec!["dsa-northshire-direct-care".to_owned()]
        )])
    );
    let f = Filters::from_query(Some("nhs=943+476+5919&cursor=abc&other=x"));
    assert_eq!(f.query_string(), "nhs=943+476+5919");
}

/// 23 records of two organisations, in a real SQLite store.
async fn store_with_records(dir: &std::path::Path) -> Store {
    let url = format!("sqlite://{}/console.db", dir.display());
    let store = Store::connect(&url, 2).await.expect("store");
    store.migrate().await.expect("migrate");
    let records: Vec<Record> = (0..23_i64)
        .map(|i| Record {
            chain: "chain-a".into(),
            seq: i,
            body: format!("{{\"i\":{i}}}"),
            prev_hash: "p".into(),
            hash: format!("h{i}"),
        })
        .collect();
    store.append_audit(&records).await.expect("append");
    let projected: Vec<Projection> = (0..23_i64)
        .map(|i| Projection {
            chain: "chain-a".into(),
            seq: i,
            columns: Columns {
                recorded_us: 1_000 + i / 2,
                org: Some(if i % 3 == 0 { "RY4" } else { "A81001" }.into()),
                outcome: "success".into(),
                ..Columns::default()
            },
        })
        .collect();
    store.project_audit(&projected).await.expect("project");
    store
}

#[tokio::test]
async fn the_export_streams_every_record_of_its_scope_once_over_several_batches() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_with_records(dir.path()).await;
    let query = AuditQuery {
        equals: vec![(AuditColumn::Org, vec!["A81001".into()])],
        limit: 4,
        ..AuditQuery::default()
    };
    let everything = AuditQuery {
        limit: 100,
        ..query.clone()
    };
    let want: String = store
        .audit_search(&everything)
        .await
        .expect("search")
        .iter()
        .map(|r| format!("{}\r\n", csv_line(r)))
        .collect();
    let chunks: Vec<_> = csv_batches(store, query).try_collect().await.expect("csv");
    assert_eq!(chunks.len(), 4, "batches of 4, 4, 4 and 3");
    let got: String = chunks
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert_eq!(got.lines().count(), 15, "A81001's records: {got}");
    assert_eq!(got, want, "newest first, each once");
}
