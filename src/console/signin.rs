//! Signing in: the sign-in page, the authorization-code flow's two legs (`/console/login`
//! sends the browser to the identity provider; `/console/callback` takes it back), the role
//! choice when NHS CIS2 offers several, and the demo sign-in.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Map, Value};

use super::session::{self, Current, FORM_COOKIE, LOGIN_COOKIE, LOGIN_TTL_SECS, SignedIn};
use super::{Console, ConsoleError, DEMO_ISSUER, now_s, oidc, pages, random_token, sha256_hex};
use crate::auth::Principal;
use crate::config::ConsoleConfig;
use crate::store::PendingLogin;

/// The NHS CIS2 claim listing a user's roles, each with `role_code` and `org_code`.
pub(super) const CIS2_ROLES_CLAIM: &str = "nhsid_nrbac_roles";

/// Most sign-ins under way at once (across the fleet); beyond it new ones are refused.
const MAX_PENDING: i64 = 10_000;

/// The demo's IG lead.
const DEMO_USER: &str = "demo-ig-lead";
const DEMO_NAME: &str = "Demo IG Lead";
const DEMO_ORG: &str = "A81001";

/// Who did something in the console, for its audit record.
#[derive(Debug, Clone)]
pub(super) struct Actor {
    pub(super) user: String,
    pub(super) name: Option<String>,
    pub(super) org: Option<String>,
    pub(super) role: Option<String>,
}

/// A role and the organisation it is held at.
pub(super) type Choice = (String, Option<String>);

/// `GET /console/sign-in`.
pub(super) async fn page(State(console): State<Console>, headers: HeaderMap, uri: Uri) -> Response {
    if let Ok(Current::Active(_)) = console.current(&headers).await {
        return console.redirect("/");
    }
    let notice = match uri.query() {
        Some("signed-out") => Some("You have signed out."),
        _ => None,
    };
    let form_token = if console.0.demo {
        match session::cookie(&headers, FORM_COOKIE).map(str::to_owned) {
            Some(token) if token.len() == 43 => Some(token),
            _ => match random_token() {
                Ok(token) => Some(token),
                Err(e) => return console.refusal(&e),
            },
        }
    } else {
        None
    };
    let html = pages::sign_in(
        &console.0.path,
        console.0.provider.is_some(),
        form_token.as_deref(),
        notice,
    );
    let mut response = console.page(StatusCode::OK, html);
    if let Some(token) = form_token {
        let cookie = console.set_cookie(FORM_COOKIE, &token, "Strict", "", Some(LOGIN_TTL_SECS));
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /console/login`: a new sign-in under way (state, nonce and PKCE verifier kept in the
/// store, bound to this browser by a cookie), and the browser sent to the provider.
pub(super) async fn login(State(console): State<Console>) -> Response {
    let Some(provider) = &console.0.provider else {
        return console.redirect("/sign-in");
    };
    let started = async {
        let (state, nonce, verifier, browser) = (
            random_token()?,
            random_token()?,
            random_token()?,
            random_token()?,
        );
        let pending = PendingLogin {
            state_hash: sha256_hex(&state),
            browser_hash: sha256_hex(&browser),
            nonce_hash: sha256_hex(&nonce),
            verifier: verifier.clone(),
            created_s: now_s(),
        };
        let url = provider.authorize_url(&state, &nonce, &verifier).await?;
        let kept = console
            .0
            .store
            .begin_console_login(&pending, now_s() - LOGIN_TTL_SECS, MAX_PENDING)
            .await?;
        if !kept {
            return Err(ConsoleError::Busy);
        }
        Ok::<_, ConsoleError>((url, browser))
    };
    match started.await {
        Ok((url, browser)) => {
            let mut response = Redirect::to(&url).into_response();
            let cookie = console.set_cookie(
                LOGIN_COOKIE,
                &browser,
                "Lax",
                "/callback",
                Some(LOGIN_TTL_SECS),
            );
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => console.refusal(&e),
    }
}

/// `GET /console/callback?code=…&state=…`: the sign-in taken back, checked, and a session
/// started; or a page saying why not, and no session.
pub(super) async fn callback(
    State(console): State<Console>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let query = session::form(uri.query().unwrap_or_default().as_bytes());
    let mut response = match finish(&console, &headers, &query).await {
        Ok(who) => started(&console, &headers, who, "GET", "/console/callback").await,
        Err((e, actor)) => {
            if let Some(actor) = actor
                && let Err(audit) = console
                    .record_actor(
                        &headers,
                        "GET",
                        "/console/callback",
                        Some(&actor),
                        e.status(),
                    )
                    .await
            {
                return console.refusal(&audit);
            }
            console.refusal(&e)
        }
    };
    response.headers_mut().append(
        header::SET_COOKIE,
        console.clear_cookie(LOGIN_COOKIE, "/callback"),
    );
    response
}

/// The callback's checks, in order: the provider's error, the sign-in under way (taken, so
/// never twice), its browser, the code exchange and ID token, the role.
async fn finish(
    console: &Console,
    headers: &HeaderMap,
    query: &std::collections::HashMap<String, String>,
) -> Result<SignedIn, (ConsoleError, Option<Actor>)> {
    let plain = |e: ConsoleError| (e, None);
    if let Some(error) = query.get("error") {
        return Err(plain(ConsoleError::Denied(oidc::safe_word(error))));
    }
    let state = query
        .get("state")
        .ok_or(plain(ConsoleError::Missing("state")))?;
    let code = query
        .get("code")
        .ok_or(plain(ConsoleError::Missing("code")))?;
    let pending = console
        .0
        .store
        .take_console_login(&sha256_hex(state))
        .await
        .map_err(|e| plain(e.into()))?
        .ok_or(plain(ConsoleError::UnknownLogin))?;
    if now_s() - pending.created_s > LOGIN_TTL_SECS {
        return Err(plain(ConsoleError::UnknownLogin));
    }
    let browser = session::cookie(headers, LOGIN_COOKIE).map(sha256_hex);
    let same_browser = browser.is_some_and(|b| {
        aws_lc_rs::constant_time::verify_slices_are_equal(
            b.as_bytes(),
            pending.browser_hash.as_bytes(),
        )
        .is_ok()
    });
    if !same_browser {
        return Err(plain(ConsoleError::OtherBrowser));
    }
    let provider = console
        .0
        .provider
        .as_ref()
        .ok_or(plain(ConsoleError::UnknownLogin))?;
    let claims = provider
        .redeem(code, &pending.verifier, &pending.nonce_hash)
        .await
        .map_err(plain)?;
    let principal = crate::auth::principal_from_claims(&console.0.claims, &claims)
        .map_err(|e| plain(ConsoleError::IdToken(e)))?;
    let actor = Actor {
        user: principal.user.clone(),
        name: principal.name.clone(),
        org: principal.org.clone(),
        role: principal.role.clone(),
    };
    let mut choices = offered(&principal, &claims, &console.0.config);
    if principal.patient.is_some() || choices.is_empty() {
        return Err((ConsoleError::RoleNotAllowed, Some(actor)));
    }
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let role = (choices.len() == 1).then(|| choices.remove(0));
    Ok(SignedIn {
        issuer: issuer.to_owned(),
        subject: principal.user,
        name: principal.name,
        role,
        choices,
    })
}

/// The roles a user may sign in as: the token's role claim (at its organisation claim) and
/// each NHS CIS2 role (at its `org_code`), as the config maps their codes, that the config
/// allows; each once, in the token's order.
pub(super) fn offered(
    principal: &Principal,
    claims: &Map<String, Value>,
    config: &ConsoleConfig,
) -> Vec<Choice> {
    let mut all: Vec<Choice> = Vec::new();
    if let Some(role) = &principal.role {
        all.push((role.clone(), principal.org.clone()));
    }
    for entry in claims
        .get(CIS2_ROLES_CLAIM)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(code) = entry.get("role_code").and_then(Value::as_str) else {
            continue;
        };
        let org = entry.get("org_code").and_then(Value::as_str);
        if org.is_some_and(|o| !crate::fhir::is_ods_code(o)) {
            continue;
        }
        let short = code.rsplit(':').next().unwrap_or(code);
        let role = config
            .cis2_roles
            .get(code)
            .or_else(|| config.cis2_roles.get(short))
            .map_or(code, String::as_str);
        all.push((role.to_owned(), org.map(str::to_owned)));
    }
    let mut seen = std::collections::HashSet::new();
    all.retain(|c| config.allowed_roles.contains(&c.0) && seen.insert(c.clone()));
    all
}

/// A session started for `who`: recorded in the audit log when its role is settled (or
/// refused when the record cannot be kept), and the browser sent on to the console (or to
/// choose a role) with its new cookie. The page sends the browser on itself rather than by
/// a redirect: browsers differ on whether a redirect continuing a chain that began at the
/// identity provider's site is same-site (Chromium 156 sends the `SameSite=Strict` cookie
/// with it; stricter policies would not), and a navigation started by this page is
/// same-site in every one.
async fn started(
    console: &Console,
    headers: &HeaderMap,
    who: SignedIn,
    method: &str,
    route: &'static str,
) -> Response {
    let settled = who.role.is_some();
    let (id, session) = match console.start_session(who).await {
        Ok(started) => started,
        Err(e) => return console.refusal(&e),
    };
    if settled
        && let Err(e) = console
            .record(headers, method, route, Some(&session), StatusCode::OK)
            .await
    {
        let _ = console
            .0
            .store
            .delete_console_session(&session.id_hash)
            .await;
        return console.refusal(&e);
    }
    let next = if settled { "/" } else { "/role" };
    let mut response = console.page(StatusCode::OK, pages::onward(&console.0.path, next));
    response
        .headers_mut()
        .append(header::SET_COOKIE, console.session_cookie(&id));
    response
}

/// `POST /console/demo-sign-in`: signs in as the demo's IG lead, with no identity provider.
/// Served only while the demo key is trusted.
pub(super) async fn demo(
    State(console): State<Console>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expected = session::cookie(&headers, FORM_COOKIE).unwrap_or_default();
    if !session::csrf_matches(expected, &session::form(&body)) {
        return console.refusal(&ConsoleError::Csrf);
    }
    let allowed = &console.0.config.allowed_roles;
    let role = if allowed.iter().any(|r| r == "ig-lead") {
        "ig-lead".to_owned()
    } else {
        allowed.first().cloned().unwrap_or_default()
    };
    let who = SignedIn {
        issuer: DEMO_ISSUER.to_owned(),
        subject: DEMO_USER.to_owned(),
        name: Some(DEMO_NAME.to_owned()),
        role: Some((role, Some(DEMO_ORG.to_owned()))),
        choices: Vec::new(),
    };
    let mut response = started(&console, &headers, who, "POST", "/console/demo-sign-in").await;
    response
        .headers_mut()
        .append(header::SET_COOKIE, console.clear_cookie(FORM_COOKIE, ""));
    response
}

/// `GET /console/role`: the roles on offer, to choose one.
pub(super) async fn role_page(State(console): State<Console>, headers: HeaderMap) -> Response {
    match console.current(&headers).await {
        Ok(Current::Choosing(session)) => {
            let choices = choices_of(&session);
            console.page(
                StatusCode::OK,
                pages::choose_role(&console.0.path, &choices, &session.csrf),
            )
        }
        Ok(Current::Active(_)) => console.redirect("/"),
        Ok(Current::None) => console.redirect("/sign-in"),
        Err(e) => console.refusal(&e),
    }
}

fn choices_of(session: &crate::store::ConsoleSession) -> Vec<Choice> {
    session
        .choices
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default()
}

/// `POST /console/role`: settles the session's role (with the form's token); the sign-in is
/// recorded now that it is whole.
pub(super) async fn choose_role(
    State(console): State<Console>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let session = match console.current(&headers).await {
        Ok(Current::Choosing(session)) => session,
        Ok(Current::Active(_)) => return console.redirect("/"),
        Ok(Current::None) => return console.redirect("/sign-in"),
        Err(e) => return console.refusal(&e),
    };
    let form = session::form(&body);
    if !session::csrf_matches(&session.csrf, &form) {
        return console.refusal(&ConsoleError::Csrf);
    }
    let choices = choices_of(&session);
    let Some((role, org)) = form
        .get("choice")
        .and_then(|c| c.parse::<usize>().ok())
        .and_then(|i| choices.get(i))
    else {
        return console.redirect("/role");
    };
    let chosen = async {
        let store = &console.0.store;
        if !store
            .choose_console_role(&session.id_hash, role, org.as_deref())
            .await?
        {
            return Err(ConsoleError::UnknownLogin);
        }
        let mut whole = session.clone();
        whole.role = Some(role.clone());
        whole.org = org.clone();
        console
            .record(
                &headers,
                "POST",
                "/console/role",
                Some(&whole),
                StatusCode::SEE_OTHER,
            )
            .await
    };
    match chosen.await {
        Ok(()) => console.redirect("/"),
        Err(e) => {
            // No session runs unrecorded.
            let _ = console
                .0
                .store
                .delete_console_session(&session.id_hash)
                .await;
            console.refusal(&e)
        }
    }
}
