//! Resources kept in the store by `kind = "store"` sources: the current version of each, and
//! every version ever written (never overwritten).

use uuid::Uuid;

use super::{Store, StoreError};

/// One version of a held resource.
#[derive(Debug, Clone)]
pub struct HeldVersion {
    /// `meta.versionId`, from 1.
    pub version: i64,
    /// The resource (FHIR JSON), as it was written.
    pub body: String,
}

/// How a versioned write went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldWrite {
    /// Written as this version.
    Written(i64),
    /// The resource's current version is not the one expected: nothing was written.
    Conflict {
        /// The current version (`None`: there is no such resource).
        current: Option<i64>,
    },
}

impl Store {
    /// The current version of every resource of `resource_type` about `person` held by
    /// `source_id`, in id order, at most `limit`.
    pub async fn held_for_person(
        &self,
        source_id: &str,
        resource_type: &str,
        person: Uuid,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<String> = with_pool!(self, pool => sqlx::query_scalar("SELECT body FROM held_resources WHERE source_id = $1 AND person_id = $2 AND resource_type = $3 ORDER BY id LIMIT $4")
            .bind(source_id).bind(person.to_string()).bind(resource_type).bind(limit).fetch_all(pool).await?);
        Ok(rows)
    }

    /// True when `source_id` holds anything about `person`.
    pub async fn holds_any(&self, source_id: &str, person: Uuid) -> Result<bool, StoreError> {
        let n: Option<i64> = with_pool!(self, pool => sqlx::query_scalar("SELECT version FROM held_resources WHERE source_id = $1 AND person_id = $2 LIMIT 1")
            .bind(source_id).bind(person.to_string()).fetch_optional(pool).await?);
        Ok(n.is_some())
    }

    /// Up to `limit` current resources of a type, whoever they are about (`source check`).
    pub async fn held_sample(
        &self,
        source_id: &str,
        resource_type: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<String> = with_pool!(self, pool => sqlx::query_scalar("SELECT body FROM held_resources WHERE source_id = $1 AND resource_type = $2 ORDER BY id LIMIT $3")
            .bind(source_id).bind(resource_type).bind(limit).fetch_all(pool).await?);
        Ok(rows)
    }

    /// The current version of one held resource, and whom it is about.
    pub async fn held_read(
        &self,
        source_id: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<(HeldVersion, Uuid)>, StoreError> {
        let row: Option<(i64, String, String)> = with_pool!(self, pool => sqlx::query_as("SELECT version, body, person_id FROM held_resources WHERE source_id = $1 AND resource_type = $2 AND id = $3")
            .bind(source_id).bind(resource_type).bind(id).fetch_optional(pool).await?);
        row.map(|(version, body, person)| {
            Ok((HeldVersion { version, body }, super::parse_id(&person)?))
        })
        .transpose()
    }

    /// Every version of one held resource, oldest first.
    pub async fn held_history(
        &self,
        source_id: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<HeldVersion>, StoreError> {
        let rows: Vec<(i64, String)> = with_pool!(self, pool => sqlx::query_as("SELECT version, body FROM held_resource_versions WHERE source_id = $1 AND resource_type = $2 AND id = $3 ORDER BY version")
            .bind(source_id).bind(resource_type).bind(id).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(|(version, body)| HeldVersion { version, body })
            .collect())
    }

    /// Writes version `version` of a resource about `person` at `now` (Unix seconds), in one
    /// transaction: a create (`version` 1) only when there is no such resource, an update only
    /// when the current version is `version - 1`. Otherwise nothing is written and the
    /// current version is returned. `body` must already carry `meta.versionId = version`.
    pub async fn held_write(
        &self,
        key: (&str, &str, &str),
        person: Uuid,
        version: i64,
        body: &str,
        now: i64,
    ) -> Result<HeldWrite, StoreError> {
        let (source_id, resource_type, id) = key;
        let person = person.to_string();
        let sqlite = matches!(self, Store::Sqlite(_));
        with_pool!(self, pool => {
            // SQLite: take the write lock at the start, so that the version read and the write
            // are one step (a deferred transaction that reads then writes fails at once with
            // "database is locked" when another connection writes meanwhile).
            let mut tx = if sqlite {
                pool.begin_with("BEGIN IMMEDIATE").await?
            } else {
                pool.begin().await?
            };
            let current: Option<i64> = sqlx::query_scalar("SELECT version FROM held_resources WHERE source_id = $1 AND resource_type = $2 AND id = $3")
                .bind(source_id).bind(resource_type).bind(id).fetch_optional(&mut *tx).await?;
            if current != (version > 1).then_some(version - 1) {
                return Ok(HeldWrite::Conflict { current });
            }
            if version == 1 {
                sqlx::query("INSERT INTO held_resources (source_id, resource_type, id, person_id, version, updated_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(source_id).bind(resource_type).bind(id).bind(&person).bind(version).bind(now).bind(body).execute(&mut *tx).await?;
            } else {
                // INVARIANT: an update never moves a resource to another person (the caller
                // checks the subject against the stored one before writing). The version
                // condition makes a concurrent update (PostgreSQL, read committed) lose.
                let done = sqlx::query("UPDATE held_resources SET version = $4, updated_at = $5, body = $6 WHERE source_id = $1 AND resource_type = $2 AND id = $3 AND version = $7")
                    .bind(source_id).bind(resource_type).bind(id).bind(version).bind(now).bind(body).bind(version - 1).execute(&mut *tx).await?;
                if done.rows_affected() != 1 {
                    return Ok(HeldWrite::Conflict { current });
                }
            }
            sqlx::query("INSERT INTO held_resource_versions (source_id, resource_type, id, version, updated_at, body) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(source_id).bind(resource_type).bind(id).bind(version).bind(now).bind(body).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(HeldWrite::Written(version))
    }
}
