//! The one rule of who reads which audit records.

use super::*;
use crate::audit::Disclosure;

fn readers() -> Readers {
    Readers::new(
        vec!["icb-ig".into()],
        vec![
            ("gp".into(), "A81001".into()),
            ("gp-branch".into(), "A81001".into()),
            ("community".into(), "RY4".into()),
        ],
    )
}

fn record(org: &str, references: &[&str]) -> Body {
    Body {
        org: Some(org.into()),
        disclosed: references
            .iter()
            .map(|r| Disclosure {
                reference: (*r).into(),
                agreement: "dsa".into(),
                rule: "r".into(),
                emergency: false,
            })
            .collect(),
        ..Body::default()
    }
}

#[test]
fn a_reader_sees_their_staff_and_their_data_and_a_region_role_everything() {
    let r = readers();
    let gp_lead = (Some("ig-lead"), Some("A81001"));
    assert_eq!(
        r.scope(gp_lead.0, gp_lead.1),
        Some(AuditScope {
            orgs: vec!["A81001".into()],
            sources: vec!["gp".into(), "gp-branch".into()],
        })
    );
    assert_eq!(r.scope(Some("icb-ig"), Some("X24")), None);
    assert_eq!(r.scope(Some("ig-lead"), None), Some(AuditScope::default()));

    let own_staff = record("A81001", &[]);
    let others_reading_ours = record("RY4", &["Condition/gp-branch.c1"]);
    let others_reading_theirs = record("RY4", &["Condition/community.c1"]);
    assert!(r.may_read(gp_lead.0, gp_lead.1, &own_staff));
    assert!(r.may_read(gp_lead.0, gp_lead.1, &others_reading_ours));
    assert!(!r.may_read(gp_lead.0, gp_lead.1, &others_reading_theirs));
    assert!(r.may_read(Some("icb-ig"), None, &others_reading_theirs));
    assert!(!r.may_read(Some("ig-lead"), None, &own_staff));
    // A reference that names no source (no `.` in its id) discloses nobody's data.
    assert!(!r.may_read(gp_lead.0, gp_lead.1, &record("RY4", &["Patient/gp"])));
}

#[test]
fn the_source_of_a_reference_is_the_id_before_its_first_dot() {
    for (reference, source) in [
        ("Observation/gp.obs-1", Some("gp")),
        ("Observation/gp.obs.1", Some("gp")),
        ("Patient/community.p.x", Some("community")),
        ("Patient/0b6d", None),
        ("Patient/.x", None),
        ("no-slash.x", None),
        ("a/b/c.d", Some("b/c")),
    ] {
        assert_eq!(disclosing_source(reference), source, "{reference}");
    }
}
