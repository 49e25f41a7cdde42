//! The break-glass review (issue 16, item 4): the queue of emergency accesses (purpose
//! `ETREAT`) not yet reviewed, oldest first; the review form; the list of reviews made.
//!
//! Who sees and reviews what is the audit search's rule (`super::audit`): a region-wide role
//! every access, anyone else those made by their own organisation's staff. Nobody reviews
//! their own access: the record's issuer and user id are compared with the session's issuer
//! and subject (never the name); a record written before the issuer was recorded is compared
//! on the user id alone, so its maker is refused too (another reviewer can still review it).
//!
//! **Order of writes.** A review is first an audit record in the chain (route
//! `/console/review/{id}`, the reviewer as user, the reviewed record's id, the outcome and
//! the note's keyed hash, never the note), then a row in `break_glass_reviews` naming that
//! record, keyed by the reviewed record so that the first review wins. A review counts only
//! when its row is there. If the process dies between the two writes, or the row cannot be
//! kept, or another review's row came first, the chain record stays as an *attempt*: the
//! access is still in the queue (or shows the review that won), which is the safe reading for
//! an IG lead: an access is never shown as reviewed when no review is kept. The row is never
//! re-derived from the chain, which does not hold the note.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::audit::{actor, sees_everything, staff_in_scope};
use super::form_errors::Mistake;
use super::review_pages::{self, Access, Done};
use super::{Console, ConsoleError, session};
use crate::audit::{Body, Reviewed, Row, event};
use crate::store::{AuditPosition, BreakGlassReview, ConsoleSession, ReviewScope};

/// Accesses or reviews per page.
pub(super) const PAGE: usize = 50;
/// The latest reviews the queue's page shows.
const RECENT: u32 = 5;
/// The longest note, in characters.
pub(super) const MAX_NOTE: usize = 2_000;
/// The purpose of use of emergency access.
const EMERGENCY: &str = crate::policy::engine::EMERGENCY;
/// Microseconds in a day.
const DAY_US: i64 = 86_400_000_000;

const QUEUE_ROUTE: &str = "/console/review";
const REVIEW_ROUTE: &str = "/console/review/{id}";
const REVIEWED_ROUTE: &str = "/console/reviewed";

/// What a reviewer concludes about an emergency access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The access was justified.
    Appropriate,
    /// It was not.
    NotAppropriate,
    /// It needs looking into further.
    FollowUp,
}

impl Outcome {
    /// Every outcome, in the order the form offers them.
    pub(super) const ALL: [Outcome; 3] = [
        Outcome::Appropriate,
        Outcome::NotAppropriate,
        Outcome::FollowUp,
    ];

    /// The code kept in the store and the chain.
    pub(super) fn code(self) -> &'static str {
        match self {
            Outcome::Appropriate => "appropriate",
            Outcome::NotAppropriate => "not-appropriate",
            Outcome::FollowUp => "follow-up",
        }
    }

    /// As people read it.
    pub(super) fn label(self) -> &'static str {
        match self {
            Outcome::Appropriate => "Appropriate",
            Outcome::NotAppropriate => "Not appropriate",
            Outcome::FollowUp => "Follow-up needed",
        }
    }

    /// The outcome of a code.
    pub(super) fn parse(code: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.code() == code)
    }

    /// The label of a stored code (the code itself if it is none of ours).
    pub(super) fn label_of(code: &str) -> &str {
        match Outcome::parse(code) {
            Some(o) => o.label(),
            None => code,
        }
    }
}

/// The review form as filled in, shown again when it must be corrected.
#[derive(Debug, Clone, Default)]
pub(super) struct Form {
    pub(super) outcome: String,
    pub(super) note: String,
}

/// Why a filled-in form was not taken: said above the form again, with status 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FormError {
    /// No outcome, or one that is not offered.
    #[error("choose whether the access was appropriate, not appropriate or needs follow-up")]
    Outcome,
    /// "Not appropriate" and "follow-up" need a note saying why.
    #[error("write a note: it is needed when an access was not appropriate or needs follow-up")]
    NoteNeeded,
    /// Longer than [`MAX_NOTE`].
    #[error("the note must be at most 2,000 characters")]
    TooLong,
    /// Control characters other than line ends and tabs.
    #[error("the note must be plain text")]
    Control,
}

/// The outcome and the note of a filled-in form: line ends made `\n`, surrounding blanks
/// trimmed. A note is needed for "not appropriate" and "follow-up" (what was wrong, what
/// happens next); "appropriate" may have none. Every mistake is returned, the outcome's
/// first (the form's order).
pub(super) fn check(form: &Form) -> Result<(Outcome, String), Vec<FormError>> {
    let mut errors = Vec::new();
    let outcome = Outcome::parse(&form.outcome);
    if outcome.is_none() {
        errors.push(FormError::Outcome);
    }
    let note = form.note.replace("\r\n", "\n").replace('\r', "\n");
    let note = note.trim().to_owned();
    if note.chars().count() > MAX_NOTE {
        errors.push(FormError::TooLong);
    } else if note
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        errors.push(FormError::Control);
    } else if note.is_empty() && outcome.is_some_and(|o| o != Outcome::Appropriate) {
        errors.push(FormError::NoteNeeded);
    }
    match outcome {
        Some(outcome) if errors.is_empty() => Ok((outcome, note)),
        _ => Err(errors),
    }
}

impl FormError {
    /// The mistake as the form shows it, at its field: the outcome's first radio, or the
    /// note.
    pub(super) fn mistake(&self) -> Mistake {
        match self {
            FormError::Outcome => Mistake::at(OUTCOME_FIELD, self),
            FormError::NoteNeeded | FormError::TooLong | FormError::Control => {
                Mistake::at(NOTE_FIELD, self)
            }
        }
    }
}

/// The id of the outcome's first radio, where its mistake is shown and linked to.
pub(super) const OUTCOME_FIELD: &str = "f-outcome-appropriate";
/// The id of the note.
pub(super) const NOTE_FIELD: &str = "f-note";

/// True when the session's user made the access `b` records: the same issuer and user id. A
/// record without an issuer (written before it was recorded) matches on the user id alone.
pub(super) fn made_by(b: &Body, session: &ConsoleSession) -> bool {
    b.user.as_deref() == Some(session.subject.as_str())
        && b.issuer.as_deref().is_none_or(|i| i == session.issuer)
}

/// Whether a stored review says what its record in the chain says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// The record names the same reviewer, access, outcome and note.
    Matches,
    /// It does not: the stored review was changed after it was made.
    Differs,
    /// The record is not in the store (it may still wait in a spool).
    Missing,
}

/// Where an emergency access stands.
#[derive(Debug, Clone)]
pub(super) enum Standing {
    /// Waiting for review; `own` when the signed-in user made it, who may not review it.
    Waiting { own: bool, overdue: bool },
    /// Reviewed.
    Reviewed(Box<BreakGlassReview>, Check),
}

/// Why a review is refused before the form is looked at.
enum Refused {
    /// No emergency access with this id within the user's scope.
    NotFound,
    /// The user made it.
    Own,
    /// It has a review already.
    Reviewed(Box<BreakGlassReview>),
}

impl Console {
    /// The accesses a session's user may review.
    pub(super) fn review_scope(&self, session: &ConsoleSession) -> ReviewScope {
        if sees_everything(self, session) {
            ReviewScope::Everything
        } else {
            ReviewScope::Orgs(session.org.iter().cloned().collect())
        }
    }

    /// Accesses made before this time (Unix microseconds) are overdue for review.
    pub(super) fn overdue_before_us(&self, now_us: i64) -> i64 {
        let days = i64::from(self.0.config.review_overdue_days);
        now_us.saturating_sub(days.saturating_mul(DAY_US))
    }

    /// The emergency access `id` names, within the session's scope.
    async fn emergency(
        &self,
        session: &ConsoleSession,
        chain: &str,
        seq: i64,
    ) -> Result<Option<(Row, Body)>, ConsoleError> {
        self.0.audit.settle().await;
        let row = self.0.store.audit_record(chain, seq).await?;
        let row = row.filter(|r| {
            r.columns.purpose.as_deref() == Some(EMERGENCY)
                && staff_in_scope(self, session, r.columns.org.as_deref())
        });
        Ok(row.and_then(|row| {
            let body = serde_json::from_str(&row.record.body).ok()?;
            Some((row, body))
        }))
    }

    /// Where the emergency access `row` (whose body is `body`) stands for `session`.
    pub(super) async fn standing(
        &self,
        session: &ConsoleSession,
        row: &Row,
        body: &Body,
    ) -> Result<Standing, ConsoleError> {
        let (chain, seq) = (&row.record.chain, row.record.seq);
        match self.0.store.break_glass_review(chain, seq).await? {
            Some(review) => {
                let check = self.check_review(&review).await?;
                Ok(Standing::Reviewed(Box::new(review), check))
            }
            None => Ok(Standing::Waiting {
                own: made_by(body, session),
                overdue: row.columns.recorded_us
                    < self.overdue_before_us(jiff::Timestamp::now().as_microsecond()),
            }),
        }
    }

    /// What a review's record in the chain should say about it.
    fn reviewed_of(&self, chain: &str, seq: i64, outcome: &str, note: &str) -> Reviewed {
        Reviewed {
            record: event::id(chain, seq),
            outcome: outcome.to_owned(),
            note_digest: (!note.is_empty()).then(|| self.0.audit.keyed_digest(note)),
        }
    }

    /// Whether a stored review says what its record in the chain says.
    async fn check_review(&self, review: &BreakGlassReview) -> Result<Check, ConsoleError> {
        let Some(row) = self
            .0
            .store
            .audit_record(&review.review_chain, review.review_seq)
            .await?
        else {
            return Ok(Check::Missing);
        };
        let Ok(body) = serde_json::from_str::<Body>(&row.record.body) else {
            return Ok(Check::Differs);
        };
        let expected = self.reviewed_of(&review.chain, review.seq, &review.outcome, &review.note);
        let same = body.reviewed.as_ref() == Some(&expected)
            && body.user.as_deref() == Some(review.reviewer_subject.as_str())
            && body.issuer.as_deref() == Some(review.reviewer_issuer.as_str())
            && body.recorded_us == review.reviewed_us;
        Ok(if same { Check::Matches } else { Check::Differs })
    }

    /// A console event of the review by `session`, at `target`.
    fn review_event(
        &self,
        headers: &HeaderMap,
        method: &str,
        route: &'static str,
        target: Option<String>,
        session: &ConsoleSession,
        status: StatusCode,
    ) -> Body {
        let mut body = self.event(headers, method, route, Some(&actor(session)), status);
        body.issuer = Some(session.issuer.clone());
        if let Some(target) = target {
            body.target = target;
        }
        body
    }

    /// The NHS numbers of the people `rows` are about, by gateway id.
    async fn people(&self, rows: &[&Row]) -> Result<HashMap<String, String>, ConsoleError> {
        let mut out = HashMap::new();
        for person in rows.iter().filter_map(|r| r.columns.person.as_deref()) {
            if out.contains_key(person) {
                continue;
            }
            let Ok(id) = uuid::Uuid::parse_str(person) else {
                continue;
            };
            if let Some(p) = self.0.store.person_by_id(id).await? {
                out.insert(person.to_owned(), p.nhs_number);
            }
        }
        Ok(out)
    }

    /// How many emergency accesses within the session's scope wait for review, and how many
    /// of them are overdue; `None` (logged) when the store cannot say, so the home page still
    /// shows.
    pub(super) async fn waiting_for_review(&self, session: &ConsoleSession) -> Option<(i64, i64)> {
        // The count includes the emergency accesses already answered (their records are
        // projected for search just after they are committed).
        self.0.audit.settle().await;
        let now = jiff::Timestamp::now().as_microsecond();
        let scope = self.review_scope(session);
        let counted = self
            .0
            .store
            .break_glass_waiting(&scope, self.overdue_before_us(now))
            .await;
        counted
            .inspect_err(
                |e| tracing::error!(error = %e, "the break-glass queue could not be counted"),
            )
            .ok()
    }

    /// Reviews made, with the accesses they reviewed, as the pages show them.
    async fn done(&self, found: &[(BreakGlassReview, Row)]) -> Result<Vec<Done>, ConsoleError> {
        let rows: Vec<&Row> = found.iter().map(|(_, row)| row).collect();
        let people = self.people(&rows).await?;
        let now = jiff::Timestamp::now().as_microsecond();
        Ok(found
            .iter()
            .map(|(review, row)| {
                let body: Body = serde_json::from_str(&row.record.body).unwrap_or_default();
                let access = Access::of(row, &body, &people, false, i64::MIN, now);
                Done::of(review, access)
            })
            .collect())
    }

    /// Where the record `row` stands as an emergency access for `session`, or `None` when it
    /// is not one. For the audit record's page.
    pub(super) async fn standing_of(
        &self,
        session: &ConsoleSession,
        row: &Row,
    ) -> Result<Option<Standing>, ConsoleError> {
        if row.columns.purpose.as_deref() != Some(EMERGENCY) {
            return Ok(None);
        }
        let body: Body = serde_json::from_str(&row.record.body).unwrap_or_default();
        self.standing(session, row, &body).await.map(Some)
    }
}

/// The cursor of a query string, if any, and whether it is one this console made.
fn cursor(raw: Option<&str>) -> Result<Option<AuditPosition>, ()> {
    let value = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty());
    match value {
        None => Ok(None),
        Some(v) => AuditPosition::from_cursor(&v).map(Some).ok_or(()),
    }
}

/// `GET /console/review`: the emergency accesses within the user's scope that wait for
/// review, oldest first, a page at a time.
pub(super) async fn queue(
    State(console): State<Console>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let path = &console.0.path;
    let region = sees_everything(&console, &session);
    let scope = console.review_scope(&session);
    let now = jiff::Timestamp::now().as_microsecond();
    let overdue_before = console.overdue_before_us(now);
    let days = console.0.config.review_overdue_days;
    let (status, html) = match cursor(raw.as_deref()) {
        Err(()) => (
            StatusCode::BAD_REQUEST,
            review_pages::queue(path, &session, region, days, None),
        ),
        Ok(after) => {
            let page = async {
                console.0.audit.settle().await;
                let limit = u32::try_from(PAGE + 1).unwrap_or(u32::MAX);
                let store = &console.0.store;
                let mut rows = store
                    .break_glass_queue(&scope, after.as_ref(), limit)
                    .await?;
                let mut next = None;
                if rows.len() > PAGE {
                    rows.truncate(PAGE);
                    next = rows.last().map(|r| position(r).cursor());
                }
                let counts = store.break_glass_waiting(&scope, overdue_before).await?;
                let people = console.people(&rows.iter().collect::<Vec<_>>()).await?;
                let listed: Vec<Access> = rows
                    .iter()
                    .map(|row| {
                        let body: Body = serde_json::from_str(&row.record.body).unwrap_or_default();
                        let own = made_by(&body, &session);
                        Access::of(row, &body, &people, own, overdue_before, now)
                    })
                    .collect();
                let latest = store.break_glass_reviews(&scope, None, RECENT).await?;
                let recent = console.done(&latest).await?;
                Ok::<_, ConsoleError>((listed, next, counts, recent))
            };
            match page.await {
                Ok((listed, next, counts, recent)) => {
                    let shown = review_pages::Queue {
                        rows: &listed,
                        recent: &recent,
                        next: next.as_deref(),
                        waiting: counts.0,
                        overdue: counts.1,
                    };
                    let html = review_pages::queue(path, &session, region, days, Some(shown));
                    (StatusCode::OK, html)
                }
                Err(e) => return console.refusal(&e),
            }
        }
    };
    let body = console.review_event(&headers, "GET", QUEUE_ROUTE, None, &session, status);
    if let Err(e) = console.append(&body).await {
        return console.refusal(&e);
    }
    console.page(status, html)
}

/// `GET /console/reviewed`: the reviews of emergency accesses within the user's scope, newest
/// first, a page at a time.
pub(super) async fn reviewed(
    State(console): State<Console>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let path = &console.0.path;
    let region = sees_everything(&console, &session);
    let scope = console.review_scope(&session);
    let (status, html) = match cursor(raw.as_deref()) {
        Err(()) => (
            StatusCode::BAD_REQUEST,
            review_pages::reviewed(path, &session, region, &[], None, true),
        ),
        Ok(before) => {
            let page = async {
                console.0.audit.settle().await;
                let limit = u32::try_from(PAGE + 1).unwrap_or(u32::MAX);
                let mut found = console
                    .0
                    .store
                    .break_glass_reviews(&scope, before.as_ref(), limit)
                    .await?;
                let mut next = None;
                if found.len() > PAGE {
                    found.truncate(PAGE);
                    next = found.last().map(|(r, _)| {
                        AuditPosition {
                            recorded_us: r.reviewed_us,
                            chain: r.chain.clone(),
                            seq: r.seq,
                        }
                        .cursor()
                    });
                }
                Ok::<_, ConsoleError>((console.done(&found).await?, next))
            };
            match page.await {
                Ok((done, next)) => (
                    StatusCode::OK,
                    review_pages::reviewed(path, &session, region, &done, next.as_deref(), false),
                ),
                Err(e) => return console.refusal(&e),
            }
        }
    };
    let body = console.review_event(&headers, "GET", REVIEWED_ROUTE, None, &session, status);
    if let Err(e) = console.append(&body).await {
        return console.refusal(&e);
    }
    console.page(status, html)
}

/// A row's place in oldest-first order.
fn position(row: &Row) -> AuditPosition {
    AuditPosition {
        recorded_us: row.columns.recorded_us,
        chain: row.record.chain.clone(),
        seq: row.record.seq,
    }
}

/// What the review of one access found before the form: the access, or why not.
async fn reviewable(
    console: &Console,
    session: &ConsoleSession,
    id: &str,
) -> Result<Result<(Row, Body), Refused>, ConsoleError> {
    let Some((chain, seq)) = event::parse_id(id) else {
        return Ok(Err(Refused::NotFound));
    };
    let Some((row, body)) = console.emergency(session, chain, seq).await? else {
        return Ok(Err(Refused::NotFound));
    };
    Ok(match console.standing(session, &row, &body).await? {
        Standing::Reviewed(review, _) => Err(Refused::Reviewed(review)),
        Standing::Waiting { own: true, .. } => Err(Refused::Own),
        Standing::Waiting { own: false, .. } => Ok((row, body)),
    })
}

/// The page and status of a refusal.
fn refusal_page(console: &Console, refused: &Refused, id: &str) -> (StatusCode, String) {
    let path = &console.0.path;
    match refused {
        Refused::NotFound => (StatusCode::NOT_FOUND, review_pages::not_found(path)),
        Refused::Own => (StatusCode::FORBIDDEN, review_pages::own(path, id)),
        Refused::Reviewed(review) => (
            StatusCode::CONFLICT,
            review_pages::already(path, id, review),
        ),
    }
}

/// The form page of an access, filled as `form`, with its mistakes.
async fn form_page(
    console: &Console,
    session: &ConsoleSession,
    row: &Row,
    body: &Body,
    form: &Form,
    errors: &[FormError],
) -> Result<String, ConsoleError> {
    let people = console.people(&[row]).await?;
    let now = jiff::Timestamp::now().as_microsecond();
    let access = Access::of(
        row,
        body,
        &people,
        false,
        console.overdue_before_us(now),
        now,
    );
    Ok(review_pages::form(
        &console.0.path,
        &access,
        form,
        errors,
        &session.csrf,
    ))
}

/// `GET /console/review/{chain}.{seq}`: one emergency access and the form to review it;
/// 404 outside the user's scope (as for one that does not exist, or is not an emergency
/// access), 403 for the user's own access, 409 once it is reviewed.
pub(super) async fn form(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let found = reviewable(&console, &session, &id).await;
    let (status, html, person, target) = match found {
        Ok(Ok((row, body))) => {
            match form_page(&console, &session, &row, &body, &Form::default(), &[]).await {
                Ok(html) => (
                    StatusCode::OK,
                    html,
                    body.person.clone(),
                    target_of(&id, Some(&row)),
                ),
                Err(e) => return console.refusal(&e),
            }
        }
        Ok(Err(refused)) => {
            let (status, html) = refusal_page(&console, &refused, &id);
            (status, html, None, target_of(&id, None))
        }
        Err(e) => return console.refusal(&e),
    };
    let mut record = console.review_event(&headers, "GET", REVIEW_ROUTE, target, &session, status);
    record.person = person;
    if let Err(e) = console.append(&record).await {
        return console.refusal(&e);
    }
    console.page(status, html)
}

/// The path an audit record of the review names: the record's id when it is one.
fn target_of(id: &str, row: Option<&Row>) -> Option<String> {
    match row {
        Some(row) => Some(format!(
            "/console/review/{}",
            event::id(&row.record.chain, row.record.seq)
        )),
        None => event::parse_id(id)
            .map(|(chain, seq)| format!("/console/review/{}", event::id(chain, seq))),
    }
}

/// `POST /console/review/{chain}.{seq}`: records a review (with the form's token), first in
/// the audit chain, then in the store; the answer sends the browser to the review on the
/// record's page.
/// Refused as the form is (404, 403, 409), with 400 and the form again when it is not filled
/// in right, and with 403 and nothing recorded at all without the session's form token.
pub(super) async fn submit(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let fields = session::form(&body);
    if !session::csrf_matches(&session.csrf, &fields) {
        return console.refusal(&ConsoleError::Csrf);
    }
    let form = Form {
        outcome: fields.get("outcome").cloned().unwrap_or_default(),
        note: fields.get("note").cloned().unwrap_or_default(),
    };
    let (row, access) = match reviewable(&console, &session, &id).await {
        Ok(Ok(found)) => found,
        Ok(Err(refused)) => {
            let (status, html) = refusal_page(&console, &refused, &id);
            let record = console.review_event(
                &headers,
                "POST",
                REVIEW_ROUTE,
                target_of(&id, None),
                &session,
                status,
            );
            if let Err(e) = console.append(&record).await {
                return console.refusal(&e);
            }
            return console.page(status, html);
        }
        Err(e) => return console.refusal(&e),
    };
    let target = target_of(&id, Some(&row));
    let (outcome, note) = match check(&form) {
        Ok(checked) => checked,
        Err(errors) => {
            let html = match form_page(&console, &session, &row, &access, &form, &errors).await {
                Ok(html) => html,
                Err(e) => return console.refusal(&e),
            };
            let status = StatusCode::BAD_REQUEST;
            let mut record =
                console.review_event(&headers, "POST", REVIEW_ROUTE, target, &session, status);
            record.person = access.person.clone();
            if let Err(e) = console.append(&record).await {
                return console.refusal(&e);
            }
            return console.page(status, html);
        }
    };
    let (chain, seq) = (row.record.chain.as_str(), row.record.seq);
    // First the review's record in the chain: no record, no review.
    let mut record = console.review_event(
        &headers,
        "POST",
        REVIEW_ROUTE,
        target.clone(),
        &session,
        StatusCode::SEE_OTHER,
    );
    record.person = access.person.clone();
    record.reviewed = Some(console.reviewed_of(chain, seq, outcome.code(), &note));
    let kept = match console.0.audit.append(&record).await {
        Ok(kept) => kept,
        Err(e) => return console.refusal(&ConsoleError::Audit(e.to_string())),
    };
    // Then the row that makes it count. Between the two, the chain record is an attempt: if
    // the process dies here the access stays in the queue (see the module's comment).
    let review = BreakGlassReview {
        chain: chain.to_owned(),
        seq,
        outcome: outcome.code().to_owned(),
        note,
        reviewer_issuer: session.issuer.clone(),
        reviewer_subject: session.subject.clone(),
        reviewer_name: session.name.clone(),
        reviewer_role: session.role.clone(),
        reviewer_org: session.org.clone(),
        reviewed_us: record.recorded_us,
        review_chain: kept.chain,
        review_seq: kept.seq,
    };
    let stored = console.0.store.insert_break_glass_review(&review).await;
    let status = match stored {
        Ok(true) => {
            return console.redirect(&format!(
                "/audit/{}#break-glass-review",
                event::id(chain, seq)
            ));
        }
        // Another review of the same access was kept first: this one was an attempt.
        Ok(false) => StatusCode::CONFLICT,
        Err(e) => {
            tracing::error!(error = %e, "a break-glass review could not be kept");
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    // Say in the chain that the attempt did not take effect.
    let after = console.review_event(&headers, "POST", REVIEW_ROUTE, target, &session, status);
    if let Err(e) = console.append(&after).await {
        return console.refusal(&e);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return console.page(status, review_pages::not_kept(&console.0.path, &id));
    }
    match console.0.store.break_glass_review(chain, seq).await {
        Ok(Some(winner)) => console.page(
            StatusCode::CONFLICT,
            review_pages::already(&console.0.path, &id, &winner),
        ),
        Ok(None) => console.refusal(&ConsoleError::Audit(
            "the review was neither kept nor found".into(),
        )),
        Err(e) => console.refusal(&e.into()),
    }
}

#[cfg(test)]
mod tests;
