//! Sessions: the cookie that names one, its row in the store (only the id's SHA-256 is kept),
//! the idle and absolute timeouts, and the token each form must repeat.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, header};

use super::{Console, ConsoleError, now_s, random_token, sha256_hex};
use crate::store::ConsoleSession;

/// The session cookie: `HttpOnly`, `SameSite=Strict`, `Path` the console's.
pub(super) const SESSION_COOKIE: &str = "concord_console";
/// Binds a sign-in under way to the browser that started it. `SameSite=Lax`, since the
/// identity provider's redirect back is a cross-site navigation; only the callback sees it.
pub(super) const LOGIN_COOKIE: &str = "concord_console_login";
/// Before sign-in: the token the demo sign-in form repeats (double submit).
pub(super) const FORM_COOKIE: &str = "concord_console_form";
/// How long a sign-in may stay at the identity provider, in seconds.
pub(super) const LOGIN_TTL_SECS: i64 = 600;

/// The session a request belongs to.
#[derive(Debug)]
pub(super) enum Current {
    /// No cookie, or one naming no live session.
    None,
    /// Signed in, with several roles on offer and none chosen yet.
    Choosing(ConsoleSession),
    /// Signed in with a role.
    Active(ConsoleSession),
}

/// The value of a cookie the request carries.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The fields of a form body (`application/x-www-form-urlencoded`).
pub(super) fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// True when the form's `csrf` field is the expected token (compared in constant time).
pub(super) fn csrf_matches(expected: &str, form: &HashMap<String, String>) -> bool {
    form.get("csrf").is_some_and(|given| {
        !expected.is_empty()
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                given.as_bytes(),
                expected.as_bytes(),
            )
            .is_ok()
    })
}

/// Who signs in: what a new session records.
#[derive(Debug, Clone)]
pub(super) struct SignedIn {
    pub(super) issuer: String,
    pub(super) subject: String,
    pub(super) name: Option<String>,
    /// The role and organisation, when settled; otherwise `choices` holds the offer.
    pub(super) role: Option<(String, Option<String>)>,
    pub(super) choices: Vec<(String, Option<String>)>,
}

impl Console {
    /// The live session the request's cookie names. An expired one (idle or absolute
    /// timeout) is deleted and counts as none; a live one is marked as used now.
    pub(super) async fn current(&self, headers: &HeaderMap) -> Result<Current, ConsoleError> {
        let Some(id) = cookie(headers, SESSION_COOKIE) else {
            return Ok(Current::None);
        };
        let store = &self.0.store;
        let Some(session) = store.console_session(&sha256_hex(id)).await? else {
            return Ok(Current::None);
        };
        let now = now_s();
        let idle = i64::try_from(self.0.config.idle_timeout_secs).unwrap_or(i64::MAX);
        let absolute = i64::try_from(self.0.config.absolute_timeout_secs).unwrap_or(i64::MAX);
        if now.saturating_sub(session.last_seen_s) > idle
            || now.saturating_sub(session.created_s) > absolute
        {
            store.delete_console_session(&session.id_hash).await?;
            return Ok(Current::None);
        }
        store.touch_console_session(&session.id_hash, now).await?;
        Ok(if session.role.is_some() {
            Current::Active(session)
        } else {
            Current::Choosing(session)
        })
    }

    /// Starts a session for a user just signed in: a fresh random id (whatever cookie the
    /// browser sent before is never reused, so a session cannot be fixed in advance), kept
    /// only as its hash. Expired sessions are swept out on the way. The id, for the cookie.
    pub(super) async fn start_session(
        &self,
        who: SignedIn,
    ) -> Result<(String, ConsoleSession), ConsoleError> {
        let now = now_s();
        let idle = i64::try_from(self.0.config.idle_timeout_secs).unwrap_or(i64::MAX);
        let absolute = i64::try_from(self.0.config.absolute_timeout_secs).unwrap_or(i64::MAX);
        self.0
            .store
            .expire_console_sessions(now.saturating_sub(idle), now.saturating_sub(absolute))
            .await?;
        let id = random_token()?;
        // A list of pairs of text always serialises.
        let choices = (!who.choices.is_empty())
            .then(|| serde_json::to_string(&who.choices).unwrap_or_default());
        let (role, org) = match who.role {
            Some((role, org)) => (Some(role), org),
            None => (None, None),
        };
        let session = ConsoleSession {
            id_hash: sha256_hex(&id),
            csrf: random_token()?,
            issuer: who.issuer,
            subject: who.subject,
            name: who.name,
            org,
            role,
            choices,
            created_s: now,
            last_seen_s: now,
        };
        self.0.store.create_console_session(&session).await?;
        Ok((id, session))
    }

    /// A `Set-Cookie` value for a cookie of the console's: `HttpOnly`, `Secure` when the
    /// gateway is reached over HTTPS, `Path` under the console.
    pub(super) fn set_cookie(
        &self,
        name: &str,
        value: &str,
        same_site: &str,
        sub_path: &str,
        max_age: Option<i64>,
    ) -> HeaderValue {
        let mut text = format!(
            "{name}={value}; Path={}{sub_path}; HttpOnly; SameSite={same_site}",
            self.0.path
        );
        if let Some(secs) = max_age {
            text.push_str(&format!("; Max-Age={secs}"));
        }
        if self.0.secure {
            text.push_str("; Secure");
        }
        // INVARIANT: names, values (base64url) and the console's path are header-safe.
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
    }

    /// The session cookie for a new session.
    pub(super) fn session_cookie(&self, id: &str) -> HeaderValue {
        self.set_cookie(SESSION_COOKIE, id, "Strict", "", None)
    }

    /// A `Set-Cookie` value that removes a cookie of the console's at `sub_path`.
    pub(super) fn clear_cookie(&self, name: &str, sub_path: &str) -> HeaderValue {
        self.set_cookie(name, "", "Strict", sub_path, Some(0))
    }
}
