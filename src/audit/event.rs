//! Audit records as FHIR R4 AuditEvent resources, shaped after IHE Basic Audit Log Patterns
//! (BALP): a RESTful event (`type` `rest`, `subtype` the FHIR interaction), the user as the
//! requesting agent and their organisation as an agent of its own, the gateway as the source,
//! and as entities the person, the query and every resource disclosed with the agreement and
//! rule that permitted it.
//!
//! Two views: [`View::Full`] for information-governance leads, with everything the record
//! holds; [`View::Person`] for the person the record is about, without staff's personal
//! details (user id, name, address, certificate) and without the gateway's internals (chain,
//! hashes, sources, the query text, the break-glass reason, the withheld count).
//!
//! What FHIR has no element for is carried in extensions under [`EXTENSION_BASE`].

use base64::Engine;
use serde_json::{Map, Value, json};

use super::{Body, Record};
use crate::fhir::ODS_SYSTEM;

/// The URL of a Concord AuditEvent extension: [`EXTENSION_BASE`] followed by its name.
macro_rules! extension_url {
    ($name:literal) => {
        concat!("https://concord.invalid/fhir/StructureDefinition/", $name)
    };
}

/// Canonical base of the AuditEvent extensions Concord defines.
pub const EXTENSION_BASE: &str = extension_url!("");

/// Where the record sits in its hash chain (complex: `chain` valueString, `position`
/// valueDecimal (a whole number: R4 has no 64-bit integer), `previousHash` and `hash`
/// valueString, lower-case hex HMAC-SHA-256).
pub const EXT_CHAIN: &str = extension_url!("audit-chain");
/// The hash of the policy set in force (valueString, hex SHA-256).
pub const EXT_POLICY_HASH: &str = extension_url!("audit-policy-set-hash");
/// The reason given for emergency access (valueString).
pub const EXT_BREAK_GLASS_REASON: &str = extension_url!("audit-break-glass-reason");
/// How many resources the agreements withheld (valueUnsignedInt).
pub const EXT_WITHHELD: &str = extension_url!("audit-withheld-count");
/// How one source answered, repeated per source (complex: `source` valueString, the source
/// id; `outcome` valueCode: `ok`, `identified`, `not-known`, `failed`, `timeout`,
/// `truncated`, `dropped`; for a write also `pending`, `conflict`, `refused`, and for a
/// conditional create `exists` (its one match, nothing written) and `ambiguous`).
pub const EXT_SOURCE_OUTCOME: &str = extension_url!("audit-source-outcome");
/// On the requesting agent: the subject of the client certificate the request came with
/// (valueString).
pub const EXT_CLIENT_CERTIFICATE: &str = extension_url!("audit-client-certificate");
/// Why the record is flagged for IG review (`break-glass`, `consent-withdrawn-by-staff`);
/// shown to the person too.
pub const EXT_REVIEW: &str = extension_url!("audit-review");
/// How many requests without a valid token the rate limit turned away from this client in
/// one window (the record stands for all of them).
pub const EXT_RATE_LIMITED: &str = extension_url!("audit-rate-limited-count");
/// How the person was looked up when not as usual: `full` (`X-Concord-Lookup: full`: every
/// source asked, the record locator ruling none out) (valueCode).
pub const EXT_LOOKUP: &str = extension_url!("audit-lookup");

const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ROLE_CLASS: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleClass";
const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
const BALP_AGENT: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes";
const BALP_ENTITY: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";

/// Who is looking, and so how much of a record they are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// An information-governance lead: the whole record.
    Full,
    /// The person the record is about: who (organisation and role), why, when, what kind of
    /// request and its outcome; no staff personal details and no gateway internals.
    Person,
}

/// A record that cannot be shown: its body is not a record (the store was tampered with or
/// is corrupt; `concord audit verify` says more).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit record {chain} at position {seq} has a body that is not a record")]
pub struct Unreadable {
    /// The chain.
    pub chain: String,
    /// The position.
    pub seq: i64,
}

/// The AuditEvent id of a record: `{chain}.{seq}`.
pub fn id(chain: &str, seq: i64) -> String {
    format!("{chain}.{seq}")
}

/// The chain and position an AuditEvent id names; `None` when it is not one this gateway
/// makes.
pub fn parse_id(id: &str) -> Option<(&str, i64)> {
    let (chain, seq) = id.rsplit_once('.')?;
    let seq: i64 = seq.parse().ok().filter(|s| *s >= 0)?;
    let chain_ok = !chain.is_empty()
        && chain.len() <= 64
        && chain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    chain_ok.then_some((chain, seq))
}

/// The FHIR interaction a request was, with its AuditEvent action (BALP: `R` for reads and
/// searches, `C` for creates, `E` for operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// A read of one resource.
    Read,
    /// A search of one type.
    SearchType,
    /// An operation (`$everything`).
    Operation,
    /// A create (`POST /fhir/Consent`, `POST /fhir/{CarePlan,Goal,Flag}`).
    Create,
    /// An update (`PUT /fhir/{CarePlan,Goal,Flag}/{id}`).
    Update,
    /// Anything else (a method the route does not serve).
    Other,
}

impl Interaction {
    /// The interaction of a request from its method and route template.
    pub fn of(method: &str, route: &str) -> Interaction {
        let last = route.rsplit('/').next().unwrap_or_default();
        match method {
            "GET" | "HEAD" if last.starts_with('$') => Interaction::Operation,
            "GET" | "HEAD" if last == "{id}" => Interaction::Read,
            "GET" | "HEAD" if route.starts_with("/fhir/") => Interaction::SearchType,
            "POST" if last.starts_with('$') => Interaction::Operation,
            "POST" if route.starts_with("/fhir/") => Interaction::Create,
            "PUT" if last == "{id}" => Interaction::Update,
            _ => Interaction::Other,
        }
    }

    /// The `restful-interaction` code, if there is one.
    pub fn code(self) -> Option<&'static str> {
        match self {
            Interaction::Read => Some("read"),
            Interaction::SearchType => Some("search-type"),
            Interaction::Operation => Some("operation"),
            Interaction::Create => Some("create"),
            Interaction::Update => Some("update"),
            Interaction::Other => None,
        }
    }

    /// The AuditEvent action code.
    pub fn action(self) -> &'static str {
        match self {
            Interaction::Read | Interaction::SearchType => "R",
            Interaction::Create => "C",
            Interaction::Update => "U",
            Interaction::Operation | Interaction::Other => "E",
        }
    }
}

/// The AuditEvent outcome code of a stored outcome word: `0` success, `4` minor failure (the
/// request was refused, 4xx), `8` serious failure (5xx).
pub fn outcome_code(outcome: &str) -> &'static str {
    match outcome {
        // A write's intent, recorded before it was forwarded: its outcome is in the next
        // record of the same request id.
        "success" | "pending" => "0",
        "refused" => "4",
        _ => "8",
    }
}

/// The stored outcome word an AuditEvent outcome code (or the word itself) stands for.
pub fn outcome_word(code: &str) -> Option<&'static str> {
    match code {
        "0" | "success" => Some("success"),
        "4" | "refused" => Some("refused"),
        "8" | "error" => Some("error"),
        _ => None,
    }
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

fn ext_string(url: &str, value: &str) -> Value {
    json!({"url": url, "valueString": value})
}

/// The record as an AuditEvent for `view`.
pub fn render(record: &Record, view: View) -> Result<Value, Unreadable> {
    let body: Body = serde_json::from_str(&record.body).map_err(|_| Unreadable {
        chain: record.chain.clone(),
        seq: record.seq,
    })?;
    let recorded = jiff::Timestamp::from_microsecond(body.recorded_us).map_err(|_| Unreadable {
        chain: record.chain.clone(),
        seq: record.seq,
    })?;
    let full = view == View::Full;
    let interaction = Interaction::of(&body.method, &body.route);

    let mut event = Map::new();
    event.insert("resourceType".into(), "AuditEvent".into());
    event.insert("id".into(), id(&record.chain, record.seq).into());
    if full {
        event.insert("extension".into(), Value::Array(extensions(record, &body)));
    } else if let Some(review) = &body.review {
        // The person sees that a record about them went to IG review, and why (for example
        // their objection withdrawn by staff on their request).
        event.insert(
            "extension".into(),
            json!([{"url": EXT_REVIEW, "valueCode": review}]),
        );
    }
    event.insert(
        "type".into(),
        coding(EVENT_TYPE, "rest", "RESTful Operation"),
    );
    if let Some(code) = interaction.code() {
        event.insert("subtype".into(), json!([coding(INTERACTION, code, code)]));
    }
    event.insert("action".into(), interaction.action().into());
    event.insert("recorded".into(), recorded.to_string().into());
    event.insert("outcome".into(), outcome_code(&body.outcome).into());
    event.insert("outcomeDesc".into(), outcome_desc(body.status).into());
    if let Some(purpose) = &body.purpose {
        event.insert(
            "purposeOfEvent".into(),
            json!([{"coding": [{"system": ACT_REASON, "code": purpose}]}]),
        );
    }
    event.insert("agent".into(), Value::Array(agents(&body, full)));
    event.insert(
        "source".into(),
        json!({
            "observer": {"display": "Concord"},
            "type": [coding(SOURCE_TYPE, "4", "Application Server")],
        }),
    );
    event.insert("entity".into(), Value::Array(entities(&body, full)));
    let mut event = Value::Object(event);
    // INVARIANT: FHIR forbids empty strings, objects and arrays; whatever a record holds
    // (an identity provider's empty claim in an old record, say), none is served.
    crate::fhir::json::prune_empty(&mut event);
    Ok(event)
}

fn outcome_desc(status: u16) -> String {
    match http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    }
}

/// The gateway's own facts: chain, hashes, policy set, break-glass reason, withheld count
/// and how each source answered (full view only).
fn extensions(record: &Record, body: &Body) -> Vec<Value> {
    let mut out = vec![
        json!({"url": EXT_CHAIN, "extension": [
            {"url": "chain", "valueString": record.chain},
            {"url": "position", "valueDecimal": record.seq},
            {"url": "previousHash", "valueString": record.prev_hash},
            {"url": "hash", "valueString": record.hash},
        ]}),
        ext_string(EXT_POLICY_HASH, &body.policy_hash),
    ];
    if let Some(reason) = &body.break_glass_reason {
        out.push(ext_string(EXT_BREAK_GLASS_REASON, reason));
    }
    if let Some(review) = &body.review {
        out.push(json!({"url": EXT_REVIEW, "valueCode": review}));
    }
    if let Some(count) = body.rate_limited {
        let count = count.min(i32::MAX as u64);
        out.push(json!({"url": EXT_RATE_LIMITED, "valueUnsignedInt": count}));
    }
    if let Some(lookup) = &body.lookup {
        out.push(json!({"url": EXT_LOOKUP, "valueCode": lookup}));
    }
    // unsignedInt holds up to 2^31 - 1.
    let withheld = body.withheld.min(i32::MAX as usize);
    out.push(json!({"url": EXT_WITHHELD, "valueUnsignedInt": withheld}));
    for source in &body.sources {
        out.push(json!({"url": EXT_SOURCE_OUTCOME, "extension": [
            {"url": "source", "valueString": source.source},
            {"url": "outcome", "valueCode": source.outcome},
        ]}));
    }
    out
}

/// The user (the requestor) and their organisation.
fn agents(body: &Body, full: bool) -> Vec<Value> {
    let mut user = Map::new();
    if full && let Some(cert) = &body.client_certificate {
        user.insert(
            "extension".into(),
            json!([ext_string(EXT_CLIENT_CERTIFICATE, cert)]),
        );
    }
    user.insert(
        "type".into(),
        json!({"coding": [
            coding(BALP_AGENT, "UserOauthAgent", "User OAuth Agent participant"),
            coding(PARTICIPATION, "IRCP", "information recipient"),
        ]}),
    );
    let mut role = Map::new();
    if let Some(rel) = &body.relationship {
        role.insert("coding".into(), json!([{"system": ROLE_CODE, "code": rel}]));
    }
    match (&body.role, body.caller.as_str()) {
        (Some(r), _) => {
            role.insert("text".into(), r.as_str().into());
        }
        (None, caller) => {
            role.insert("text".into(), caller.into());
        }
    }
    user.insert("role".into(), json!([Value::Object(role)]));
    if full {
        let mut who = Map::new();
        match &body.user {
            Some(u) => {
                who.insert("identifier".into(), json!({"value": u}));
            }
            None => {
                who.insert("display".into(), "unauthenticated caller".into());
            }
        }
        if let Some(name) = &body.user_name {
            who.insert("display".into(), name.as_str().into());
        }
        user.insert("who".into(), Value::Object(who));
        if let Some(u) = &body.user {
            user.insert("altId".into(), u.as_str().into());
        }
        if let Some(name) = &body.user_name {
            user.insert("name".into(), name.as_str().into());
        }
    }
    user.insert("requestor".into(), true.into());
    let mut agreements: Vec<&str> = body.disclosed.iter().map(|d| &*d.agreement).collect();
    agreements.sort_unstable();
    agreements.dedup();
    if !agreements.is_empty() {
        user.insert("policy".into(), json!(agreements));
    }
    if full && let Some(address) = &body.client_address {
        // The address without its port.
        let ip = address
            .parse::<std::net::SocketAddr>()
            .map_or_else(|_| address.clone(), |a| a.ip().to_string());
        user.insert("network".into(), json!({"address": ip, "type": "2"}));
    }
    if let Some(purpose) = &body.purpose {
        user.insert(
            "purposeOfUse".into(),
            json!([{"coding": [{"system": ACT_REASON, "code": purpose}]}]),
        );
    }
    let mut out = vec![Value::Object(user)];
    if let Some(org) = &body.org {
        out.push(json!({
            "type": {"coding": [coding(ROLE_CLASS, "PROV", "healthcare provider")]},
            "who": {"identifier": {"system": ODS_SYSTEM, "value": org}},
            "requestor": false,
        }));
    }
    out
}

/// The person, the query, the request id (full view) and each disclosed resource.
fn entities(body: &Body, full: bool) -> Vec<Value> {
    let mut out = Vec::with_capacity(body.disclosed.len() + 3);
    if let Some(person) = &body.person {
        out.push(json!({
            "what": {"reference": format!("Patient/{person}")},
            "type": coding(ENTITY_TYPE, "1", "Person"),
            "role": coding(OBJECT_ROLE, "1", "Patient"),
        }));
    }
    let mut query = Map::new();
    query.insert("type".into(), coding(ENTITY_TYPE, "2", "System Object"));
    query.insert("role".into(), coding(OBJECT_ROLE, "24", "Query"));
    query.insert(
        "description".into(),
        format!("{} {}", body.method, body.route).into(),
    );
    if full {
        query.insert(
            "query".into(),
            base64::engine::general_purpose::STANDARD
                .encode(body.target.as_bytes())
                .into(),
        );
    }
    out.push(Value::Object(query));
    if full && !body.request_id.is_empty() {
        out.push(json!({
            "what": {"identifier": {"value": body.request_id}},
            "type": coding(BALP_ENTITY, "XrequestId", "X-Request-Id"),
        }));
    }
    for d in &body.disclosed {
        let mut entity = Map::new();
        entity.insert("what".into(), json!({"reference": d.reference}));
        entity.insert("type".into(), coding(ENTITY_TYPE, "2", "System Object"));
        entity.insert("role".into(), coding(OBJECT_ROLE, "4", "Domain Resource"));
        if d.emergency {
            entity.insert(
                "securityLabel".into(),
                json!([coding(ACT_REASON, "ETREAT", "Emergency Treatment")]),
            );
        }
        entity.insert(
            "detail".into(),
            json!([
                {"type": "agreement", "valueString": d.agreement},
                {"type": "rule", "valueString": d.rule},
            ]),
        );
        out.push(Value::Object(entity));
    }
    if let Some(w) = &body.write {
        let mut entity = Map::new();
        if let Some(reference) = &w.resource {
            entity.insert("what".into(), json!({"reference": reference}));
        }
        entity.insert("type".into(), coding(ENTITY_TYPE, "2", "System Object"));
        entity.insert("role".into(), coding(OBJECT_ROLE, "4", "Domain Resource"));
        entity.insert("description".into(), format!("write {}", w.stage).into());
        if full {
            let mut detail = vec![
                json!({"type": "stage", "valueString": w.stage}),
                json!({"type": "action", "valueString": w.action}),
            ];
            for (name, value) in [
                ("source", &w.source),
                ("version", &w.version),
                ("read-version", &w.read_version),
                ("sha256", &w.sha256),
                ("agreement", &w.agreement),
                ("rule", &w.rule),
            ] {
                if let Some(v) = value {
                    detail.push(json!({"type": name, "valueString": v}));
                }
            }
            entity.insert("detail".into(), Value::Array(detail));
        }
        out.push(Value::Object(entity));
    }
    out
}

#[cfg(test)]
mod tests;
