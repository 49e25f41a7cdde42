//! What `audit verify` reads from the store: the chains, a chain's records a batch at a
//! time, the search projection's rows over a range of positions, and the projection's rows
//! that name no record.

use super::{Store, StoreError};

/// A record of one chain as `audit verify` reads it, a batch at a time (the chain is the
/// caller's, not repeated on every row), borrowed from its batch ([`ChainRecords`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainRecord<'a> {
    /// Position in the chain.
    pub seq: i64,
    /// The body's canonical encoding.
    pub body: &'a str,
    /// The previous record's hash.
    pub prev_hash: &'a str,
    /// This record's keyed hash.
    pub hash: &'a str,
}

/// A batch of one chain's records, in order of position, as [`Store::audit_chain_records`]
/// reads it: the database hands the batch over as one text (each record's position and the
/// byte lengths of its previous hash, hash and body, then the three), which is read here
/// without copying any record again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainRecords {
    text: String,
    rows: Vec<Parts>,
}

/// Where one record's parts lie in its batch's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts {
    seq: i64,
    prev_hash: (usize, usize),
    hash: (usize, usize),
    body: (usize, usize),
}

impl ChainRecords {
    /// How many records the batch holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The batch's `i`th record.
    pub fn get(&self, i: usize) -> Option<ChainRecord<'_>> {
        self.rows.get(i).map(|parts| self.record(parts))
    }

    /// The batch's records, in order of position.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ChainRecord<'_>> + '_ {
        self.rows.iter().map(|parts| self.record(parts))
    }

    /// The batch's record at position `seq`.
    pub fn find(&self, seq: i64) -> Option<ChainRecord<'_>> {
        let i = self
            .rows
            .binary_search_by_key(&seq, |parts| parts.seq)
            .ok()?;
        self.get(i)
    }

    /// The records `range` of the batch.
    pub fn slice(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = ChainRecord<'_>> + '_ {
        self.rows
            .get(range)
            .unwrap_or_default()
            .iter()
            .map(|parts| self.record(parts))
    }

    fn record(&self, parts: &Parts) -> ChainRecord<'_> {
        // INVARIANT: `parse` checked every range against the text and its characters.
        let part = |(start, end): (usize, usize)| self.text.get(start..end).unwrap_or_default();
        ChainRecord {
            seq: parts.seq,
            body: part(parts.body),
            prev_hash: part(parts.prev_hash),
            hash: part(parts.hash),
        }
    }

    /// A batch of rows read one by one: (position, body, previous hash, hash), in order.
    fn of(rows: Vec<(i64, String, String, String)>) -> ChainRecords {
        let size = rows
            .iter()
            .map(|(_, body, prev_hash, hash)| body.len() + prev_hash.len() + hash.len())
            .sum();
        let mut text = String::with_capacity(size);
        let mut push = |part: &str| {
            let start = text.len();
            text.push_str(part);
            (start, text.len())
        };
        let parts = rows
            .iter()
            .map(|(seq, body, prev_hash, hash)| Parts {
                seq: *seq,
                prev_hash: push(prev_hash),
                hash: push(hash),
                body: push(body),
            })
            .collect();
        ChainRecords { text, rows: parts }
    }

    /// Reads a batch's text: for each record `seq:p:h:b:` (its position, then the byte
    /// lengths of its previous hash, hash and body), then the three, with nothing between
    /// records. The lengths say where each part ends, so no part's content (a tampered body
    /// holding anything at all) can be taken for the next one's start.
    fn parse(text: String) -> Result<ChainRecords, StoreError> {
        let corrupt = || StoreError::Corrupt("audit_records");
        let mut rows = Vec::new();
        let mut at = 0_usize;
        while at < text.len() {
            let mut fields = [0_i64; 4];
            for field in &mut fields {
                let rest = text.get(at..).ok_or_else(corrupt)?;
                let colon = rest.find(':').ok_or_else(corrupt)?;
                *field = rest[..colon].parse().map_err(|_| corrupt())?;
                at += colon + 1;
            }
            let [seq, lengths @ ..] = fields;
            let mut ranges = [(0_usize, 0_usize); 3];
            for (range, length) in ranges.iter_mut().zip(lengths) {
                let length = usize::try_from(length).map_err(|_| corrupt())?;
                let end = at.checked_add(length).ok_or_else(corrupt)?;
                text.get(at..end).ok_or_else(corrupt)?;
                *range = (at, end);
                at = end;
            }
            let [prev_hash, hash, body] = ranges;
            rows.push(Parts {
                seq,
                prev_hash,
                hash,
                body,
            });
        }
        // INVARIANT: the query orders the aggregate's input by position; sorting what is
        // sorted is one pass, and keeps the order whatever a database does.
        rows.sort_by_key(|parts| parts.seq);
        Ok(ChainRecords { text, rows })
    }
}

/// Where one row of the search projection lies in its table's text ([`ProjectionRange`]):
/// its position and time, then `T` text columns (`None`: NULL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Framed<const T: usize> {
    seq: i64,
    recorded_us: i64,
    texts: [Option<(usize, usize)>; T],
}

/// Reads one table's rows as the database put them together: for each row
/// `seq:recorded_us:l1:...:lT:` (its position, its time and the byte length of each of its
/// `T` text columns, -1 for NULL), then the texts, with nothing between rows. As with
/// [`ChainRecords::parse`], the lengths say where each text ends, so no text's content can
/// be taken for the next row's start. The rows are put in order of position.
fn framed<const T: usize>(text: &str, table: &'static str) -> Result<Vec<Framed<T>>, StoreError> {
    let corrupt = || StoreError::Corrupt(table);
    let mut rows = Vec::new();
    let mut at = 0_usize;
    let number = |at: &mut usize| -> Result<i64, StoreError> {
        let rest = text.get(*at..).ok_or_else(corrupt)?;
        let colon = rest.find(':').ok_or_else(corrupt)?;
        let value = rest[..colon].parse().map_err(|_| corrupt())?;
        *at += colon + 1;
        Ok(value)
    };
    while at < text.len() {
        let seq = number(&mut at)?;
        let recorded_us = number(&mut at)?;
        let mut lengths = [0_i64; T];
        for length in &mut lengths {
            *length = number(&mut at)?;
        }
        let mut texts = [None; T];
        for (range, length) in texts.iter_mut().zip(lengths) {
            if length == -1 {
                continue;
            }
            let length = usize::try_from(length).map_err(|_| corrupt())?;
            let end = at.checked_add(length).ok_or_else(corrupt)?;
            text.get(at..end).ok_or_else(corrupt)?;
            *range = Some((at, end));
            at = end;
        }
        rows.push(Framed {
            seq,
            recorded_us,
            texts,
        });
    }
    // INVARIANT: the rows come in order of position (their subquery orders them); sorting
    // what is sorted is one pass, and keeps the order whatever a database does with an
    // aggregate's input.
    rows.sort_by_key(|row| row.seq);
    Ok(rows)
}

/// The search projection's rows over a range of a chain's positions, as
/// [`Store::audit_projection_range`] reads them: each table's rows as one text that the
/// database puts together, read here in place (no row's columns copied again).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectionRange {
    search_text: String,
    search: Vec<Framed<6>>,
    sources_text: String,
    sources: Vec<Framed<1>>,
    agreements_text: String,
    agreements: Vec<Framed<1>>,
}

/// A row of `audit_search`, borrowed from its [`ProjectionRange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchRow<'a> {
    /// Position in the chain.
    pub seq: i64,
    /// Microseconds.
    pub recorded_us: i64,
    /// The person.
    pub person: Option<&'a str>,
    /// The user.
    pub user: Option<&'a str>,
    /// The organisation.
    pub org: Option<&'a str>,
    /// The purpose.
    pub purpose: Option<&'a str>,
    /// The outcome.
    pub outcome: &'a str,
    /// Why it is flagged for IG review, if it is.
    pub review: Option<&'a str>,
}

/// A row of `audit_search_sources` or `audit_search_agreements`, borrowed from its
/// [`ProjectionRange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideRow<'a> {
    /// Position in the chain.
    pub seq: i64,
    /// The source, or the agreement.
    pub value: &'a str,
    /// Microseconds.
    pub recorded_us: i64,
}

impl ProjectionRange {
    /// Reads the three tables' texts (none: no rows).
    fn parse(
        search: Option<String>,
        sources: Option<String>,
        agreements: Option<String>,
    ) -> Result<ProjectionRange, StoreError> {
        let (search_text, sources_text, agreements_text) = (
            search.unwrap_or_default(),
            sources.unwrap_or_default(),
            agreements.unwrap_or_default(),
        );
        let search = framed::<6>(&search_text, "audit_search")?;
        // The outcome is never NULL (the schema says so).
        if search.iter().any(|row| row.texts[4].is_none()) {
            return Err(StoreError::Corrupt("audit_search"));
        }
        let side = |text: &str, table| -> Result<Vec<Framed<1>>, StoreError> {
            let rows = framed::<1>(text, table)?;
            if rows.iter().any(|row| row.texts[0].is_none()) {
                return Err(StoreError::Corrupt(table));
            }
            Ok(rows)
        };
        let sources = side(&sources_text, "audit_search_sources")?;
        let agreements = side(&agreements_text, "audit_search_agreements")?;
        Ok(ProjectionRange {
            search_text,
            search,
            sources_text,
            sources,
            agreements_text,
            agreements,
        })
    }

    /// The search rows, in order of position.
    pub fn search(&self) -> impl ExactSizeIterator<Item = SearchRow<'_>> + '_ {
        let text = |range: Option<(usize, usize)>| {
            // INVARIANT: `framed` checked every range against the text.
            range.map(|(start, end)| self.search_text.get(start..end).unwrap_or_default())
        };
        self.search.iter().map(move |row| {
            let [person, user, org, purpose, outcome, review] = row.texts.map(text);
            SearchRow {
                seq: row.seq,
                recorded_us: row.recorded_us,
                person,
                user,
                org,
                purpose,
                outcome: outcome.unwrap_or_default(),
                review,
            }
        })
    }

    /// The rows of `audit_search_sources`, in order of position.
    pub fn sources(&self) -> impl ExactSizeIterator<Item = SideRow<'_>> + '_ {
        side_rows(&self.sources_text, &self.sources)
    }

    /// The rows of `audit_search_agreements`, in order of position.
    pub fn agreements(&self) -> impl ExactSizeIterator<Item = SideRow<'_>> + '_ {
        side_rows(&self.agreements_text, &self.agreements)
    }
}

fn side_rows<'a>(
    text: &'a str,
    rows: &'a [Framed<1>],
) -> impl ExactSizeIterator<Item = SideRow<'a>> + 'a {
    rows.iter().map(move |row| SideRow {
        seq: row.seq,
        // INVARIANT: `ProjectionRange::parse` checked that every side row has its value, and
        // `framed` every range against the text.
        value: row.texts[0]
            .and_then(|(start, end)| text.get(start..end))
            .unwrap_or_default(),
        recorded_us: row.recorded_us,
    })
}

impl Store {
    /// Every chain the log, its search projection or the projection's side tables name, in
    /// the store's order of chains (the order `audit verify` walks them in). Read by skipping
    /// along each table's key, one look-up per chain, not by reading every row.
    pub async fn audit_chains(&self) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "WITH RECURSIVE \
            r(chain) AS (SELECT min(chain) FROM audit_records UNION ALL SELECT (SELECT min(x.chain) FROM audit_records x WHERE x.chain > r.chain) FROM r WHERE r.chain IS NOT NULL), \
            s(chain) AS (SELECT min(chain) FROM audit_search UNION ALL SELECT (SELECT min(x.chain) FROM audit_search x WHERE x.chain > s.chain) FROM s WHERE s.chain IS NOT NULL), \
            d(chain) AS (SELECT min(chain) FROM audit_search_sources UNION ALL SELECT (SELECT min(x.chain) FROM audit_search_sources x WHERE x.chain > d.chain) FROM d WHERE d.chain IS NOT NULL), \
            a(chain) AS (SELECT min(chain) FROM audit_search_agreements UNION ALL SELECT (SELECT min(x.chain) FROM audit_search_agreements x WHERE x.chain > a.chain) FROM a WHERE a.chain IS NOT NULL) \
            SELECT chain FROM r WHERE chain IS NOT NULL UNION SELECT chain FROM s WHERE chain IS NOT NULL \
            UNION SELECT chain FROM d WHERE chain IS NOT NULL UNION SELECT chain FROM a WHERE chain IS NOT NULL \
            ORDER BY chain";
        let chains: Vec<String> =
            with_pool!(self, pool => sqlx::query_scalar(SQL).fetch_all(pool).await?);
        Ok(chains)
    }

    /// Up to `limit` records of `chain` at positions from `from` on, in order: on SQLite read
    /// as one text that the database puts together ([`ChainRecords`]), on PostgreSQL row by
    /// row. Read row by row, each row
    /// crossed from SQLite's thread to ours and was copied twice on the way; read as one JSON
    /// array (as the projection's rows are), every body was escaped and unescaped again
    /// (`benches/README.md`).
    pub async fn audit_chain_records(
        &self,
        chain: &str,
        from: i64,
        limit: u32,
    ) -> Result<ChainRecords, StoreError> {
        // No ORDER BY inside the aggregate: with one, SQLite copies every record into a
        // sorter (a temporary file past its small cache) before concatenating them, which
        // made verify three times slower than reading rows. The subquery hands rows over in
        // order of position, and `ChainRecords::parse` sorts them by position whatever the
        // aggregate did.
        const SQLITE: &str = "SELECT group_concat(seq || ':' || octet_length(prev_hash) || ':' || octet_length(hash) || ':' || octet_length(body) || ':' || prev_hash || hash || body, '') \
            FROM (SELECT seq, CAST(body AS TEXT) AS body, CAST(prev_hash AS TEXT) AS prev_hash, CAST(hash AS TEXT) AS hash FROM audit_records WHERE chain = $1 AND seq >= $2 ORDER BY seq LIMIT $3)";
        // PostgreSQL hands rows over cheaply; there they are read row by row, as before.
        const POSTGRES: &str = "SELECT seq, body, prev_hash, hash FROM audit_records WHERE chain = $1 AND seq >= $2 ORDER BY seq LIMIT $3";
        match self {
            Store::Sqlite(pool) => {
                let text: Option<String> = sqlx::query_scalar(SQLITE)
                    .bind(chain)
                    .bind(from)
                    .bind(i64::from(limit))
                    .fetch_one(pool)
                    .await?;
                ChainRecords::parse(text.unwrap_or_default())
            }
            Store::Postgres(pool) => {
                let rows: Vec<(i64, String, String, String)> = sqlx::query_as(POSTGRES)
                    .bind(chain)
                    .bind(from)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await?;
                Ok(ChainRecords::of(rows))
            }
        }
    }

    /// The search projection's rows for `chain` at positions in `[from, to]`, read in one
    /// statement (so in one snapshot: the projector writes a record's search row and side
    /// rows in one transaction), each in order of position: up to `limits.0` search rows,
    /// up to `limits.1` rows of
    /// `audit_search_sources` and up to `limits.2` of `audit_search_agreements`.
    pub async fn audit_projection_range(
        &self,
        chain: &str,
        from: i64,
        to: i64,
        limits: (u32, u32, u32),
    ) -> Result<ProjectionRange, StoreError> {
        // Each table's rows as one text (see `framed`), in order of position from their
        // subquery: no ORDER BY inside the aggregate (see `audit_chain_records`).
        const SQLITE: &str = "SELECT \
            (SELECT group_concat(seq || ':' || coalesce(recorded_us, 'null') || ':' || coalesce(octet_length(person), -1) || ':' || coalesce(octet_length(user_id), -1) || ':' || coalesce(octet_length(org), -1) || ':' || coalesce(octet_length(purpose), -1) || ':' || coalesce(octet_length(outcome), -1) || ':' || coalesce(octet_length(review), -1) || ':' \
                || coalesce(person, '') || coalesce(user_id, '') || coalesce(org, '') || coalesce(purpose, '') || coalesce(outcome, '') || coalesce(review, ''), '') \
                FROM (SELECT seq, recorded_us, CAST(person_id AS TEXT) AS person, CAST(user_id AS TEXT) AS user_id, CAST(org AS TEXT) AS org, CAST(purpose AS TEXT) AS purpose, CAST(outcome AS TEXT) AS outcome, CAST(review AS TEXT) AS review \
                FROM audit_search WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4)), \
            (SELECT group_concat(seq || ':' || coalesce(recorded_us, 'null') || ':' || coalesce(octet_length(source), -1) || ':' || coalesce(source, ''), '') \
                FROM (SELECT seq, CAST(source AS TEXT) AS source, recorded_us FROM audit_search_sources WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $5)), \
            (SELECT group_concat(seq || ':' || coalesce(recorded_us, 'null') || ':' || coalesce(octet_length(agreement), -1) || ':' || coalesce(agreement, ''), '') \
                FROM (SELECT seq, CAST(agreement AS TEXT) AS agreement, recorded_us FROM audit_search_agreements WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $6))";
        const POSTGRES: &str = "SELECT \
            (SELECT string_agg(concat(seq, ':', recorded_us, ':', coalesce(octet_length(person_id), -1), ':', coalesce(octet_length(user_id), -1), ':', coalesce(octet_length(org), -1), ':', coalesce(octet_length(purpose), -1), ':', coalesce(octet_length(outcome), -1), ':', coalesce(octet_length(review), -1), ':', \
                person_id, user_id, org, purpose, outcome, review), '') \
                FROM (SELECT * FROM audit_search WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4) t), \
            (SELECT string_agg(concat(seq, ':', recorded_us, ':', coalesce(octet_length(source), -1), ':', source), '') \
                FROM (SELECT seq, source, recorded_us FROM audit_search_sources WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $5) t), \
            (SELECT string_agg(concat(seq, ':', recorded_us, ':', coalesce(octet_length(agreement), -1), ':', agreement), '') \
                FROM (SELECT seq, agreement, recorded_us FROM audit_search_agreements WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $6) t)";
        type Texts = (Option<String>, Option<String>, Option<String>);
        macro_rules! read {
            ($pool:expr, $sql:expr) => {
                sqlx::query_as::<_, Texts>($sql)
                    .bind(chain)
                    .bind(from)
                    .bind(to)
                    .bind(i64::from(limits.0))
                    .bind(i64::from(limits.1))
                    .bind(i64::from(limits.2))
                    .fetch_one($pool)
                    .await?
            };
        }
        let (search, sources, agreements) = match self {
            Store::Sqlite(pool) => read!(pool, SQLITE),
            Store::Postgres(pool) => read!(pool, POSTGRES),
        };
        ProjectionRange::parse(search, sources, agreements)
    }

    /// From position `from` on in `chain`, in one statement: the first search row whose
    /// record the log does not hold, and the first row of disclosing sources or agreements
    /// whose record has no search row. Past a chain's last record read, rows of records
    /// appended since (and projected with them) are not counted.
    pub async fn audit_projection_strays(
        &self,
        chain: &str,
        from: i64,
    ) -> Result<(Option<i64>, Option<i64>), StoreError> {
        const SQL: &str = "SELECT \
            (SELECT min(s.seq) FROM audit_search s WHERE s.chain = $1 AND s.seq >= $2 AND NOT EXISTS (SELECT 1 FROM audit_records r WHERE r.chain = s.chain AND r.seq = s.seq)), \
            (SELECT min(x.seq) FROM (SELECT d.seq FROM audit_search_sources d WHERE d.chain = $1 AND d.seq >= $2 AND NOT EXISTS (SELECT 1 FROM audit_search s WHERE s.chain = d.chain AND s.seq = d.seq) \
                UNION ALL SELECT a.seq FROM audit_search_agreements a WHERE a.chain = $1 AND a.seq >= $2 AND NOT EXISTS (SELECT 1 FROM audit_search s WHERE s.chain = a.chain AND s.seq = a.seq)) x)";
        let found: (Option<i64>, Option<i64>) = with_pool!(self, pool => sqlx::query_as(SQL)
            .bind(chain)
            .bind(from)
            .fetch_one(pool)
            .await?);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_rows_are_read_by_their_lengths_whatever_their_texts_hold() {
        // Values holding the separator and what looks like the next row's start.
        let search = "1:10:2:-1:0:-1:7:4:p:u:2:0:orev:2:11:-1:-1:-1:-1:2:-1:\u{e9}".to_owned();
        let sources = "1:10:5:gp:1:2:10:3:x:y".to_owned();
        let range = ProjectionRange::parse(Some(search), Some(sources), None).expect("framed");
        let rows: Vec<SearchRow<'_>> = range.search().collect();
        let row = |seq, recorded_us, person, org, outcome, review| SearchRow {
            seq,
            recorded_us,
            person,
            user: None,
            org,
            purpose: None,
            outcome,
            review,
        };
        assert_eq!(
            rows,
            vec![
                row(1, 10, Some("p:"), Some(""), "u:2:0:o", Some("rev:")),
                row(2, 11, None, None, "\u{e9}", None),
            ]
        );
        let sources: Vec<SideRow<'_>> = range.sources().collect();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].value, "gp:1:");
        assert_eq!(sources[1].value, "x:y");
        assert_eq!(range.agreements().len(), 0);
    }

    #[test]
    fn framed_rows_that_run_past_their_text_are_corrupt() {
        for search in [
            "1:10:",
            "1:10:1:1:1:1:1:1:ab",
            "1:x:-1:-1:-1:-1:1:-1:a",
            "1:10:-1:-1:-1:-1:-1:-1:",
        ] {
            assert!(
                ProjectionRange::parse(Some(search.to_owned()), None, None).is_err(),
                "{search}"
            );
        }
    }
}
