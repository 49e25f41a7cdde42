//! People's recorded sharing choices.

use uuid::Uuid;

use super::{Store, StoreError};

/// One recorded sharing choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    /// Its id.
    pub id: Uuid,
    /// The person.
    pub person: Uuid,
    /// `not_from` (a provider's records) or `not_to` (an organisation).
    pub kind: String,
    /// The organisation's ODS code.
    pub org: String,
    /// True while the objection stands; false for a withdrawal.
    pub active: bool,
    /// When it was recorded, Unix microseconds.
    pub recorded_us: i64,
    /// The Consent resource, as served.
    pub resource: String,
}

impl Store {
    /// Records a sharing choice (rows are never changed; the newest per person, kind and
    /// organisation counts).
    pub async fn record_consent(&self, c: &ConsentRecord) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("INSERT INTO consents (id, person_id, kind, org, active, recorded_us, resource) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(c.id.to_string()).bind(c.person.to_string()).bind(&c.kind).bind(&c.org)
                .bind(i32::from(c.active)).bind(c.recorded_us).bind(&c.resource)
                .execute(pool).await?;
        });
        Ok(())
    }

    /// Every sharing choice recorded for the person, oldest first.
    pub async fn consents(&self, person: Uuid) -> Result<Vec<ConsentRecord>, StoreError> {
        type Row = (String, String, String, i32, i64, String);
        let rows: Vec<Row> = with_pool!(self, pool => sqlx::query_as("SELECT id, kind, org, active, recorded_us, resource FROM consents WHERE person_id = $1 ORDER BY recorded_us, id").bind(person.to_string()).fetch_all(pool).await?);
        rows.into_iter()
            .map(|(id, kind, org, active, recorded_us, resource)| {
                Ok(ConsentRecord {
                    id: Uuid::parse_str(&id).map_err(|_| StoreError::Corrupt("consents.id"))?,
                    person,
                    kind,
                    org,
                    active: active != 0,
                    recorded_us,
                    resource,
                })
            })
            .collect()
    }
}
