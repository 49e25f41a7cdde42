//! The decision: may this resource go to this caller, under which agreement and rule.
//!
//! A request is decided in two steps. [`PolicySet::for_caller`] keeps, once per request, the
//! rules that could ever apply to the caller (agreement in force today, the caller's kind of
//! access, organisation, role or carer's relationship, and purpose of use); that is the plan
//! (which sources and types are worth asking) and makes each resource's decision cheap.
//! [`CallerPolicy::decide`] then checks, per resource, the providing organisation, the
//! resource type, its sensitivity labels, the rule's FHIRPath `where` condition, the care
//! relationship and the person's consent.
//!
//! **Which rule wins.** When several rules permit a resource, the one named in the answer and
//! the audit record, and whose redactions apply, is the first in this order: rules that serve
//! the caller's own purpose of use before emergency (ETREAT) rules, then agreements by id,
//! then rules in file order. So emergency access is only ever used for what nothing else
//! permits, and the choice never depends on the order files were read in.
//!
//! **Consent.** A person's objection (not from a provider, or not to an organisation) withholds
//! what it covers under every rule except emergency rules. It is about sharing: a provider's
//! own staff still see the records it holds, and the person always sees their own record
//! (their right of access); carers are bound by it like anyone else.
//!
//! [`explain`] walks every agreement with the same checks and reports, per agreement, the first
//! condition that failed: `concord policy explain` and the gateway decide with the same code.

use std::fmt;

use jiff::civil::Date;

use super::{Agreement, Audience, Interaction, PolicySet, Rule, Status};

/// The purpose of use of emergency access.
pub const EMERGENCY: &str = "ETREAT";

/// Who is asking, as far as agreements care.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The caller's organisation (ODS code); staff without one match no staff agreement.
    pub org: Option<&'a str>,
    /// The caller's role (staff).
    pub role: Option<&'a str>,
    /// The purpose of use the token gives.
    pub purpose: &'a str,
    /// Emergency access was asked for (`X-Break-Glass-Reason`): ETREAT rules apply too.
    pub emergency: bool,
    /// Staff, the person, or a carer.
    pub acting: Acting<'a>,
}

/// In what capacity the caller acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acting<'a> {
    /// Staff of an organisation.
    Staff,
    /// The person the record is about.
    Person,
    /// A carer, with their relationship to the person (HL7 RoleCode, e.g. `DAU`).
    Carer(&'a str),
}

/// A person's sharing choices that bind every non-emergency rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consent {
    /// Providers (ODS codes) whose records the person does not want shared.
    pub not_from: Vec<String>,
    /// Organisations (ODS codes) the person does not want their records shared with.
    pub not_to: Vec<String>,
}

impl Consent {
    /// True when the person objects to records of `source_org` going to `caller_org` (staff)
    /// or to a carer (`None`). Records never count as shared with the organisation that holds
    /// them.
    pub fn objects(&self, source_org: &str, caller_org: Option<&str>) -> bool {
        if caller_org == Some(source_org) {
            return false;
        }
        self.not_from.iter().any(|o| o == source_org)
            || caller_org.is_some_and(|c| self.not_to.iter().any(|o| o == c))
    }
}

/// One resource, as far as agreements care.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// ODS code of the organisation whose source holds it.
    pub source_org: &'a str,
    /// Its resource type.
    pub resource_type: &'a str,
    /// Its sensitivity labels.
    pub labels: &'a [&'a str],
    /// The resource itself, for rules' `where` conditions (without it, no rule with a
    /// condition permits).
    pub resource: Option<&'a serde_json::Value>,
    /// The person is known to the caller's own organisation (a record of them in a source
    /// that organisation controls).
    pub care_relationship: bool,
    /// The person's consent.
    pub consent: &'a Consent,
}

/// Why an agreement or rule did not permit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The agreement is not active, or today is outside its dates.
    NotInForce {
        /// Its status.
        status: Status,
        /// First day in force.
        from: Date,
        /// Last day in force.
        until: Date,
    },
    /// A staff agreement and a patient's token, or the other way round.
    Audience(Audience),
    /// The token names no organisation.
    NoOrganisation,
    /// The caller's organisation is not among the recipients.
    NotRecipient(String),
    /// The providing organisation is not among the disclosers.
    NotDiscloser(String),
    /// The caller's role is not among the rule's roles.
    Role(Option<String>),
    /// The rule is for the person only, or for other carers.
    Relationship(Option<String>),
    /// The rule does not permit the interaction asked for (e.g. `create`).
    Interaction(String),
    /// The caller's purpose of use is not among the rule's.
    Purpose(String),
    /// The resource type is not among the rule's.
    ResourceType(String),
    /// The resource carries a label the rule excludes.
    Label(String),
    /// The rule's `where` condition does not hold for the resource.
    Condition(String),
    /// The rule needs the person to be known to the caller's organisation, and they are not.
    NoCareRelationship,
    /// The person objected to this sharing.
    Consent,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NotInForce {
                status: Status::Active,
                from,
                until,
            } => write!(f, "not in force today (valid {from} to {until})"),
            Failure::NotInForce { status, .. } => {
                write!(f, "not in force (status {})", status.name())
            }
            Failure::Audience(Audience::Staff) => {
                f.write_str("a staff agreement; the caller is a patient or carer")
            }
            Failure::Audience(Audience::Patient) => {
                f.write_str("a patient-access agreement; the caller is staff")
            }
            Failure::NoOrganisation => f.write_str("the caller's token names no organisation"),
            Failure::NotRecipient(org) => write!(f, "organisation {org} is not a recipient"),
            Failure::NotDiscloser(org) => write!(f, "provider {org} is not a discloser"),
            Failure::Role(Some(role)) => write!(f, "role `{role}` is not among the rule's roles"),
            Failure::Role(None) => f.write_str("the caller's token names no role"),
            Failure::Relationship(Some(rel)) => {
                write!(f, "relationship `{rel}` is not among the rule's")
            }
            Failure::Relationship(None) => f.write_str("the rule is for carers, not the person"),
            Failure::Interaction(i) => write!(f, "the rule does not permit {i}"),
            Failure::Purpose(p) => write!(f, "purpose of use `{p}` is not among the rule's"),
            Failure::ResourceType(t) => write!(f, "{t} is not among the rule's resources"),
            Failure::Label(l) => write!(f, "the resource is labelled {l}, which the rule excludes"),
            Failure::Condition(c) => write!(f, "the condition `{c}` does not hold"),
            Failure::NoCareRelationship => f.write_str(
                "needs a care relationship: the person is not known to the caller's organisation",
            ),
            Failure::Consent => f.write_str("the person has asked for this not to be shared"),
        }
    }
}

impl Status {
    /// Its name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Active => "active",
            Status::Suspended => "suspended",
            Status::Retired => "retired",
        }
    }
}

/// The agreement and rule that permit a resource.
#[derive(Debug, Clone, Copy)]
pub struct Permit<'p> {
    /// The agreement.
    pub agreement: &'p Agreement,
    /// The rule.
    pub rule: &'p Rule,
    /// Permitted only under emergency access.
    pub emergency: bool,
}

/// A rule that can apply to a caller.
#[derive(Debug, Clone, Copy)]
struct Applicable<'p> {
    agreement: &'p Agreement,
    rule: &'p Rule,
    emergency: bool,
}

/// The rules that can apply to one caller today, in the order they are tried.
#[derive(Debug, Clone)]
pub struct CallerPolicy<'p> {
    rules: Vec<Applicable<'p>>,
    caller_org: Option<String>,
    /// False for the person themself: their own choices about sharing never limit their
    /// access to their own record.
    consent_applies: bool,
}

/// The first condition of the agreement itself that fails for this caller today.
fn agreement_failure<'a>(
    agreement: &Agreement,
    caller: &Caller<'a>,
    today: Date,
) -> Option<Reject<'a>> {
    if !agreement.in_force(today) {
        return Some(Reject::NotInForce {
            status: agreement.status,
            from: agreement.valid_from,
            until: agreement.valid_until,
        });
    }
    match (agreement.access, caller.acting) {
        (Audience::Staff, Acting::Staff) => match caller.org {
            None => Some(Reject::NoOrganisation),
            Some(org) if !agreement.recipients.iter().any(|r| r == org) => {
                Some(Reject::NotRecipient(org))
            }
            Some(_) => None,
        },
        (Audience::Patient, Acting::Person | Acting::Carer(_)) => None,
        (audience, _) => Some(Reject::Audience(audience)),
    }
}

/// Why an agreement or rule did not permit, borrowing what it names: the gateway checks
/// hundreds of rules a request and keeps none of the reasons, so only `explain` pays for
/// the owned [`Failure`].
#[derive(Debug, Clone, Copy)]
enum Reject<'a> {
    NotInForce {
        status: Status,
        from: Date,
        until: Date,
    },
    Audience(Audience),
    NoOrganisation,
    NotRecipient(&'a str),
    Role(Option<&'a str>),
    Relationship(Option<&'a str>),
    Interaction(&'static str),
    Purpose(&'a str),
    ResourceType(&'a str),
    Label(&'a str),
    Condition(&'a str),
    NoCareRelationship,
    Consent,
}

impl Reject<'_> {
    fn owned(self) -> Failure {
        match self {
            Reject::NotInForce {
                status,
                from,
                until,
            } => Failure::NotInForce {
                status,
                from,
                until,
            },
            Reject::Audience(audience) => Failure::Audience(audience),
            Reject::NoOrganisation => Failure::NoOrganisation,
            Reject::NotRecipient(org) => Failure::NotRecipient(org.to_owned()),
            Reject::Role(role) => Failure::Role(role.map(str::to_owned)),
            Reject::Relationship(rel) => Failure::Relationship(rel.map(str::to_owned)),
            Reject::Interaction(i) => Failure::Interaction(i.to_owned()),
            Reject::Purpose(p) => Failure::Purpose(p.to_owned()),
            Reject::ResourceType(t) => Failure::ResourceType(t.to_owned()),
            Reject::Label(l) => Failure::Label(l.to_owned()),
            Reject::Condition(c) => Failure::Condition(c.to_owned()),
            Reject::NoCareRelationship => Failure::NoCareRelationship,
            Reject::Consent => Failure::Consent,
        }
    }
}

/// The words for what is asked, in explanations: `read or search`, `create`.
fn wanted_name(wanted: &[Interaction]) -> &'static str {
    match wanted {
        [Interaction::Create] => "create",
        [Interaction::Update] => "update",
        [Interaction::Read] => "read",
        [Interaction::Search] => "search",
        _ => "read or search",
    }
}

/// Whether the rule can apply to the caller for one of the `wanted` interactions: `Ok(true)`
/// when only as emergency access.
fn rule_caller<'a>(
    rule: &Rule,
    audience: Audience,
    caller: &Caller<'a>,
    wanted: &[Interaction],
) -> Result<bool, Reject<'a>> {
    match (audience, caller.acting) {
        (Audience::Staff, _) => {
            let role = caller.role.unwrap_or_default();
            if caller.role.is_none() || !rule.roles.iter().any(|r| r == role) {
                return Err(Reject::Role(caller.role));
            }
        }
        (Audience::Patient, Acting::Carer(rel)) => {
            if !rule.relationships.iter().any(|r| r == rel) {
                return Err(Reject::Relationship(Some(rel)));
            }
        }
        (Audience::Patient, _) => {
            if !rule.relationships.is_empty() {
                return Err(Reject::Relationship(None));
            }
        }
    }
    if !rule.permits_any(wanted) {
        return Err(Reject::Interaction(wanted_name(wanted)));
    }
    if rule.purpose_of_use.iter().any(|p| p == caller.purpose) {
        return Ok(caller.purpose == EMERGENCY);
    }
    if caller.emergency && rule.purpose_of_use.iter().any(|p| p == EMERGENCY) {
        return Ok(true);
    }
    Err(Reject::Purpose(caller.purpose))
}

/// The organisation a disclosure goes to, as consent sees it: staff's own; none for the
/// person or a carer, whatever organisation their token names.
fn consent_org<'a>(caller: &Caller<'a>) -> Option<&'a str> {
    match caller.acting {
        Acting::Staff => caller.org,
        Acting::Person | Acting::Carer(_) => None,
    }
}

/// Whether an applicable rule permits this resource.
fn rule_item<'a>(
    rule: &'a Rule,
    emergency: bool,
    caller: (Option<&str>, bool),
    item: &Item<'a>,
) -> Result<(), Reject<'a>> {
    let (caller_org, consent_applies) = caller;
    if !rule
        .resources
        .iter()
        .any(|r| r == "*" || r == item.resource_type)
    {
        return Err(Reject::ResourceType(item.resource_type));
    }
    if let Some(label) = item
        .labels
        .iter()
        .find(|l| rule.exclude_labels.iter().any(|x| x == *l))
    {
        return Err(Reject::Label(label));
    }
    if let Some(condition) = &rule.where_
        && !item.resource.is_some_and(|r| condition.holds(r))
    {
        return Err(Reject::Condition(condition.text()));
    }
    if rule.requires_care_relationship && !item.care_relationship {
        return Err(Reject::NoCareRelationship);
    }
    if consent_applies && !emergency && item.consent.objects(item.source_org, caller_org) {
        return Err(Reject::Consent);
    }
    Ok(())
}

impl PolicySet {
    /// The rules that can apply to `caller` on `today` when reading (rules that permit
    /// `read` or `search`).
    pub fn for_caller(&self, caller: &Caller<'_>, today: Date) -> CallerPolicy<'_> {
        self.for_interaction(caller, &Interaction::DEFAULT, today)
    }

    /// The rules that can apply to `caller` on `today` for one of the `wanted` interactions:
    /// `&[Interaction::Create]` for a create, say.
    pub fn for_interaction(
        &self,
        caller: &Caller<'_>,
        wanted: &[Interaction],
        today: Date,
    ) -> CallerPolicy<'_> {
        let mut normal = Vec::new();
        let mut emergency = Vec::new();
        for agreement in &self.agreements {
            if agreement_failure(agreement, caller, today).is_some() {
                continue;
            }
            for rule in &agreement.rules {
                match rule_caller(rule, agreement.access, caller, wanted) {
                    Ok(false) => normal.push(Applicable {
                        agreement,
                        rule,
                        emergency: false,
                    }),
                    Ok(true) => emergency.push(Applicable {
                        agreement,
                        rule,
                        emergency: true,
                    }),
                    Err(_) => {}
                }
            }
        }
        normal.extend(emergency);
        CallerPolicy {
            rules: normal,
            caller_org: consent_org(caller).map(str::to_owned),
            consent_applies: caller.acting != Acting::Person,
        }
    }
}

impl<'p> CallerPolicy<'p> {
    /// True when no rule can apply: the caller may see nothing at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// True when some emergency rule applies to the caller.
    pub fn has_emergency(&self) -> bool {
        self.rules.iter().any(|a| a.emergency)
    }

    /// True when some rule could permit resources of `resource_type` from `source_org`: the
    /// plan asks a source only for such types.
    pub fn may_disclose(&self, source_org: &str, resource_type: &str) -> bool {
        self.rules.iter().any(|a| {
            a.agreement.disclosers.iter().any(|d| d == source_org)
                && a.rule
                    .resources
                    .iter()
                    .any(|r| r == "*" || r == resource_type)
        })
    }

    /// The source the first rule (in the order rules are tried) that could permit a
    /// `resource_type` names for new resources that belong to no plan (`write_to`).
    pub fn write_to(&self, resource_type: &str) -> Option<&'p str> {
        self.rules
            .iter()
            .filter(|a| {
                a.rule
                    .resources
                    .iter()
                    .any(|r| r == "*" || r == resource_type)
            })
            .find_map(|a| a.rule.write_to.as_deref())
    }

    /// True when some rule could permit anything from `source_org`.
    pub fn may_disclose_any(&self, source_org: &str) -> bool {
        self.rules
            .iter()
            .any(|a| a.agreement.disclosers.iter().any(|d| d == source_org))
    }

    /// The rule that permits this resource, or `None`: withheld.
    pub fn decide(&self, item: &Item<'_>) -> Option<Permit<'p>> {
        self.rules
            .iter()
            .find(|a| {
                a.agreement.disclosers.iter().any(|d| d == item.source_org)
                    && rule_item(
                        a.rule,
                        a.emergency,
                        (self.caller_org.as_deref(), self.consent_applies),
                        item,
                    )
                    .is_ok()
            })
            .map(|a| Permit {
                agreement: a.agreement,
                rule: a.rule,
                emergency: a.emergency,
            })
    }
}

/// Why one agreement (or one of its rules) did not permit.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The agreement.
    pub agreement: String,
    /// The rule, when the agreement applied and a rule failed.
    pub rule: Option<String>,
    /// The first condition that failed.
    pub failure: Failure,
}

/// A decision with its reasons.
#[derive(Debug, Clone)]
pub struct Explanation<'p> {
    /// The permitting rule, or `None`: withheld.
    pub permit: Option<Permit<'p>>,
    /// When withheld: for each agreement, its first failed condition (and, where the agreement
    /// applied, each rule's).
    pub refusals: Vec<Refusal>,
}

/// Decides like the gateway and says why: for a permit, the agreement and rule; otherwise, for
/// each agreement, the first condition that failed.
pub fn explain<'p>(
    set: &'p PolicySet,
    caller: &Caller<'_>,
    item: &Item<'_>,
    today: Date,
) -> Explanation<'p> {
    explain_for(set, caller, item, &Interaction::DEFAULT, today)
}

/// [`explain`] for one of the `wanted` interactions: a write (`&[Interaction::Create]`) is
/// decided like a disclosure of the resource written, by the organisation of the source it
/// is written to, under rules that name that interaction.
pub fn explain_for<'p>(
    set: &'p PolicySet,
    caller: &Caller<'_>,
    item: &Item<'_>,
    wanted: &[Interaction],
    today: Date,
) -> Explanation<'p> {
    let permit = set.for_interaction(caller, wanted, today).decide(item);
    let mut refusals = Vec::new();
    if permit.is_none() {
        for agreement in &set.agreements {
            let refuse = |rule: Option<&Rule>, failure| Refusal {
                agreement: agreement.id.to_string(),
                rule: rule.map(|r| r.id.to_string()),
                failure,
            };
            if let Some(failure) = agreement_failure(agreement, caller, today) {
                refusals.push(refuse(None, failure.owned()));
                continue;
            }
            if !agreement.disclosers.iter().any(|d| d == item.source_org) {
                refusals.push(refuse(
                    None,
                    Failure::NotDiscloser(item.source_org.to_owned()),
                ));
                continue;
            }
            for rule in &agreement.rules {
                let failure = match rule_caller(rule, agreement.access, caller, wanted) {
                    Err(f) => f,
                    Ok(emergency) => match rule_item(
                        rule,
                        emergency,
                        (consent_org(caller), caller.acting != Acting::Person),
                        item,
                    ) {
                        Err(f) => f,
                        // INVARIANT: decide found no permitting rule, so every rule fails.
                        Ok(()) => continue,
                    },
                };
                refusals.push(refuse(Some(rule), failure.owned()));
            }
        }
    }
    Explanation { permit, refusals }
}
