//! What `audit verify` reads from the store: the chains, a chain's records a batch at a
//! time, the search projection's rows over a range of positions, and the projection's rows
//! that name no record.

use sqlx::ConnectOptions;

use super::audit::Columns;
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

/// A row read by [`json_rows`]: its position comes first.
trait Positioned {
    fn position(&self) -> i64;
}

impl<A, B> Positioned for (i64, A, B) {
    fn position(&self) -> i64 {
        self.0
    }
}

impl<A, B, C, D, E, F, G> Positioned for (i64, A, B, C, D, E, F, G) {
    fn position(&self) -> i64 {
        self.0
    }
}

/// The search projection's rows over a range of a chain's positions, as
/// [`Store::audit_projection_range`] reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectionRange {
    /// Search rows: position and columns (`sources` and `agreements` empty).
    pub search: Vec<(i64, Columns)>,
    /// Rows of `audit_search_sources`: position, source, recorded_us.
    pub sources: Vec<(i64, String, i64)>,
    /// Rows of `audit_search_agreements`: position, agreement, recorded_us.
    pub agreements: Vec<(i64, String, i64)>,
}

/// Rows read as one JSON array that the database built (`text`; none for no rows), in
/// order of position: three tables' rows in one statement, so in one snapshot. The array
/// holds no more rows than its query's LIMIT lets through.
fn json_rows<T: serde::de::DeserializeOwned + Positioned>(
    text: Option<String>,
    table: &'static str,
) -> Result<Vec<T>, StoreError> {
    let mut rows: Vec<T> = serde_json::from_str(text.as_deref().unwrap_or("[]"))
        .map_err(|_| StoreError::Corrupt(table))?;
    // INVARIANT: the array is in order of position (its query orders it); sorting what is
    // sorted is one pass, and keeps the order whatever a database does with an aggregate's
    // input.
    rows.sort_by_key(Positioned::position);
    Ok(rows)
}

/// How many bytes of a SQLite file `audit verify`'s own connection maps into memory: its
/// pages are then read where they lie in the operating system's cache, not copied into the
/// connection's page cache first. With the batch read of [`ChainReader::records`] a walk
/// took about 9% less CPU; the map alone made no difference that could be measured
/// (`benches/README.md`). SQLite caps it at its build's most (2 GiB in the bundled build);
/// pages past that are read as before. Only that connection maps the file: the gateway's
/// connections are unchanged.
const VERIFY_MMAP_BYTES: u64 = 1 << 40;

/// What `audit verify` reads a chain's records through, held for one walk
/// ([`Store::audit_chain_reader`]).
pub struct ChainReader(Reader);

enum Reader {
    Sqlite(Box<sqlx::SqliteConnection>),
    Postgres(sqlx::PgPool),
}

impl ChainReader {
    /// Up to `limit` records of `chain` at positions in `[from, to]`, in order: on SQLite read
    /// as one text that the database puts together ([`ChainRecords`]), on PostgreSQL row by
    /// row. Read row by row, each row crossed from SQLite's thread to ours and was copied
    /// twice on the way; read as one JSON array (as the projection's rows are), every body was
    /// escaped and unescaped again (`benches/README.md`).
    pub async fn records(
        &mut self,
        chain: &str,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<ChainRecords, StoreError> {
        // No ORDER BY inside the aggregate: with one, SQLite copies every record into a
        // sorter (a temporary file past its small cache) before concatenating them, which
        // made verify three times slower than reading rows. The rows come in order of
        // position along the key, and `ChainRecords::parse` sorts them by position whatever
        // the aggregate did. The batch is bounded by the position of its `limit`th record
        // (read along the key alone) rather than by a subquery's LIMIT: a subquery with a
        // LIMIT runs apart, and each body was copied out of it twice, once for its length
        // and once for the concatenation (`benches/README.md`). The part's end `$4` is folded
        // into that one bound: as a second bound SQLite scanned to it and tested every row
        // against the first, reading a whole part for each batch. One `concat()` per record
        // puts its parts together in one string (a chain of `||` made a new one per step).
        const SQLITE: &str = "SELECT group_concat(concat(seq, ':', octet_length(CAST(prev_hash AS TEXT)), ':', octet_length(CAST(hash AS TEXT)), ':', octet_length(CAST(body AS TEXT)), ':', CAST(prev_hash AS TEXT), CAST(hash AS TEXT), CAST(body AS TEXT)), '') \
            FROM audit_records WHERE $3 > 0 AND chain = $1 AND seq >= $2 \
            AND seq <= min($4, coalesce((SELECT seq FROM audit_records WHERE chain = $1 AND seq >= $2 ORDER BY seq LIMIT 1 OFFSET $3 - 1), 9223372036854775807))";
        // PostgreSQL hands rows over cheaply; there they are read row by row, as before. The
        // part's end is applied here, not in the query: a range bounded on both sides made
        // the planner of a table without statistics yet (a fresh one) read the whole range
        // through a bitmap and sort it for each batch, which took a walk in two parts 2.5
        // times as long as one walk. A part's last batch reads at most one batch too many.
        const POSTGRES: &str = "SELECT seq, body, prev_hash, hash FROM audit_records WHERE chain = $1 AND seq >= $2 ORDER BY seq LIMIT $3";
        match &mut self.0 {
            Reader::Sqlite(connection) => {
                let text: Option<String> = sqlx::query_scalar(SQLITE)
                    .bind(chain)
                    .bind(from)
                    .bind(i64::from(limit))
                    .bind(to)
                    .fetch_one(&mut **connection)
                    .await?;
                ChainRecords::parse(text.unwrap_or_default())
            }
            Reader::Postgres(pool) => {
                let mut rows: Vec<(i64, String, String, String)> = sqlx::query_as(POSTGRES)
                    .bind(chain)
                    .bind(from)
                    .bind(i64::from(limit))
                    .fetch_all(&*pool)
                    .await?;
                rows.retain(|(seq, ..)| *seq <= to);
                Ok(ChainRecords::of(rows))
            }
        }
    }
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

    /// The first and last positions of `chain`'s records (`None`: it has none), each read
    /// along the key (one look-up apiece), so that `audit verify` can split a long chain into
    /// parts walked at once.
    pub async fn audit_chain_span(&self, chain: &str) -> Result<Option<(i64, i64)>, StoreError> {
        // Two subqueries: SQLite reads `min` or `max` along an index only when it is a
        // query's one aggregate.
        const SQL: &str = "SELECT (SELECT min(seq) FROM audit_records WHERE chain = $1), (SELECT max(seq) FROM audit_records WHERE chain = $1)";
        let span: (Option<i64>, Option<i64>) =
            with_pool!(self, pool => sqlx::query_as(SQL).bind(chain).fetch_one(pool).await?);
        Ok(span.0.zip(span.1))
    }

    /// What `audit verify` reads a chain's records through for one walk
    /// ([`ChainReader::records`]): on SQLite a connection of its own, outside the pool, that
    /// reads the database file through a memory map; on PostgreSQL the pool.
    pub async fn audit_chain_reader(&self) -> Result<ChainReader, StoreError> {
        match self {
            Store::Sqlite(pool) => {
                let options = (*pool.connect_options())
                    .clone()
                    .pragma("mmap_size", VERIFY_MMAP_BYTES.to_string());
                let connection = options.connect().await?;
                Ok(ChainReader(Reader::Sqlite(Box::new(connection))))
            }
            Store::Postgres(pool) => Ok(ChainReader(Reader::Postgres(pool.clone()))),
        }
    }

    /// The search projection's rows for `chain` at positions in `[from, to]`, read in one
    /// statement (so in one snapshot: the projector writes a record's search row and side
    /// rows in one transaction), each in order of position: up to `limits.0` search rows
    /// (their `sources` and `agreements` left empty), up to `limits.1` rows of
    /// `audit_search_sources` and up to `limits.2` of `audit_search_agreements`.
    pub async fn audit_projection_range(
        &self,
        chain: &str,
        from: i64,
        to: i64,
        limits: (u32, u32, u32),
    ) -> Result<ProjectionRange, StoreError> {
        const SQLITE: &str = "SELECT \
            (SELECT json_group_array(json_array(seq, recorded_us, person_id, user_id, org, purpose, outcome, review)) FROM (SELECT * FROM audit_search WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4)), \
            (SELECT json_group_array(json_array(seq, source, recorded_us)) FROM (SELECT seq, source, recorded_us FROM audit_search_sources WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $5)), \
            (SELECT json_group_array(json_array(seq, agreement, recorded_us)) FROM (SELECT seq, agreement, recorded_us FROM audit_search_agreements WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $6))";
        const POSTGRES: &str = "SELECT \
            (SELECT coalesce(json_agg(json_build_array(seq, recorded_us, person_id, user_id, org, purpose, outcome, review) ORDER BY seq), '[]')::text FROM (SELECT * FROM audit_search WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4) t), \
            (SELECT coalesce(json_agg(json_build_array(seq, source, recorded_us) ORDER BY seq), '[]')::text FROM (SELECT seq, source, recorded_us FROM audit_search_sources WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $5) t), \
            (SELECT coalesce(json_agg(json_build_array(seq, agreement, recorded_us) ORDER BY seq), '[]')::text FROM (SELECT seq, agreement, recorded_us FROM audit_search_agreements WHERE chain = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $6) t)";
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
        type SearchRow = (
            i64,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
        );
        let search: Vec<SearchRow> = json_rows(search, "audit_search")?;
        Ok(ProjectionRange {
            search: search
                .into_iter()
                .map(
                    |(seq, recorded_us, person, user, org, purpose, outcome, review)| {
                        (
                            seq,
                            Columns {
                                recorded_us,
                                person,
                                user,
                                org,
                                purpose,
                                outcome,
                                review,
                                sources: Vec::new(),
                                agreements: Vec::new(),
                            },
                        )
                    },
                )
                .collect(),
            sources: json_rows(sources, "audit_search_sources")?,
            agreements: json_rows(agreements, "audit_search_agreements")?,
        })
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
