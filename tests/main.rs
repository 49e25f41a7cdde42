//! Integration tests: the whole gateway on 127.0.0.1, real upstream FHIR servers started in
//! the test, a real SQLite file (and PostgreSQL when `CONCORD_TEST_DATABASE_URL` is set),
//! called over HTTP. One test binary, to keep links few on small machines.

mod support {
    pub(crate) mod app;
    pub(crate) mod axe;
    pub(crate) mod browser;
    pub(crate) mod data;
    pub(crate) mod keyboard;
    pub(crate) mod oidc;
    pub(crate) mod pki;
    pub(crate) mod upstream;
}

mod agreements;
mod architecture;
mod audit;
mod audit_events;
mod audit_scope;
mod auth;
mod conformance;
mod console;
mod console_agreements;
mod console_audit;
mod console_browser;
mod console_browser_a11y;
mod console_browser_health;
mod console_browser_idp;
mod console_browser_people;
mod console_browser_review;
mod console_health;
mod console_people;
mod console_review;
mod console_writes;
mod demo;
mod errors;
mod failures;
mod fleet;
mod hostile;
mod hygiene;
mod locator;
mod ops;
mod paging;
mod profiles;
mod read_path;
mod slow_clients;
mod tls;
mod writes;
mod writes_settle;
