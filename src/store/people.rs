//! People and their links to each source.

use uuid::Uuid;

use super::{Store, StoreError, parse_id};

/// A person's link to one source: their patient id there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The source.
    pub source_id: String,
    /// The person's patient id in that source.
    pub local_id: String,
}

/// A person as the store knows them.
#[derive(Debug, Clone)]
pub struct PersonRecord {
    /// The gateway patient id.
    pub id: Uuid,
    /// Their NHS number (ten digits).
    pub nhs_number: String,
    /// Links to sources.
    pub links: Vec<Link>,
    /// When each source was last asked: (source id, Unix seconds).
    pub checked: Vec<(String, i64)>,
}

impl Store {
    /// The person with this NHS number, with their links, if the gateway has met them.
    pub async fn person_by_nhs(
        &self,
        nhs_number: &str,
    ) -> Result<Option<PersonRecord>, StoreError> {
        let id: Option<String> = with_pool!(self, pool => sqlx::query_scalar("SELECT id FROM persons WHERE nhs_number = $1").bind(nhs_number).fetch_optional(pool).await?);
        match id {
            Some(id) => self
                .load_person(parse_id(&id)?, nhs_number.to_owned())
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// The person with this gateway id, with their links.
    pub async fn person_by_id(&self, id: Uuid) -> Result<Option<PersonRecord>, StoreError> {
        let nhs: Option<String> = with_pool!(self, pool => sqlx::query_scalar("SELECT nhs_number FROM persons WHERE id = $1").bind(id.to_string()).fetch_optional(pool).await?);
        match nhs {
            Some(nhs) => self.load_person(id, nhs).await.map(Some),
            None => Ok(None),
        }
    }

    /// The person a source's local patient id is linked to.
    pub async fn person_by_link(
        &self,
        source_id: &str,
        local_id: &str,
    ) -> Result<Option<Uuid>, StoreError> {
        let id: Option<String> = with_pool!(self, pool => sqlx::query_scalar("SELECT person_id FROM source_links WHERE source_id = $1 AND local_id = $2").bind(source_id).bind(local_id).fetch_optional(pool).await?);
        id.as_deref().map(parse_id).transpose()
    }

    async fn load_person(&self, id: Uuid, nhs_number: String) -> Result<PersonRecord, StoreError> {
        let key = id.to_string();
        let links: Vec<(String, String)> = with_pool!(self, pool => sqlx::query_as("SELECT source_id, local_id FROM source_links WHERE person_id = $1 ORDER BY source_id, local_id").bind(&key).fetch_all(pool).await?);
        let checked: Vec<(String, i64)> = with_pool!(self, pool => sqlx::query_as("SELECT source_id, checked_at FROM source_checks WHERE person_id = $1").bind(&key).fetch_all(pool).await?);
        Ok(PersonRecord {
            id,
            nhs_number,
            links: links
                .into_iter()
                .map(|(source_id, local_id)| Link {
                    source_id,
                    local_id,
                })
                .collect(),
            checked,
        })
    }

    /// The gateway id of the person with this NHS number, made now if they are new. Safe under
    /// concurrency across instances: the NHS number is unique, so all agree on one id.
    pub async fn ensure_person(&self, nhs_number: &str, now: i64) -> Result<Uuid, StoreError> {
        let candidate = Uuid::new_v4().to_string();
        with_pool!(self, pool => {
            sqlx::query("INSERT INTO persons (id, nhs_number, created_at) VALUES ($1, $2, $3) ON CONFLICT (nhs_number) DO NOTHING")
                .bind(&candidate).bind(nhs_number).bind(now).execute(pool).await?;
        });
        let id: String = with_pool!(self, pool => sqlx::query_scalar("SELECT id FROM persons WHERE nhs_number = $1").bind(nhs_number).fetch_one(pool).await?);
        parse_id(&id)
    }

    /// Records what one source said about the person: their local ids there (possibly none),
    /// as of `now`. Replaces what was known before. A local id that was linked to someone else
    /// (a source that corrected an NHS number) moves to this person, and the previous owner's
    /// check of that source is forgotten so their links are looked up again; their ids are
    /// returned.
    pub async fn record_links(
        &self,
        person: Uuid,
        source_id: &str,
        local_ids: &[String],
        now: i64,
    ) -> Result<Vec<Uuid>, StoreError> {
        let key = person.to_string();
        let mut previous: Vec<String> = Vec::new();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM source_links WHERE person_id = $1 AND source_id = $2")
                .bind(&key).bind(source_id).execute(&mut *tx).await?;
            for local in local_ids {
                let owner: Option<String> = sqlx::query_scalar("SELECT person_id FROM source_links WHERE source_id = $1 AND local_id = $2")
                    .bind(source_id).bind(local).fetch_optional(&mut *tx).await?;
                if let Some(owner) = owner.filter(|o| *o != key) {
                    sqlx::query("DELETE FROM source_checks WHERE person_id = $1 AND source_id = $2")
                        .bind(&owner).bind(source_id).execute(&mut *tx).await?;
                    previous.push(owner);
                }
                sqlx::query("INSERT INTO source_links (source_id, local_id, person_id) VALUES ($1, $2, $3) ON CONFLICT (source_id, local_id) DO UPDATE SET person_id = excluded.person_id")
                    .bind(source_id).bind(local).bind(&key).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO source_checks (person_id, source_id, checked_at) VALUES ($1, $2, $3) ON CONFLICT (person_id, source_id) DO UPDATE SET checked_at = excluded.checked_at")
                .bind(&key).bind(source_id).bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        previous.iter().map(|p| parse_id(p)).collect()
    }

    /// Forgets when a source was last asked about the person, so their links there are
    /// looked up again on the next request (used when a source's answer shows a link is stale).
    pub async fn forget_check(&self, person: Uuid, source_id: &str) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM source_checks WHERE person_id = $1 AND source_id = $2")
                .bind(person.to_string()).bind(source_id).execute(pool).await?;
        });
        Ok(())
    }
}
