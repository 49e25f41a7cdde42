//! Concord: a FHIR R4 gateway that gives care teams one view of a person's record held by
//! many providers (GP practices, community health services, social care).
//!
//! A request travels through the modules in this order:
//!
//! | step | module | what it does |
//! | --- | --- | --- |
//! | authenticate | [`auth`] | bearer JWTs verified against pinned keys; SMART scopes; the `Principal` |
//! | front door | [`server`] | axum router, limits, timeouts; parses each FHIR request, asks the door, renders its answer; `/healthz` `/readyz` `/metrics` |
//! | IG console | [`console`] | server-rendered pages under `/console` for IG leads: OpenID Connect sign-in (PKCE), sessions in the store, CSRF tokens, a strict CSP |
//! | the one door | [`disclose`] | one pipeline for every ask (find a person, read, search, `$everything`, `policy explain`, sharing choices): scope, plan, resolve, collect, consent, decide, redact, and the audit facts |
//! | resolve, fan out, normalise, merge | [`federation`] | finds the person in every source, asks them in parallel under one deadline, checks and rewrites what comes back (one file per step) |
//! | sources | [`sources`] | the `Source` trait: upstream FHIR servers and NDJSON exports |
//! | decide | [`policy`] | agreements, labels, consent, FHIRPath: which resources each caller is given |
//! | conform | [`profiles`] | `fhir-profiles/` (base R4 structure, UK Core profiles, value sets) compiled once; checks resources against them |
//! | audit | [`audit`] | one hash-chained record per request, written before the answer (by `server`'s record layer); served as FHIR AuditEvents |
//! | state | [`store`] | SQLite or PostgreSQL: people, their links, consent, audit records |
//! | FHIR helpers | [`fhir`] | NHS numbers, references, dates, search parameters, Bundles, OperationOutcome, strict JSON |
//!
//! Beside them: [`config`] (the TOML file, one file per table under `config/`),
//! [`telemetry`] (Prometheus metrics) and [`cli`] (the `concord` command, one file per command
//! under `cli/`). Dependencies point one way, from the top (`cli`, `server`) down to `fhir`:
//! `server` → `disclose` → `federation` → `sources`; `server` → `console` → `auth`, `audit`,
//! `policy`, `store`; `disclose` → `policy`, `audit`;
//! `federation` → `policy`, `profiles`, `store`; `audit` → `store`; everything may use `fhir`;
//! nothing uses `server` or `cli` (but `cli`); no two modules use each other; `policy` uses
//! only `fhir`. `tests/architecture.rs` writes the allowed edges down once and fails when a
//! `crate::` path crosses another.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod disclose;
pub mod federation;
pub mod fhir;
pub mod policy;
pub mod profiles;
pub mod server;
pub mod sources;
pub mod store;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;

/// Lower-case hex of a digest (certificate fingerprints, the policy set's hash, audit hashes).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case_and_two_digits_a_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(super::hex(&[]), "");
    }
}
