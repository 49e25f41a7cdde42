//! Reading AuditEvent search parameters.

use super::*;

const BASE: &str = "http://gw/fhir";

fn parsed(query: &str) -> Result<Search, ApiError> {
    parse(
        query::pairs(Some(query)).expect("within limits"),
        false,
        BASE,
        (50, MAX_PAGE),
    )
}

fn us(date: &str) -> i64 {
    crate::fhir::date::parse(date).expect("date").start * 1000
}

#[test]
fn every_parameter_becomes_a_filter_group() {
    let s = parsed(
        "patient=Patient/abc&agent=dr-a,dr-b&agent-org=https://fhir.nhs.uk/Id/ods-organization-code|RY4\
         &outcome=4,error&purpose=ETREAT&_count=7",
    )
    .expect("valid");
    assert_eq!(
        s.query.equals,
        vec![
            (AuditColumn::Person, vec!["abc".to_owned()]),
            (
                AuditColumn::User,
                vec!["dr-a".to_owned(), "dr-b".to_owned()]
            ),
            (AuditColumn::Org, vec!["RY4".to_owned()]),
            (
                AuditColumn::Outcome,
                vec!["refused".to_owned(), "error".to_owned()]
            ),
            (AuditColumn::Purpose, vec!["ETREAT".to_owned()]),
        ]
    );
    assert_eq!(s.patients, vec![vec!["abc".to_owned()]]);
    assert_eq!(s.count, 7);
    assert_eq!(s.used.pairs.len(), 6);
}

#[test]
fn dates_follow_fhir_precision_and_prefixes() {
    let day = (us("2026-11-25"), us("2026-11-26"));
    let s = parsed("date=2026-11-25").expect("eq");
    assert_eq!(
        s.query.recorded,
        vec![vec![AuditSpan {
            from: Some(day.0),
            to: Some(day.1)
        }]]
    );
    let s = parsed("date=ge2026-11-25&date=lt2026-11-25T10:00:00Z").expect("range");
    assert_eq!(
        s.query.recorded,
        vec![
            vec![AuditSpan {
                from: Some(day.0),
                to: None
            }],
            vec![AuditSpan {
                from: None,
                to: Some(us("2026-11-25T10:00:00Z"))
            }],
        ]
    );
    let s = parsed("date=gt2026-11-25&date=le2026-12").expect("gt le");
    assert_eq!(s.query.recorded[0][0].from, Some(day.1));
    assert_eq!(s.query.recorded[1][0].to, Some(us("2027-01")));
    let s = parsed("date=ne2026").expect("ne");
    assert_eq!(s.query.recorded[0].len(), 2);
}

#[test]
fn bad_values_are_400() {
    for bad in [
        "date=yesterday",
        "date=ap2026-01-01",
        "date=2026-02-30",
        "_count=-1",
        "_count=many",
        "outcome=12",
        "outcome=ok",
        "outcome=http://other|0",
        "agent-org=http://other|RY4",
        "agent=",
        "agent=a,,b",
        "purpose=http://other|TREAT",
        "patient=Group/x",
        "patient=a b",
        "_sort=date",
        "_cursor=not-a-cursor",
    ] {
        let e = parsed(bad)
            .err()
            .unwrap_or_else(|| panic!("{bad} accepted"));
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(
        parsed("_format=xml").err().map(|e| e.status),
        Some(StatusCode::NOT_ACCEPTABLE)
    );
}

#[test]
fn count_is_capped() {
    assert_eq!(parsed("_count=100000").expect("capped").count, MAX_PAGE);
    assert_eq!(parsed("").expect("default").count, 50);
}

#[test]
fn unknown_parameters_follow_prefer_handling() {
    let lenient = parsed("colour=blue&agent=a").expect("lenient");
    assert_eq!(lenient.used.ignored, vec!["colour"]);
    assert!(lenient.used.ignored_notice().is_some());
    let strict = parse(
        query::pairs(Some("colour=blue")).expect("within limits"),
        true,
        BASE,
        (50, MAX_PAGE),
    );
    assert_eq!(
        strict.err().map(|e| e.status),
        Some(StatusCode::BAD_REQUEST)
    );
}

#[test]
fn cursors_round_trip_and_are_not_repeated_in_links() {
    let at = AuditPosition {
        recorded_us: 1_764_064_800_123_456,
        chain: "0b0e4c1c-4a57-4c4e-9c1a-3d2b1f0e9a77".into(),
        seq: 12,
    };
    let raw = encode_cursor(&at);
    assert!(
        raw.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(decode_cursor(&raw), Some(at));
    let s = parsed(&format!("_cursor={raw}&agent=a")).expect("cursor");
    assert!(s.cursor.is_some());
    assert!(s.used.pairs.iter().all(|(n, _)| n != CURSOR));
    for bad in ["", "x", "MTIz", "YS5iLmM"] {
        assert_eq!(decode_cursor(bad), None, "{bad}");
    }
}
