//! The record locator's index: which sources hold which NHS numbers (`locator_entries`), and
//! each source's background sync (`locator_sources`). Shared by every instance on the store;
//! an instance runs a source's round only while it holds that source's lease.

use super::{Store, StoreError};

/// Most NHS numbers written in one transaction (a page of a sync is split into these).
const WRITE_BATCH: usize = 1_000;

/// One source's sync, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LocatorSource {
    /// The source.
    pub source_id: String,
    /// When its last complete pass began (the index holds everyone it held then); `None`
    /// when no pass has completed.
    pub synced_at: Option<i64>,
    /// When the pass under way began, if one is.
    pub pass_started_at: Option<i64>,
    /// Where the pass under way goes on (the source's own paging link); `None`: from the
    /// start.
    pub cursor: Option<String>,
    /// Pages read in the pass under way.
    pub pages: i64,
    /// When the next round may start.
    pub due_at: i64,
    /// Until when a round is under way.
    pub lease_until: Option<i64>,
    /// Which instance runs it (its audit chain).
    pub leased_by: Option<String>,
    /// When the last round started.
    pub attempted_at: Option<i64>,
    /// When the last failed round started (`None` once a round succeeds).
    pub failed_at: Option<i64>,
    /// What kind of failure that was (a stable name, never an upstream's text).
    pub failure: Option<String>,
    /// Entries held for the source, as last counted.
    pub entries: i64,
}

/// How a round of a source's sync ended.
#[derive(Debug, Clone)]
pub struct RoundEnd<'a> {
    /// The start of the pass that this round completed, if it completed one.
    pub completed: Option<i64>,
    /// When the next round may start.
    pub due_at: i64,
    /// The round's start and the kind of failure, when it failed.
    pub failure: Option<(i64, &'a str)>,
}

/// A page a round read: the NHS numbers on it, and where the pass goes on.
#[derive(Debug, Clone)]
pub struct PageRead<'a> {
    /// The NHS numbers the page held (checked, ten digits).
    pub numbers: &'a [String],
    /// Where the pass goes on; `None` when this was its last page.
    pub next: Option<&'a str>,
    /// When the pass began.
    pub pass_started_at: i64,
    /// Pages read in the pass, this one included.
    pub pages: i64,
}

/// A query reading whole `locator_sources` rows, followed by `$rest`.
macro_rules! sources_select {
    ($rest:literal) => {
        concat!(
            "SELECT source_id, synced_at, pass_started_at, cursor, pages, due_at, lease_until, leased_by, attempted_at, failed_at, failure, entries FROM locator_sources",
            $rest
        )
    };
}

impl Store {
    /// The sources the index says hold this NHS number.
    pub async fn locator_holders(&self, nhs_number: &str) -> Result<Vec<String>, StoreError> {
        Ok(
            with_pool!(self, pool => sqlx::query_scalar("SELECT source_id FROM locator_entries WHERE nhs_number = $1")
                .bind(nhs_number).fetch_all(pool).await?),
        )
    }

    /// Records what a source answered when asked about a person during resolution: it holds
    /// them (the entry is added or renewed) or it does not (the entry is removed).
    pub async fn locator_note(
        &self,
        source_id: &str,
        nhs_number: &str,
        holds: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            if holds {
                sqlx::query("INSERT INTO locator_entries (nhs_number, source_id, seen_at) VALUES ($1, $2, $3) ON CONFLICT (nhs_number, source_id) DO UPDATE SET seen_at = excluded.seen_at")
                    .bind(nhs_number).bind(source_id).bind(now).execute(pool).await?;
            } else {
                sqlx::query("DELETE FROM locator_entries WHERE nhs_number = $1 AND source_id = $2")
                    .bind(nhs_number).bind(source_id).execute(pool).await?;
            }
        });
        Ok(())
    }

    /// Makes sure every one of these sources has a sync row (a new one is due now).
    pub async fn locator_register(&self, sources: &[String], now: i64) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for source in sources {
                sqlx::query("INSERT INTO locator_sources (source_id, due_at) VALUES ($1, $2) ON CONFLICT (source_id) DO NOTHING")
                    .bind(source).bind(now).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every source's sync, by source id.
    pub async fn locator_sources(&self) -> Result<Vec<LocatorSource>, StoreError> {
        Ok(
            with_pool!(self, pool => sqlx::query_as(sources_select!(" ORDER BY source_id")).fetch_all(pool).await?),
        )
    }

    /// Takes the lease on a source's next round for `instance` until `lease_until`, when the
    /// round is due and no other instance holds a lease that has not run out; the source's
    /// sync as it stands when taken, `None` when not.
    pub async fn locator_claim(
        &self,
        source_id: &str,
        instance: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<LocatorSource>, StoreError> {
        let taken = with_pool!(self, pool => sqlx::query("UPDATE locator_sources SET lease_until = $1, leased_by = $2, attempted_at = $3 WHERE source_id = $4 AND due_at <= $3 AND (lease_until IS NULL OR lease_until < $3)")
            .bind(lease_until).bind(instance).bind(now).bind(source_id).execute(pool).await?.rows_affected());
        if taken != 1 {
            return Ok(None);
        }
        Ok(
            with_pool!(self, pool => sqlx::query_as(sources_select!(" WHERE source_id = $1")).bind(source_id).fetch_optional(pool).await?),
        )
    }

    /// Adds (or renews) the entries of one page a round read, and where the pass goes on.
    /// Written in batches of at most [`WRITE_BATCH`]; the pass's position moves on with the
    /// last one, so that a round cut short resumes from a page whose numbers are all kept.
    pub async fn locator_save_page(
        &self,
        source_id: &str,
        page: &PageRead<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        let batches: Vec<&[String]> = if page.numbers.is_empty() {
            vec![&[]]
        } else {
            page.numbers.chunks(WRITE_BATCH).collect()
        };
        let count = batches.len();
        for (i, batch) in batches.into_iter().enumerate() {
            let last = i + 1 == count;
            with_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                for nhs in batch {
                    sqlx::query("INSERT INTO locator_entries (nhs_number, source_id, seen_at) VALUES ($1, $2, $3) ON CONFLICT (nhs_number, source_id) DO UPDATE SET seen_at = excluded.seen_at")
                        .bind(nhs).bind(source_id).bind(now).execute(&mut *tx).await?;
                }
                if last {
                    sqlx::query("UPDATE locator_sources SET cursor = $1, pass_started_at = $2, pages = $3 WHERE source_id = $4")
                        .bind(page.next).bind(page.pass_started_at).bind(page.pages).bind(source_id).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            });
        }
        Ok(())
    }

    /// Ends a round: gives the lease back, counts the source's entries, and records whether
    /// the round completed a pass (the pass under way is then over) or failed (the next
    /// round starts the pass again, entries kept). Returns the entries the source has.
    pub async fn locator_end_round(
        &self,
        source_id: &str,
        end: &RoundEnd<'_>,
    ) -> Result<i64, StoreError> {
        let entries: i64 = with_pool!(self, pool => sqlx::query_scalar("SELECT COUNT(*) FROM locator_entries WHERE source_id = $1")
            .bind(source_id).fetch_one(pool).await?);
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE locator_sources SET lease_until = NULL, leased_by = NULL, due_at = $1, entries = $2 WHERE source_id = $3")
                .bind(end.due_at).bind(entries).bind(source_id).execute(&mut *tx).await?;
            if let Some(started) = end.completed {
                sqlx::query("UPDATE locator_sources SET synced_at = $1, pass_started_at = NULL, cursor = NULL, pages = 0 WHERE source_id = $2")
                    .bind(started).bind(source_id).execute(&mut *tx).await?;
            }
            match end.failure {
                Some((at, kind)) => {
                    // The pass starts again: its paging link may no longer work.
                    sqlx::query("UPDATE locator_sources SET failed_at = $1, failure = $2, cursor = NULL, pass_started_at = NULL, pages = 0 WHERE source_id = $3")
                        .bind(at).bind(kind).bind(source_id).execute(&mut *tx).await?;
                }
                None => {
                    sqlx::query("UPDATE locator_sources SET failed_at = NULL, failure = NULL WHERE source_id = $1")
                        .bind(source_id).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        });
        Ok(entries)
    }
}
