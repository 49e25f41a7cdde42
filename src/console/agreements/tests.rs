use jiff::civil::{Date, date};

use super::{Flag, flags};
use crate::policy::{Agreement, Audience, Status};

fn agreement(status: Status, from: Date, until: Date, review: Option<Date>) -> Agreement {
    Agreement {
        id: "dsa-test".into(),
        id_line: 1,
        title: "Test".into(),
        version: "1".into(),
        status,
        access: Audience::Staff,
        legal_basis: vec!["test".into()],
        valid_from: from,
        valid_until: until,
        review_by: review,
        owner: "tests".into(),
        disclosers: vec!["A81001".into()],
        recipients: vec!["A81001".into()],
        rules: Vec::new(),
    }
}

const TODAY: Date = date(2026, 11, 30);

#[test]
fn an_agreement_lapsing_within_the_window_is_flagged_with_its_days() {
    let active = |until| agreement(Status::Active, date(2026, 1, 1), until, None);
    for (until, window, want) in [
        (date(2026, 12, 10), 30, Some(10)),
        (date(2026, 12, 30), 30, Some(30)),
        (date(2026, 12, 31), 30, None),
        (TODAY, 30, Some(0)),
        (date(2026, 12, 10), 5, None),
        (date(2026, 12, 1), 0, None),
        (TODAY, 0, Some(0)),
    ] {
        let got = flags(&active(until), TODAY, window);
        let want = match want {
            Some(days) => Flag::Lapsing { on: until, days },
            None => Flag::InForce,
        };
        assert_eq!(got, vec![want], "until {until}, window {window}");
    }
}

#[test]
fn lapsed_not_yet_valid_and_inactive_agreements_are_not_in_force() {
    let lapsed = agreement(Status::Active, date(2025, 1, 1), date(2026, 11, 29), None);
    assert_eq!(
        flags(&lapsed, TODAY, 30),
        vec![Flag::Lapsed(date(2026, 11, 29))]
    );
    let early = agreement(Status::Active, date(2026, 12, 1), date(2027, 12, 1), None);
    assert_eq!(
        flags(&early, TODAY, 30),
        vec![Flag::NotYetValid(date(2026, 12, 1))]
    );
    let suspended = agreement(Status::Suspended, date(2025, 1, 1), date(2026, 12, 5), None);
    assert_eq!(
        flags(&suspended, TODAY, 30),
        vec![Flag::NotActive(Status::Suspended)],
        "a suspended agreement is not reported as lapsing"
    );
    for f in [&flags(&lapsed, TODAY, 30)[0], &flags(&early, TODAY, 30)[0]] {
        assert!(f.needs_attention(), "{f:?}");
    }
    assert!(!Flag::InForce.needs_attention());
    assert!(!Flag::NotActive(Status::Retired).needs_attention());
    assert!(!Flag::NotActive(Status::Suspended).needs_attention());
}

#[test]
fn a_review_date_in_the_past_is_overdue_unless_retired() {
    let due = date(2026, 11, 29);
    let a = agreement(
        Status::Active,
        date(2026, 1, 1),
        date(2027, 12, 31),
        Some(due),
    );
    assert_eq!(
        flags(&a, TODAY, 30),
        vec![Flag::InForce, Flag::ReviewOverdue(due)]
    );
    let today_due = agreement(
        Status::Active,
        date(2026, 1, 1),
        date(2027, 12, 31),
        Some(TODAY),
    );
    assert_eq!(flags(&today_due, TODAY, 30), vec![Flag::InForce]);
    let retired = agreement(
        Status::Retired,
        date(2026, 1, 1),
        date(2027, 12, 31),
        Some(due),
    );
    assert_eq!(
        flags(&retired, TODAY, 30),
        vec![Flag::NotActive(Status::Retired)]
    );
}
