//! The health of the record (issue 16, item 7): each source's state as this instance sees
//! it (its circuit breaker, as `/readyz/detail` reports it; recent faults and the last
//! conformance check, from the metrics the sources and the federation keep), this
//! instance's audit chain, each chain's last signed head, `audit verify` run in the
//! background ([`super::verify`]), and how many writes of the last week have an outcome
//! nobody knows (hazard H-016, R-016.1).
//!
//! The page names no person, so viewing it is not itself an audit record; starting a verify
//! and its result are.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::audit::actor;
use super::health_pages::{self, ChainHeads, Instance, SourceView, Unsettled};
use super::verify::Started;
use super::{Console, ConsoleError, session};

/// Chains shown per page of signed heads.
pub(super) const HEADS_PAGE: u32 = 20;
/// The longest chain id a link to older heads may carry.
const MAX_CHAIN: usize = 128;
/// The days of writes the health page looks at for outcomes nobody knows.
pub(super) const UNSETTLED_DAYS: i64 = 7;
/// The most write records the health page looks at (newest first) for them.
pub(super) const UNSETTLED_CAP: usize = 200;

/// `(signed_us, chain)` of a link to older heads: `{signed_us}.{chain}`.
fn heads_cursor(raw: Option<&str>) -> Option<(i64, String)> {
    let value = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "heads")
        .map(|(_, v)| v.into_owned())?;
    let (signed_us, chain) = value.split_once('.')?;
    let signed_us = signed_us.parse().ok()?;
    (!chain.is_empty() && chain.len() <= MAX_CHAIN).then(|| (signed_us, chain.to_owned()))
}

impl Console {
    /// Each configured source, in config order, with what this instance knows of it.
    fn sources_now(&self) -> Vec<SourceView> {
        let watched = &self.0.watched;
        watched
            .sources
            .iter()
            .map(|source| {
                let info = source.info();
                SourceView {
                    id: info.id.clone(),
                    name: info.name.clone(),
                    ods: info.ods.clone(),
                    export: source.is_static(),
                    breaker: source.breaker_state(),
                    conformance: info.conformance,
                    checked_here: watched.metrics.source_health(&info.id),
                }
            })
            .collect()
    }

    /// The writes of the last [`UNSETTLED_DAYS`] days whose outcome is not known and that
    /// nobody has settled (older than the time a write can take), at most [`UNSETTLED_CAP`]
    /// looked at: how many, and whether the look was cut short.
    async fn unsettled_writes(&self) -> Result<Unsettled, ConsoleError> {
        use crate::audit::unsettled::{OUTCOME_WINDOW_US, unsettled};
        let now = jiff::Timestamp::now().as_microsecond();
        let span = crate::store::AuditSpan {
            from: Some(now.saturating_sub(UNSETTLED_DAYS * crate::store::DAY_US)),
            to: Some(now.saturating_sub(OUTCOME_WINDOW_US)),
        };
        let (found, cut) = unsettled(&self.0.store, span, UNSETTLED_CAP).await?;
        Ok(Unsettled {
            count: found.len(),
            cut,
        })
    }

    /// One page of chains' last signed heads.
    async fn chain_heads(&self, after: Option<(i64, String)>) -> Result<ChainHeads, ConsoleError> {
        let store = &self.0.store;
        let after_ref = after.as_ref().map(|(us, chain)| (*us, chain.as_str()));
        let mut heads = store.audit_last_heads(after_ref, HEADS_PAGE + 1).await?;
        let more = heads.len() > HEADS_PAGE as usize;
        heads.truncate(HEADS_PAGE as usize);
        let next = more
            .then(|| heads.last().map(|h| format!("{}.{}", h.signed_us, h.chain)))
            .flatten();
        Ok(ChainHeads {
            heads,
            chains: store.audit_signed_chains().await?,
            next,
            first_page: after.is_none(),
        })
    }
}

/// `GET /console/health`: the sources, the chains' signed heads, and the verify button.
pub(super) async fn page(
    State(console): State<Console>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let heads = match console.chain_heads(heads_cursor(raw.as_deref())).await {
        Ok(h) => h,
        Err(e) => return console.refusal(&e),
    };
    let unsettled = match console.unsettled_writes().await {
        Ok(u) => u,
        Err(e) => return console.refusal(&e),
    };
    let audit = console.0.audit.health();
    let instance = Instance {
        chain: console.0.audit.chain().to_owned(),
        signed_head: audit.signed_head,
        spooled: audit.spooled,
        problem: audit.problem,
        signing: console
            .0
            .verify
            .audit_config()
            .is_some_and(|a| a.head_signing_key_file.is_some()),
    };
    let last = console.last_verify().await.map(|run| run.status());
    let html = health_pages::health(
        &console.0.path,
        &session.csrf,
        &console.sources_now(),
        &instance,
        &heads,
        &unsettled,
        last.as_ref(),
    );
    console.page(StatusCode::OK, html)
}

/// `POST /console/health/verify`: starts `audit verify` in the background (unless one is
/// running), then shows its progress. Without the form's token: 403, and nothing starts.
pub(super) async fn start_verify(
    State(console): State<Console>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !session::csrf_matches(&session.csrf, &session::form(&body)) {
        return console.refusal(&ConsoleError::Csrf);
    }
    match console.start_verify(&headers, actor(&session)).await {
        Ok(Started::New) => console.redirect("/health/verify"),
        Ok(Started::AlreadyRunning) => console.redirect("/health/verify?running"),
        Err(e) => console.refusal(&e),
    }
}

/// `GET /console/health/verify`: the verify running now (with a link to its latest progress)
/// or the last one's result.
pub(super) async fn verify_page(
    State(console): State<Console>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let session = match console.active(&headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let joined = raw.as_deref() == Some("running");
    let run = console.last_verify().await;
    let html = health_pages::verify(
        &console.0.path,
        &session.csrf,
        run.as_deref().map(|r| (r, r.status())),
        joined,
    );
    console.page(StatusCode::OK, html)
}

#[cfg(test)]
mod tests {
    use super::heads_cursor;

    #[test]
    fn a_heads_cursor_is_a_time_and_a_chain_or_nothing() {
        assert_eq!(
            heads_cursor(Some("heads=1700.abc-1")),
            Some((1700, "abc-1".to_owned()))
        );
        assert_eq!(heads_cursor(Some("heads=x.abc")), None);
        assert_eq!(heads_cursor(Some("heads=1700.")), None);
        assert_eq!(heads_cursor(Some("heads=1700")), None);
        assert_eq!(heads_cursor(None), None);
        let long = format!("heads=1.{}", "a".repeat(129));
        assert_eq!(heads_cursor(Some(&long)), None);
    }
}
