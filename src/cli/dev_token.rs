//! `concord dev-token`: a token signed with the demo key (DEMO ONLY).

use std::path::PathBuf;

use anyhow::Context;

use crate::config::Config;

/// What `concord dev-token` takes.
#[derive(Debug, clap::Args)]
pub struct DevTokenArgs {
    /// The config file (its `[auth]` issuer, audience, claim names and dev_signing_key).
    #[arg(long, default_value = "concord.toml")]
    config: PathBuf,
    /// The user's role, e.g. clinician, nurse, social-worker, ig-lead, patient.
    #[arg(long, default_value = "clinician")]
    role: String,
    /// The user's organisation (ODS code).
    #[arg(long, default_value = "A81001")]
    org: String,
    /// HL7 v3 PurposeOfUse; by default TREAT for staff, PATRQT for a patient token and
    /// FAMRQT for a carer's (as the gateway assumes when a token names none).
    #[arg(long)]
    purpose: Option<String>,
    /// Make a patient token for the person with this NHS number.
    #[arg(long)]
    patient: Option<String>,
    /// For a carer's patient token: their relationship to the person (e.g. SON).
    #[arg(long)]
    relationship: Option<String>,
    /// The user id (`sub`).
    #[arg(long, default_value = "demo-user")]
    user: String,
    /// The user's name.
    #[arg(long, default_value = "Demo User")]
    name: String,
    /// SMART scopes; default `user/*.rs`, or `patient/*.rs` with --patient.
    #[arg(long)]
    scope: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
}

/// Signs and prints the token.
pub(super) fn dev_token(args: DevTokenArgs) -> anyhow::Result<()> {
    let DevTokenArgs {
        config,
        role,
        org,
        purpose,
        patient,
        relationship,
        user,
        name,
        scope,
        ttl,
    } = args;
    let config = Config::load(&config)?;
    let auth = config
        .auth
        .as_ref()
        .context("the config has no [auth] section")?;
    if let Some(nhs) = &patient {
        crate::fhir::NhsNumber::parse(nhs).map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
    }
    let scope = scope.unwrap_or_else(|| {
        if patient.is_some() {
            "patient/*.rs".into()
        } else {
            "user/*.rs".into()
        }
    });
    let purpose = purpose.unwrap_or_else(|| {
        match (&patient, &relationship) {
            (None, _) => "TREAT",
            (Some(_), Some(_)) => "FAMRQT",
            (Some(_), None) => "PATRQT",
        }
        .into()
    });
    let spec = crate::auth::DevToken {
        user,
        name,
        org,
        role,
        purpose_of_use: purpose,
        patient,
        relationship,
        scope,
        ttl_secs: ttl,
    };
    eprintln!(
        "concord: DEMO token, signed with the published demo key; never trust that key outside the demo"
    );
    println!("{}", crate::auth::sign_dev_token(auth, &spec)?);
    Ok(())
}
