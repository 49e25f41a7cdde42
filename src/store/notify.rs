//! Change notices between the instances of a fleet on one PostgreSQL.
//!
//! Each instance caches people's links and sharing choices for a moment. Every change to them
//! is announced on the channel [`CHANNEL`] in the transaction that makes it (triggers on
//! `consents`, `source_links` and `source_checks`, migration 0011), and [`listen`] hears
//! them on a connection of its own, outside the pool, named so that operators can find it in
//! `pg_stat_activity`. The payload is `consent:<gateway person id>` or
//! `links:<gateway person id>`: the gateway's own uuid, never personal data.
//!
//! Notices are not queued for a listener that is not connected: whoever uses them must stop
//! trusting its caches from [`Event::Lost`] until the next [`Event::Listening`], and forget
//! everything it cached when that comes. SQLite needs none of this (one process per file).

use std::ops::ControlFlow;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use uuid::Uuid;

use super::{Store, StoreError};

/// The channel changes are announced on.
pub const CHANNEL: &str = "concord_changes";

/// What changed for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A sharing choice was recorded.
    Consent,
    /// Their links to the sources changed, or one was found stale.
    Links,
}

impl ChangeKind {
    /// The name in the payload (and in metrics).
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Consent => "consent",
            ChangeKind::Links => "links",
        }
    }
}

/// One change notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// What changed.
    pub kind: ChangeKind,
    /// Whose: the gateway person id.
    pub person: Uuid,
}

impl Change {
    /// Reads a notice's payload (`consent:<uuid>`, `links:<uuid>`); `None` for anything else.
    pub fn parse(payload: &str) -> Option<Change> {
        let (kind, person) = payload.split_once(':')?;
        let kind = match kind {
            "consent" => ChangeKind::Consent,
            "links" => ChangeKind::Links,
            _ => return None,
        };
        Some(Change {
            kind,
            person: Uuid::parse_str(person).ok()?,
        })
    }
}

/// What the listener tells its owner.
#[derive(Debug)]
pub enum Event {
    /// Connected and listening: every change committed from now on will be heard (any
    /// committed before may have been missed).
    Listening,
    /// A change was heard.
    Changed(Change),
    /// A notice on the channel that is not a change this gateway announces (counted, ignored).
    Unrecognised,
    /// Not listening: the connection could not be made, or was lost (changes are missed
    /// until the next [`Event::Listening`]).
    Lost(StoreError),
}

/// How often the listening connection is asked to answer, so that a connection lost without
/// a word (a firewall that dropped it, a network that went away) is noticed, and an idle one
/// is not dropped.
pub const PING_EVERY: Duration = Duration::from_secs(2);

/// How long a ping, or making the connection, may take before the connection counts as lost.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The first wait before connecting again; it doubles on each failure, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait between attempts to connect.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Listens for changes on a connection of its own named `application_name`, connecting again
/// (with backoff) whenever it is lost, and tells `on` each [`Event`] until `on` breaks. Returns
/// at once on SQLite, which needs no notices.
pub async fn listen(
    store: &Store,
    application_name: &str,
    mut on: impl FnMut(Event) -> ControlFlow<()>,
) {
    let Store::Postgres(pool) = store else {
        return;
    };
    let options = (*pool.connect_options())
        .clone()
        .application_name(application_name);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let lost = match connect(&options).await {
            Ok((own_pool, mut listener)) => {
                backoff = FIRST_BACKOFF;
                if on(Event::Listening).is_break() {
                    own_pool.close().await;
                    return;
                }
                let lost = hear(&mut listener, &mut on).await;
                drop(listener);
                // Bounded: a connection that is already gone closes at once.
                let _ = tokio::time::timeout(ANSWER_WITHIN, own_pool.close()).await;
                match lost {
                    Some(e) => e,
                    None => return,
                }
            }
            Err(e) => e,
        };
        if on(Event::Lost(lost)).is_break() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A pool of one connection (the listener's own, outside the gateway's pool) and the
/// listener on it, listening on [`CHANNEL`].
async fn connect(options: &PgConnectOptions) -> Result<(PgPool, PgListener), StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(ANSWER_WITHIN)
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection is the caller's to handle (its caches must be cleared before they
    // are trusted again), never reconnected behind its back.
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    tokio::time::timeout(ANSWER_WITHIN, listener.listen(CHANNEL))
        .await
        .map_err(|_| StoreError::Timeout(ANSWER_WITHIN))??;
    Ok((pool, listener))
}

/// Hears notices until the connection is lost (`Some`) or `on` breaks (`None`).
async fn hear(
    listener: &mut PgListener,
    on: &mut impl FnMut(Event) -> ControlFlow<()>,
) -> Option<StoreError> {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            // `try_recv` is cancel-safe: a notice half read stays in the buffer.
            heard = listener.try_recv() => {
                let event = match heard {
                    Ok(Some(notice)) => match Change::parse(notice.payload()) {
                        Some(change) => Event::Changed(change),
                        None => Event::Unrecognised,
                    },
                    Ok(None) => {
                        return Some(StoreError::Database(sqlx::Error::Io(
                            std::io::ErrorKind::UnexpectedEof.into(),
                        )));
                    }
                    Err(e) => return Some(e.into()),
                };
                if on(event).is_break() {
                    return None;
                }
            }
            _ = ping.tick() => {
                // Notices that arrive meanwhile are buffered for the next `try_recv`.
                let answered = tokio::time::timeout(
                    ANSWER_WITHIN,
                    sqlx::query("SELECT 1").execute(&mut *listener),
                )
                .await;
                match answered {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Some(e.into()),
                    Err(_) => return Some(StoreError::Timeout(ANSWER_WITHIN)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_a_kind_and_a_gateway_id() {
        let id = Uuid::new_v4();
        assert_eq!(
            Change::parse(&format!("consent:{id}")),
            Some(Change {
                kind: ChangeKind::Consent,
                person: id
            })
        );
        assert_eq!(
            Change::parse(&format!("links:{id}")).map(|c| c.kind),
            Some(ChangeKind::Links)
        );
        for other in [
            "",
            "consent",
            "consent:",
            "consent:9990000018",
            &format!("audit:{id}"),
            &format!("links:{id}:extra"),
        ] {
            assert_eq!(Change::parse(other), None, "{other}");
        }
    }
}
