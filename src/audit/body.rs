//! What an audit record says ([`Body`]), in its canonical field order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub(crate) mod disclosed;

/// One source's part in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOutcome {
    /// The source id.
    pub source: String,
    /// `ok`, or what went wrong (`failed`, `timeout`, `truncated`, `dropped`).
    pub outcome: String,
}

/// One disclosed resource and why it could be disclosed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disclosure {
    /// `Type/id`. This and the agreement and rule are shared with the resource and the
    /// policy set: a whole record discloses tens of resources, each named here.
    pub reference: Arc<str>,
    /// The agreement that permitted it.
    pub agreement: Arc<str>,
    /// The rule.
    pub rule: Arc<str>,
    /// Permitted only under emergency access.
    pub emergency: bool,
}

/// What an audit record says. Field order is the canonical encoding: never reorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Body {
    /// When, Unix microseconds.
    pub recorded_us: i64,
    /// The request id.
    pub request_id: String,
    /// The caller's address.
    pub client_address: Option<String>,
    /// The user (`sub`), when a token was verified.
    pub user: Option<String>,
    /// The user's display name.
    pub user_name: Option<String>,
    /// The organisation (ODS code).
    pub org: Option<String>,
    /// The role.
    pub role: Option<String>,
    /// `staff`, `patient`, `carer`, or `unauthenticated`.
    pub caller: String,
    /// A carer's relationship to the person.
    pub relationship: Option<String>,
    /// The client certificate's subject (mutual TLS).
    pub client_certificate: Option<String>,
    /// The HTTP method.
    pub method: String,
    /// The route template (e.g. `/fhir/Patient/{id}/$everything`).
    pub route: String,
    /// The path and query as asked.
    pub target: String,
    /// PurposeOfUse.
    pub purpose: Option<String>,
    /// The break-glass reason.
    pub break_glass_reason: Option<String>,
    /// The person's gateway id.
    pub person: Option<String>,
    /// The sources asked and how each answered.
    pub sources: Vec<SourceOutcome>,
    /// What was disclosed, each with its agreement and rule. Encoded with each permit
    /// named once (the `disclosed` module); records of the earlier form read the same.
    #[serde(with = "disclosed")]
    pub disclosed: Vec<Disclosure>,
    /// How many resources were withheld.
    pub withheld: usize,
    /// The hash of the policy set in force.
    pub policy_hash: String,
    /// `success` (2xx), `refused` (4xx) or `error` (5xx).
    pub outcome: String,
    /// The HTTP status.
    pub status: u16,
    /// Why the record is flagged for IG review, besides break-glass (whose purpose is
    /// ETREAT): `consent-withdrawn-by-staff`. Absent from records written before it existed,
    /// and from the canonical encoding when there is none, so older hashes still hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    /// For a record of requests turned away by the rate limit for callers without a valid
    /// token: how many there were from this client in the window (one record per client per
    /// window, not one per request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<u64>,
    /// Who vouched for the user: the token's `iss` (or, for the IG console, the issuer of the
    /// sign-in). With `user` it names the principal, as the break-glass review compares it.
    /// Absent from records written before it existed, and from the canonical encoding when
    /// there is none, so older hashes still hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// For a break-glass review made in the IG console: which record it reviews, the outcome
    /// and the note's keyed hash (never the note). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed: Option<Reviewed>,
    /// For a write (`POST`/`PUT` of a CarePlan, Goal or Flag): what was written where, under
    /// which rule. Absent otherwise, and from the canonical encoding, so older hashes hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<Written>,
    /// `full` when the caller asked for a full look-up (`X-Concord-Lookup: full`: every
    /// source asked, the record locator ruling none out). Absent otherwise, and from the
    /// canonical encoding, so older hashes hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<String>,
}

/// A write as the audit chain keeps it. A write makes two records: its intent, committed
/// before anything is sent to the source, and its outcome, committed before the answer. An
/// intent with no outcome of the same request id is a write whose result is not known (the
/// gateway stopped in between): the source must be checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// `intent` (recorded before forwarding) or `outcome` (recorded before the answer).
    pub stage: String,
    /// `C` (create) or `U` (update).
    pub action: String,
    /// The source written to (its id), when one was chosen.
    pub source: Option<String>,
    /// `Type/{gateway id}` of the resource (of a create, once the source named its id).
    pub resource: Option<String>,
    /// The resource's new version, when the source said.
    pub version: Option<String>,
    /// SHA-256 (hex) of the bytes sent to the source.
    pub sha256: Option<String>,
    /// The agreement that permitted the write.
    pub agreement: Option<String>,
    /// Its rule.
    pub rule: Option<String>,
    /// For an update: the version the caller read (its `If-Match`), so that a write left
    /// without an outcome can be settled by reading the source (still at this version: not
    /// written). Absent otherwise, and from the canonical encoding, so older hashes hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_version: Option<String>,
}

/// Stage of a write's first record: committed before the write is forwarded.
pub const WRITE_INTENT: &str = "intent";
/// Stage of a write's second record: committed before the answer.
pub const WRITE_OUTCOME: &str = "outcome";

/// A break-glass review as the audit chain keeps it. The review counts once the console's
/// review table holds it too (see `crate::store::BreakGlassReview`); a record of one with no
/// row there was an attempt that did not take effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviewed {
    /// The reviewed record's id, `{chain}.{seq}`.
    pub record: String,
    /// `appropriate`, `not-appropriate` or `follow-up`.
    pub outcome: String,
    /// The note's keyed hash (HMAC-SHA-256 with the audit key, 128 bits, hex), when there is
    /// a note: it ties the stored note to this record without keeping a text that may name
    /// people in a log that can never be edited, and nobody without the key can test a guess.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note_digest: Option<String>,
}

/// Review reason: a staff member recorded the withdrawal of a person's objection to sharing.
pub const REVIEW_CONSENT_WITHDRAWN_BY_STAFF: &str = "consent-withdrawn-by-staff";
/// Review reason: emergency access (break-glass).
pub const REVIEW_BREAK_GLASS: &str = "break-glass";
