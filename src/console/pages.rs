//! The console's pages. Each takes the console's path (for links, the stylesheet and form
//! actions) and what it shows; all text that is not written here goes through
//! [`Html::text`].

use super::DEMO_ISSUER;
use super::html::Html;
use super::signin::Choice;
use crate::store::ConsoleSession;

/// The frame of every page: head, banner, main. No page reloads itself (a delayed `<meta>`
/// refresh fails WCAG 2.2.1): one that shows a job's progress offers a link to the latest.
pub(super) fn layout(path: &str, title: &str, body: impl FnOnce(&mut Html)) -> String {
    let mut h = Html::default();
    h.raw("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>")
        .text(title)
        .raw(" – Concord IG console</title>\n<link rel=\"stylesheet\" href=\"")
        .text(path)
        .raw("/static/console.css\">\n</head>\n<body>\n")
        .raw("<a class=\"skip-link\" href=\"#main\">Skip to main content</a>\n")
        .raw("<header class=\"banner\"><div class=\"wrap\"><a class=\"brand\" href=\"")
        .text(path)
        .raw("/\">Concord</a> <span class=\"service\">IG console</span></div></header>\n")
        .raw("<main class=\"wrap\" id=\"main\">\n");
    body(&mut h);
    h.raw("</main>\n</body>\n</html>\n");
    h.finish()
}

/// A form's hidden CSRF field.
fn csrf_field(h: &mut Html, token: &str) {
    h.raw("<input type=\"hidden\" name=\"csrf\" value=\"")
        .text(token)
        .raw("\">\n");
}

/// `GET /console/`: who is signed in, and sign-out; `waiting` is how many emergency accesses
/// wait for review and how many of them are overdue, when the store could say.
pub(super) fn home(path: &str, session: &ConsoleSession, waiting: Option<(i64, i64)>) -> String {
    let none = "not given";
    layout(path, "Signed in", |h| {
        if session.issuer == DEMO_ISSUER {
            h.raw("<p class=\"demo-banner\"><strong>Demo sign-in.</strong> ")
                .raw("This session was opened without an identity provider, because the published demo key is trusted. Never run a gateway like this with real records.</p>\n");
        }
        h.raw("<h1>Signed in as ")
            .text(session.name.as_deref().unwrap_or(&session.subject))
            .raw("</h1>\n<dl class=\"summary\">\n<dt>Name</dt><dd id=\"who-name\">")
            .text(session.name.as_deref().unwrap_or(none))
            .raw("</dd>\n<dt>Role</dt><dd id=\"who-role\">")
            .text(session.role.as_deref().unwrap_or(none))
            .raw("</dd>\n<dt>Organisation</dt><dd id=\"who-org\">")
            .text(session.org.as_deref().unwrap_or(none))
            .raw("</dd>\n<dt>User id</dt><dd>")
            .text(&session.subject)
            .raw("</dd>\n<dt>Signed in by</dt><dd>")
            .text(&session.issuer)
            .raw("</dd>\n</dl>\n")
            .raw("<nav aria-label=\"Console\"><ul class=\"nav\"><li><a id=\"nav-audit\" href=\"")
            .text(path)
            .raw("/audit\">Search the audit log</a></li>");
        review_link(h, path, waiting);
        h.raw("<li><a id=\"nav-person\" href=\"")
            .text(path)
            .raw("/person\">Who has looked at a record</a></li>")
            .raw("<li><a id=\"nav-agreements\" href=\"")
            .text(path)
            .raw("/agreements\">Agreements</a></li>")
            .raw("<li><a id=\"nav-health\" href=\"")
            .text(path)
            .raw("/health\">Health of the record: sources, signed heads, verify</a></li>")
            .raw("<li><a id=\"nav-charts\" href=\"")
            .text(path)
            .raw("/charts\">Pictures: accesses, break-glass and refusals</a></li>")
            .raw("</ul></nav>\n")
            .raw("<form method=\"post\" action=\"")
            .text(path)
            .raw("/sign-out\">\n");
        csrf_field(h, &session.csrf);
        h.raw("<button type=\"submit\" class=\"button secondary\" id=\"sign-out\">Sign out</button>\n</form>\n");
    })
}

/// The home page's link to the break-glass review, with how many wait and are overdue.
fn review_link(h: &mut Html, path: &str, waiting: Option<(i64, i64)>) {
    h.raw("<li><a id=\"nav-review\" href=\"")
        .text(path)
        .raw("/review\">Break-glass review</a>");
    if let Some((n, overdue)) = waiting {
        h.raw(" <span id=\"review-waiting\">(")
            .text(&n.to_string())
            .raw(" waiting");
        if overdue > 0 {
            h.raw(", <strong>")
                .text(&overdue.to_string())
                .raw(" overdue</strong>");
        }
        h.raw(")</span>");
    }
    h.raw("</li>");
}

/// `GET /console/sign-in`: the way in through the identity provider and, while the demo key
/// is trusted, the demo sign-in.
pub(super) fn sign_in(
    path: &str,
    provider: bool,
    demo_token: Option<&str>,
    notice: Option<&str>,
) -> String {
    layout(path, "Sign in", |h| {
        if let Some(notice) = notice {
            h.raw("<p class=\"notice\" role=\"status\">")
                .text(notice)
                .raw("</p>\n");
        }
        h.raw("<h1>Sign in to the IG console</h1>\n")
            .raw("<p>The console is for information-governance leads. Sign in with your organisation's account; only roles this gateway allows can go further.</p>\n");
        if provider {
            h.raw("<p><a class=\"button\" id=\"sign-in\" href=\"")
                .text(path)
                .raw("/login\">Sign in with your organisation's account</a></p>\n");
        }
        if let Some(token) = demo_token {
            h.raw("<section class=\"demo-banner\">\n<h2>Demo sign-in</h2>\n")
                .raw("<p>This gateway trusts the published demo key, so anyone can sign in here as the demo's IG lead without an identity provider. It is offered only while the demo key is trusted.</p>\n")
                .raw("<form method=\"post\" action=\"")
                .text(path)
                .raw("/demo-sign-in\">\n");
            csrf_field(h, token);
            h.raw("<button type=\"submit\" class=\"button warning\" id=\"demo-sign-in\">Demo sign-in as an IG lead</button>\n</form>\n</section>\n");
        }
    })
}

/// `GET /console/role`: one choice per role the user holds that the console allows.
pub(super) fn choose_role(path: &str, choices: &[Choice], csrf: &str) -> String {
    layout(path, "Choose a role", |h| {
        h.raw("<h1>Choose the role you are working in</h1>\n<form method=\"post\" action=\"")
            .text(path)
            .raw("/role\">\n");
        csrf_field(h, csrf);
        h.raw("<fieldset>\n<legend>Your roles that may use the IG console</legend>\n");
        for (i, (role, org)) in choices.iter().enumerate() {
            let id = i.to_string();
            h.raw("<div class=\"choice\"><input type=\"radio\" name=\"choice\" id=\"choice-")
                .text(&id)
                .raw("\" value=\"")
                .text(&id)
                .raw("\" required><label for=\"choice-")
                .text(&id)
                .raw("\">")
                .text(role)
                .raw(" at ")
                .text(org.as_deref().unwrap_or("no organisation given"))
                .raw("</label></div>\n");
        }
        h.raw("</fieldset>\n<button type=\"submit\" class=\"button\" id=\"choose\">Continue</button>\n</form>\n");
    })
}

/// The page a sign-in ends on: it sends the browser on to `next` (under the console) by
/// itself, with a link for a browser that does not.
pub(super) fn onward(path: &str, next: &str) -> String {
    let mut h = Html::default();
    h.raw("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
        .raw("<meta http-equiv=\"refresh\" content=\"0;url=")
        .text(path)
        .text(next)
        .raw("\">\n<title>Signed in – Concord IG console</title>\n<link rel=\"stylesheet\" href=\"")
        .text(path)
        .raw("/static/console.css\">\n</head>\n<body>\n<main class=\"wrap\" id=\"main\">\n")
        .raw("<p>You are signed in. <a href=\"")
        .text(path)
        .text(next)
        .raw("\">Continue to the IG console</a>.</p>\n</main>\n</body>\n</html>\n");
    h.finish()
}

/// A refusal or failure: what went wrong and the way back.
pub(super) fn refusal(path: &str, heading: &str, message: &str) -> String {
    layout(path, heading, |h| {
        h.raw("<h1>")
            .text(heading)
            .raw("</h1>\n<p id=\"reason\">")
            .text(message)
            .raw("</p>\n<p><a href=\"")
            .text(path)
            .raw("/sign-in\">Back to sign-in</a></p>\n");
    })
}
