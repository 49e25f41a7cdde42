//! The review form's checks and who counts as the maker of an access.

use super::*;

fn form(outcome: &str, note: &str) -> Form {
    Form {
        outcome: outcome.into(),
        note: note.into(),
    }
}

#[test]
fn a_note_is_needed_unless_the_access_was_appropriate() {
    assert_eq!(
        check(&form("appropriate", "  ")),
        Ok((Outcome::Appropriate, String::new()))
    );
    for outcome in ["not-appropriate", "follow-up"] {
        assert_eq!(
            check(&form(outcome, " \r\n ")),
            Err(vec![FormError::NoteNeeded])
        );
    }
    assert_eq!(
        check(&form("follow-up", " Ask the ward.\r\nThen close. ")),
        Ok((Outcome::FollowUp, "Ask the ward.\nThen close.".into()))
    );
    for outcome in ["", "maybe", "Appropriate"] {
        assert_eq!(
            check(&form(outcome, "x")),
            Err(vec![FormError::Outcome]),
            "{outcome}"
        );
    }
}

#[test]
fn every_mistake_is_found_each_at_its_field() {
    let too_long = "x".repeat(MAX_NOTE + 1);
    let errors = check(&form("", &too_long)).map(|_| ()).expect_err("two");
    assert_eq!(errors, [FormError::Outcome, FormError::TooLong]);
    let fields: Vec<_> = errors.iter().map(|e| e.mistake().field).collect();
    assert_eq!(fields, [Some(OUTCOME_FIELD), Some(NOTE_FIELD)]);
    assert_eq!(
        check(&form("", "")),
        Err(vec![FormError::Outcome]),
        "no outcome, so no note can be asked for yet"
    );
}

#[test]
fn a_note_is_bounded_plain_text() {
    let longest = "é".repeat(MAX_NOTE);
    assert_eq!(
        check(&form("not-appropriate", &longest)),
        Ok((Outcome::NotAppropriate, longest.clone()))
    );
    assert_eq!(
        check(&form("not-appropriate", &format!("{longest}x"))),
        Err(vec![FormError::TooLong])
    );
    assert_eq!(
        check(&form("appropriate", "a\u{0}b")),
        Err(vec![FormError::Control])
    );
    assert_eq!(
        check(&form("appropriate", "a\tb")),
        Ok((Outcome::Appropriate, "a\tb".into()))
    );
}

fn session(issuer: &str, subject: &str) -> ConsoleSession {
    ConsoleSession {
        id_hash: "h".into(),
        csrf: "c".into(),
        issuer: issuer.into(),
        subject: subject.into(),
        name: Some("Dr Test".into()),
        org: Some("A81001".into()),
        role: Some("ig-lead".into()),
        choices: None,
        created_s: 0,
        last_seen_s: 0,
    }
}

fn access(issuer: Option<&str>, user: &str) -> Body {
    Body {
        user: Some(user.into()),
        user_name: Some("Someone Else".into()),
        issuer: issuer.map(str::to_owned),
        ..Body::default()
    }
}

#[test]
fn the_maker_is_the_same_issuer_and_subject_never_the_name() {
    let idp = "https://idp.example";
    assert!(made_by(&access(Some(idp), "dr-1"), &session(idp, "dr-1")));
    assert!(
        !made_by(
            &access(Some(idp), "dr-1"),
            &session("https://other.example", "dr-1")
        ),
        "the same user id at another issuer is another principal"
    );
    assert!(!made_by(&access(Some(idp), "dr-2"), &session(idp, "dr-1")));
    // Same name, another user: not the maker.
    let mut same_name = access(Some(idp), "dr-2");
    same_name.user_name = Some("Dr Test".into());
    assert!(!made_by(&same_name, &session(idp, "dr-1")));
    // Written before the issuer was recorded: the user id alone decides, so its maker is
    // refused whichever issuer they sign in with.
    assert!(made_by(
        &access(None, "dr-1"),
        &session("https://other.example", "dr-1")
    ));
    assert!(!made_by(&access(None, "dr-2"), &session(idp, "dr-1")));
}

#[test]
fn a_body_without_issuer_or_review_encodes_as_before() {
    let plain = access(None, "dr-1");
    let text = crate::audit::encode_body(&plain).expect("encodes");
    assert!(
        !text.contains("issuer") && !text.contains("reviewed"),
        "{text}"
    );
    let mut review = plain.clone();
    review.issuer = Some("https://idp.example".into());
    review.reviewed = Some(Reviewed {
        record: "c.1".into(),
        outcome: "appropriate".into(),
        note_digest: None,
    });
    let text = crate::audit::encode_body(&review).expect("encodes");
    assert!(
        text.ends_with(
            r#""issuer":"https://idp.example","reviewed":{"record":"c.1","outcome":"appropriate"}}"#
        ),
        "{text}"
    );
    let back: Body = serde_json::from_str(&text).expect("decodes");
    assert_eq!(back, review);
}
