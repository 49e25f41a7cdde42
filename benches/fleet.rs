//! A fleet on one PostgreSQL (issue 17, item 1): what each request costs the database, and
//! whether instances wait on each other there.
//!
//! `FLEET_INSTANCES` (3) `concord serve` processes (the release binary) on one PostgreSQL
//! database made for the run, over three upstream FHIR servers (the test upstream of
//! `tests/support/upstream.rs`, no added latency), each instance reaching PostgreSQL through
//! a counting proxy of its own on 127.0.0.1: the proxy forwards every byte unchanged and
//! reads the wire protocol's message types as they pass, so it counts, per instance, the
//! round trips (each `Sync` or simple `Query`: the client then waits for `ReadyForQuery`),
//! the statements (`Execute` and simple queries), the transactions begun (`BEGIN`) and the
//! change notices delivered (`NotificationResponse`). Beside it, a sampler on its own
//! connection (to another database, so as not to count itself) reads `pg_stat_activity`
//! every 10 ms for the run's backends waiting on a lock (`wait_event_type` `Lock`, with the
//! lock type from `pg_locks`) or a lightweight lock (`LWLock`), and `pg_stat_database` gives
//! the database's transactions, rows and deadlocks before and after each phase.
//!
//! Phases, one after another, every instance driven at once by `FLEET_CLIENTS` (8) closed-loop
//! clients of its own:
//!
//! 1. idle (`FLEET_IDLE_SECONDS`, 5): what the fleet asks of PostgreSQL with no requests
//!    (heartbeats, audit projection, signed heads), subtracted from the phases below;
//! 2. `$everything` only (`FLEET_SECONDS`, 15): a community nurse reads Ann's and Bob's
//!    records, in turn;
//! 3. mixed (`FLEET_SECONDS`): as 2, but one request in five is Bob recording a choice (a
//!    `Consent`, active and inactive in turn) through that instance, which every other
//!    instance hears of and honours.
//!
//! Every request must answer 200 or 201. Printed per phase and instance: requests/s, p50 and
//! p99 (ms); per request: round trips, statements and transactions sent to PostgreSQL; and
//! for the fleet, the lock waits sampled. **Two cores cannot show scaling**: the instances,
//! PostgreSQL, the upstreams and this load generator share them, so the figures say what a
//! request costs the database and whether instances wait on each other, not how a fleet
//! scales with instances.
//!
//! Needs `CONCORD_TEST_DATABASE_URL` (a role that may create databases); without it the
//! benchmark says so and ends. `cargo bench --bench fleet`. Figures are in
//! `benches/README.md`.

#![allow(missing_docs, reason = "a benchmark binary")]

#[allow(
    dead_code,
    unreachable_pub,
    reason = "shared with the integration tests; not every helper is used here"
)]
#[path = "../tests/support/app.rs"]
mod app;
#[allow(
    dead_code,
    unreachable_pub,
    reason = "shared with the integration tests; not every helper is used here"
)]
#[path = "../tests/support/data.rs"]
mod data;
#[allow(
    dead_code,
    unreachable_pub,
    unused_imports,
    reason = "shared with the integration tests (whose self-tests are compiled here too); not every helper is used"
)]
#[path = "../tests/support/upstream.rs"]
mod upstream;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use app::{AUDIENCE, AUDIT_KEY, HEAD_KEY, ISSUER, claims, matches, mint};
use data::{ANN, BOB, NHS_SYSTEM};
use upstream::Upstream;

/// The same allocator as the `concord` binary (the instances are that binary; this is for the
/// load generator and the proxies).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------------
// The counting proxy.

/// What one instance sent to (and was sent by) PostgreSQL, counted on the wire.
#[derive(Default)]
struct Wire {
    connections: AtomicU64,
    /// Simple queries (`Q`).
    queries: AtomicU64,
    /// Extended-protocol statements run (`E`).
    executes: AtomicU64,
    /// Statements prepared (`P`).
    parses: AtomicU64,
    /// `Sync` (`S`): the end of an extended-protocol exchange, answered by `ReadyForQuery`.
    syncs: AtomicU64,
    /// A `Sync` with nothing before it since the last one: a bare round trip, as sqlx's pool
    /// sends to test a connection before handing it out (`test_before_acquire`).
    bare_syncs: AtomicU64,
    /// `BEGIN` (or `START TRANSACTION`) sent as a statement.
    begins: AtomicU64,
    /// `ROLLBACK` sent as a statement.
    rollbacks: AtomicU64,
    /// `NotificationResponse` (`A`) received: change notices.
    notices: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A snapshot of a [`Wire`].
#[derive(Clone, Copy, Default, Debug)]
struct Counts {
    connections: u64,
    round_trips: u64,
    /// Of the round trips, bare `Sync`s (pool pings).
    pings: u64,
    statements: u64,
    parses: u64,
    begins: u64,
    rollbacks: u64,
    notices: u64,
    bytes: u64,
}

impl Wire {
    fn counts(&self) -> Counts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            connections: get(&self.connections),
            round_trips: get(&self.syncs) + get(&self.queries),
            pings: get(&self.bare_syncs),
            statements: get(&self.executes) + get(&self.queries),
            parses: get(&self.parses),
            begins: get(&self.begins),
            rollbacks: get(&self.rollbacks),
            notices: get(&self.notices),
            bytes: get(&self.bytes_up) + get(&self.bytes_down),
        }
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            connections: self.connections - o.connections,
            round_trips: self.round_trips - o.round_trips,
            pings: self.pings - o.pings,
            statements: self.statements - o.statements,
            parses: self.parses - o.parses,
            begins: self.begins - o.begins,
            rollbacks: self.rollbacks - o.rollbacks,
            notices: self.notices - o.notices,
            bytes: self.bytes - o.bytes,
        }
    }
}

/// Which way a stream of protocol messages goes.
#[derive(Clone, Copy, PartialEq)]
enum Direction {
    /// Client to server: starts with untyped startup messages.
    Up,
    /// Server to client.
    Down,
}

/// Splits a stream of PostgreSQL protocol messages and counts them in `wire`.
struct Parser {
    direction: Direction,
    /// Still in the startup phase (untyped messages: `SSLRequest`, `StartupMessage`).
    startup: bool,
    /// A message other than `Sync` came since the last `Sync` or simple query.
    pending: bool,
    buf: Vec<u8>,
}

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

impl Parser {
    fn new(direction: Direction) -> Self {
        Parser {
            direction,
            startup: direction == Direction::Up,
            pending: false,
            buf: Vec::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8], wire: &Wire) {
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            if self.startup {
                if rest.len() < 8 {
                    break;
                }
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if rest.len() < len {
                    break;
                }
                let code = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
                self.startup = code == SSL_REQUEST || code == GSSENC_REQUEST;
                at += len.max(8);
                continue;
            }
            if rest.len() < 5 {
                break;
            }
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if rest.len() < 1 + len {
                break;
            }
            let kind = rest[0];
            let body = rest[5..1 + len].to_vec();
            self.count(kind, &body, wire);
            at += 1 + len;
        }
        self.buf.drain(..at);
    }

    fn count(&mut self, kind: u8, body: &[u8], wire: &Wire) {
        let inc = |a: &AtomicU64| {
            a.fetch_add(1, Ordering::Relaxed);
        };
        let pending = self.pending;
        if self.direction == Direction::Up {
            self.pending = !matches!(kind, b'S' | b'Q');
        }
        match (self.direction, kind) {
            (Direction::Up, b'Q') => {
                inc(&wire.queries);
                self.statement(body, wire);
            }
            (Direction::Up, b'P') => {
                inc(&wire.parses);
                // name \0 query \0 ...: a BEGIN prepared as a statement counts when run too,
                // but sqlx sends BEGIN and COMMIT as simple queries.
            }
            (Direction::Up, b'E') => inc(&wire.executes),
            (Direction::Up, b'S') => {
                inc(&wire.syncs);
                if !pending {
                    inc(&wire.bare_syncs);
                }
            }
            (Direction::Down, b'A') => inc(&wire.notices),
            _ => {}
        }
    }

    fn statement(&self, text: &[u8], wire: &Wire) {
        let head: String = text
            .iter()
            .take(24)
            .map(|&b| b as char)
            .collect::<String>()
            .trim_start()
            .to_ascii_uppercase();
        if head.starts_with("BEGIN") || head.starts_with("START TRANSACTION") {
            wire.begins.fetch_add(1, Ordering::Relaxed);
        } else if head.starts_with("ROLLBACK") {
            wire.rollbacks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Copies `from` to `to`, counting the messages.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    direction: Direction,
    wire: Arc<Wire>,
) {
    let mut parser = Parser::new(direction);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let bytes = match direction {
            Direction::Up => &wire.bytes_up,
            Direction::Down => &wire.bytes_down,
        };
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        parser.feed(&buf[..n], &wire);
    }
    let _ = to.shutdown().await;
}

/// A proxy on 127.0.0.1 to PostgreSQL at `server`, counting into the returned [`Wire`].
async fn proxy(server: SocketAddr) -> (u16, Arc<Wire>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
    let port = listener.local_addr().expect("addr").port();
    let wire = Arc::new(Wire::default());
    let counted = wire.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let wire = counted.clone();
            tokio::spawn(async move {
                let Ok(pg) = TcpStream::connect(server).await else {
                    return;
                };
                wire.connections.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_nodelay(true);
                let _ = pg.set_nodelay(true);
                let (client_read, client_write) = client.into_split();
                let (pg_read, pg_write) = pg.into_split();
                let up = tokio::spawn(pump(client_read, pg_write, Direction::Up, wire.clone()));
                pump(pg_read, client_write, Direction::Down, wire).await;
                let _ = up.await;
            });
        }
    });
    (port, wire)
}

// ---------------------------------------------------------------------------------------------
// The database's own counters, and the lock sampler.

/// `pg_stat_database` for the run's database.
#[derive(Clone, Copy, Default, Debug)]
struct DbStats {
    commits: i64,
    rollbacks: i64,
    returned: i64,
    fetched: i64,
    inserted: i64,
    updated: i64,
    deleted: i64,
    deadlocks: i64,
}

async fn db_stats(admin: &mut sqlx::PgConnection, db: &str) -> DbStats {
    // Statistics reach pg_stat_database at most once a second from each backend, and within
    // a second or so of it going idle; this clears what this connection has read before.
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *admin)
        .await
        .expect("clear snapshot");
    let row: (i64, i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, \
         tup_updated, tup_deleted, deadlocks FROM pg_stat_database WHERE datname = $1",
    )
    .bind(db)
    .fetch_one(&mut *admin)
    .await
    .expect("pg_stat_database");
    DbStats {
        commits: row.0,
        rollbacks: row.1,
        returned: row.2,
        fetched: row.3,
        inserted: row.4,
        updated: row.5,
        deleted: row.6,
        deadlocks: row.7,
    }
}

impl std::ops::Sub for DbStats {
    type Output = DbStats;
    fn sub(self, o: DbStats) -> DbStats {
        DbStats {
            commits: self.commits - o.commits,
            rollbacks: self.rollbacks - o.rollbacks,
            returned: self.returned - o.returned,
            fetched: self.fetched - o.fetched,
            inserted: self.inserted - o.inserted,
            updated: self.updated - o.updated,
            deleted: self.deleted - o.deleted,
            deadlocks: self.deadlocks - o.deadlocks,
        }
    }
}

/// What the lock sampler saw in one phase.
#[derive(Default, Debug)]
struct Waits {
    samples: u64,
    /// Samples in which at least one backend waited on a heavyweight lock.
    with_lock_wait: u64,
    /// Backend-samples waiting on a heavyweight lock (each ≈ 10 ms of one backend waiting).
    lock_backend_samples: u64,
    /// Distinct waits seen (a backend's statement, by pid and statement start).
    distinct_lock_waits: HashSet<(i32, i64)>,
    most_at_once: u64,
    /// By wait event and lock type.
    by_kind: BTreeMap<String, u64>,
    /// The waiting statements (their first 70 characters), per distinct wait.
    statements: BTreeMap<String, u64>,
    /// Backend-samples waiting on a lightweight lock (`LWLock`).
    lwlock_backend_samples: u64,
    lwlock_by_kind: BTreeMap<String, u64>,
}

/// A backend seen waiting: pid, wait event type and name, its statement's start (epoch
/// seconds), the type of the lock it waits for and the start of its statement (the gateway's
/// SQL, parameters as `$n`: no values).
type Waiting = (
    i32,
    String,
    String,
    Option<f64>,
    Option<String>,
    Option<String>,
);

/// Samples `pg_stat_activity` every 10 ms until `stop`, on a connection of its own.
async fn sample_waits(admin_url: String, db: String, stop: Arc<AtomicBool>) -> Waits {
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("sampler connects");
    let mut waits = Waits::default();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let rows: Vec<Waiting> = sqlx::query_as(
            "SELECT a.pid, a.wait_event_type, a.wait_event, \
                    extract(epoch FROM a.query_start)::float8, l.locktype, \
                    left(regexp_replace(a.query, '\\s+', ' ', 'g'), 70) \
             FROM pg_stat_activity a \
             LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted \
             WHERE a.datname = $1 AND a.wait_event_type IN ('Lock', 'LWLock')",
        )
        .bind(&db)
        .fetch_all(&mut conn)
        .await
        .expect("pg_stat_activity");
        waits.samples += 1;
        let mut locks = 0;
        for (pid, kind, event, started, locktype, statement) in rows {
            if kind == "Lock" {
                locks += 1;
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "microseconds since the epoch fit an i64"
                )]
                let at = (started.unwrap_or_default() * 1e6) as i64;
                if waits.distinct_lock_waits.insert((pid, at)) {
                    *waits
                        .statements
                        .entry(statement.unwrap_or_default())
                        .or_default() += 1;
                }
                *waits
                    .by_kind
                    .entry(format!(
                        "Lock:{event} ({})",
                        locktype.as_deref().unwrap_or("?")
                    ))
                    .or_default() += 1;
            } else {
                waits.lwlock_backend_samples += 1;
                *waits
                    .lwlock_by_kind
                    .entry(format!("LWLock:{event}"))
                    .or_default() += 1;
            }
        }
        waits.lock_backend_samples += locks;
        waits.with_lock_wait += u64::from(locks > 0);
        waits.most_at_once = waits.most_at_once.max(locks);
    }
    let _ = conn.close().await;
    waits
}

// ---------------------------------------------------------------------------------------------
// The fleet.

struct Instance {
    name: String,
    port: u16,
    wire: Arc<Wire>,
    child: tokio::process::Child,
}

impl Instance {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn copy_policies(to: &Path) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    std::fs::create_dir_all(to).expect("policy dir");
    for entry in std::fs::read_dir(shipped).expect("policies/") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    l.local_addr().expect("addr").port()
}

/// The config of one instance: the shipped agreements, the three upstreams as FHIR sources
/// (`everything_operation`), its store URL through its proxy, the defaults otherwise.
fn config(
    dir: &Path,
    name: &str,
    port: u16,
    store_url: &str,
    sources: &[(&str, &str, &str, String)],
) -> PathBuf {
    let own = dir.join(name);
    std::fs::create_dir_all(&own).expect("instance dir");
    let mut toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nmax_connections_per_client = 0\n\n\
         [store]\nurl = \"{store_url}\"\n\n\
         [log]\nlevel = \"warn\"\n\n[policy]\ndir = \"{policies}\"\n\n\
         [audit]\nkey_file = \"{AUDIT_KEY}\"\nspool_dir = \"spool\"\nhead_signing_key_file = \"{HEAD_KEY}\"\n\n\
         [auth]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\n\
         [[auth.key]]\nkid = \"test\"\nalgorithm = \"EdDSA\"\npublic_key_file = \"{key}\"\n",
        policies = dir.join("policies").display(),
        key = dir.join("key.pub.pem").display(),
    );
    for (id, source_name, ods, base_url) in sources {
        toml.push_str(&format!(
            "\n[[source]]\nid = \"{id}\"\nname = \"{source_name}\"\nods = \"{ods}\"\nkind = \"fhir\"\nbase_url = \"{base_url}\"\nconformance = \"off\"\neverything_operation = true\n"
        ));
    }
    let path = own.join("concord.toml");
    std::fs::write(&path, toml).expect("config");
    path
}

/// One request's kind, for the figures.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum Kind {
    Everything,
    Consent,
}

/// What one instance's clients did in a phase: latencies by kind, and failures.
#[derive(Default)]
struct Driven {
    latencies: HashMap<Kind, Vec<Duration>>,
    failures: Vec<String>,
}

/// The tokens the clients send.
struct Tokens {
    nurse: String,
    bob: String,
}

/// Drives `instance` with `clients` closed-loop clients for `seconds`; with `consents`, one
/// request in five is Bob's choice.
async fn drive(
    client: reqwest::Client,
    base: String,
    people: [String; 2],
    tokens: Arc<Tokens>,
    clients: u64,
    seconds: u64,
    consents: bool,
) -> Driven {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, base, people, tokens) =
            (client.clone(), base.clone(), people.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            let mut driven = Driven::default();
            let mut i = c;
            while Instant::now() < until {
                let consent = consents && i % 5 == 4;
                let request = if consent {
                    let status = if i % 10 == 4 { "active" } else { "inactive" };
                    let body = json!({
                        "resourceType": "Consent", "status": status,
                        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
                        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                        "patient": {"reference": format!("Patient/{}", people[1])},
                        "provision": {"type": "deny", "actor": [{
                            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}]},
                            "reference": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A81001"}}}]}
                    });
                    client
                        .post(format!("{base}/fhir/Consent"))
                        .bearer_auth(&tokens.bob)
                        .header("Content-Type", "application/fhir+json")
                        .body(body.to_string())
                } else {
                    let who = &people[usize::try_from(i % 2).expect("0 or 1")];
                    client
                        .get(format!("{base}/fhir/Patient/{who}/$everything"))
                        .bearer_auth(&tokens.nurse)
                        .header("Accept", "application/fhir+json")
                };
                let kind = if consent {
                    Kind::Consent
                } else {
                    Kind::Everything
                };
                let started = Instant::now();
                match request.send().await {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.bytes().await;
                        let took = started.elapsed();
                        if (status.as_u16() == 200 || status.as_u16() == 201) && body.is_ok() {
                            driven.latencies.entry(kind).or_default().push(took);
                        } else {
                            driven.failures.push(format!("{kind:?}: {status}"));
                        }
                    }
                    Err(e) => driven.failures.push(format!("{kind:?}: {e}")),
                }
                i += 1;
            }
            driven
        }));
    }
    let mut all = Driven::default();
    for t in tasks {
        let d = t.await.expect("client task");
        for (k, v) in d.latencies {
            all.latencies.entry(k).or_default().extend(v);
        }
        all.failures.extend(d.failures);
    }
    all
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short list"
    )]
    let i = (((sorted.len() - 1) as f64) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// One phase's results, printed as it ends.
struct Phase<'a> {
    name: &'a str,
    /// How long the clients ran.
    load_seconds: f64,
    /// The time the counts cover: the load and the settling after it.
    seconds: f64,
    /// Per instance: counts at the start and end.
    wire: Vec<(Counts, Counts)>,
    db: DbStats,
    driven: Vec<Driven>,
    waits: Waits,
}

#[allow(
    clippy::cast_precision_loss,
    reason = "counts far below 2^52 turned into rates"
)]
fn report(phase: &Phase<'_>, idle: Option<(&[Counts], f64)>, instances: &[Instance]) {
    println!(
        "\n## {} ({:.1} s, load average {})",
        phase.name,
        phase.load_seconds,
        loadavg()
    );
    let mut total_requests = 0usize;
    let mut total = Counts::default();
    let mut background = Counts::default();
    println!(
        "| instance | requests/s | `$everything` p50 / p99 ms | Consent p50 / p99 ms | round trips / request | statements / request | prepared / request | BEGIN / request | ROLLBACK | notices heard | new connections |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, ((start, end), driven)) in phase.wire.iter().zip(&phase.driven).enumerate() {
        assert!(
            driven.failures.is_empty(),
            "every request must answer 200 or 201: {} failed on {}, e.g. {:?}",
            driven.failures.len(),
            instances[i].name,
            &driven.failures[..driven.failures.len().min(5)]
        );
        let mut used = *end - *start;
        // What the instance does on its own in this time (measured while idle) is not the
        // requests' doing.
        let idle_share = idle.map(|(counts, secs)| {
            let rate = |n: u64| (n as f64 / secs * phase.seconds).round() as u64;
            Counts {
                round_trips: rate(counts[i].round_trips),
                pings: rate(counts[i].pings),
                statements: rate(counts[i].statements),
                parses: rate(counts[i].parses),
                begins: rate(counts[i].begins),
                ..Counts::default()
            }
        });
        if let Some(b) = idle_share {
            background.round_trips += b.round_trips;
            background.statements += b.statements;
            background.begins += b.begins;
            background.parses += b.parses;
            used.round_trips = used.round_trips.saturating_sub(b.round_trips);
            used.pings = used.pings.saturating_sub(b.pings);
            used.statements = used.statements.saturating_sub(b.statements);
            used.begins = used.begins.saturating_sub(b.begins);
            used.parses = used.parses.saturating_sub(b.parses);
        }
        let n: usize = driven.latencies.values().map(Vec::len).sum();
        total_requests += n;
        total.round_trips += used.round_trips;
        total.pings += used.pings;
        total.statements += used.statements;
        total.begins += used.begins;
        total.parses += used.parses;
        total.rollbacks += used.rollbacks;
        total.notices += used.notices;
        let lat = |k: Kind| {
            let mut l = driven.latencies.get(&k).cloned().unwrap_or_default();
            l.sort();
            if l.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.2} / {:.2}", percentile(&l, 0.5), percentile(&l, 0.99))
            }
        };
        println!(
            "| {} | {:.0} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            instances[i].name,
            n as f64 / phase.load_seconds,
            lat(Kind::Everything),
            lat(Kind::Consent),
            used.round_trips as f64 / n as f64,
            used.statements as f64 / n as f64,
            used.parses as f64 / n as f64,
            used.begins as f64 / n as f64,
            used.rollbacks,
            used.notices,
            used.connections,
        );
    }
    let n = total_requests as f64;
    let counts_by_kind: BTreeMap<Kind, usize> = phase
        .driven
        .iter()
        .flat_map(|d| d.latencies.iter().map(|(k, v)| (*k, v.len())))
        .fold(BTreeMap::new(), |mut m, (k, v)| {
            *m.entry(k).or_default() += v;
            m
        });
    println!(
        "| **fleet** | **{:.0}** | | | **{:.2}** | **{:.2}** | **{:.2}** | **{:.2}** | {} | {} | |",
        n / phase.load_seconds,
        total.round_trips as f64 / n,
        total.statements as f64 / n,
        total.parses as f64 / n,
        total.begins as f64 / n,
        total.rollbacks,
        total.notices,
    );
    println!("\nrequests: {counts_by_kind:?}");
    println!(
        "of the round trips, bare Syncs (the pool testing a connection before handing it out): {:.2} per request",
        total.pings as f64 / n
    );
    if idle.is_some() {
        println!(
            "background (the idle rate over this phase's length, subtracted above): {} round trips, {} statements, {} prepared, {} BEGIN",
            background.round_trips, background.statements, background.parses, background.begins
        );
    }
    // Not less the idle phase: pg_stat_database is flushed late (a backend reports at most
    // once a second, and when it goes idle), so the idle phase's counts hold some of the
    // warm-up's; these include the fleet's background work.
    let db = phase.db;
    println!(
        "pg_stat_database (background included), per request: {:.2} transactions committed, {:.2} rows inserted, {:.2} updated, {:.2} deleted, {:.1} fetched; {} rolled back, {} deadlocks in the phase",
        db.commits as f64 / n,
        db.inserted as f64 / n,
        db.updated as f64 / n,
        db.deleted as f64 / n,
        db.fetched as f64 / n,
        db.rollbacks,
        db.deadlocks,
    );
    let w = &phase.waits;
    println!(
        "lock waits (pg_stat_activity every 10 ms, {} samples): {} samples with a backend waiting on a lock ({:.2}%), {} distinct waits seen ({:.4} per request), at most {} at once, {} backend-samples (≈ {} ms of waiting); by kind: {:?}",
        w.samples,
        w.with_lock_wait,
        100.0 * w.with_lock_wait as f64 / w.samples.max(1) as f64,
        w.distinct_lock_waits.len(),
        w.distinct_lock_waits.len() as f64 / n,
        w.most_at_once,
        w.lock_backend_samples,
        w.lock_backend_samples * 10,
        w.by_kind,
    );
    for (statement, n) in &w.statements {
        println!("  waits of `{statement}`: {n}");
    }
    println!(
        "lightweight-lock waits: {} backend-samples; by kind: {:?}",
        w.lwlock_backend_samples, w.lwlock_by_kind
    );
}

#[tokio::main]
async fn main() {
    let Ok(admin_url) = std::env::var("CONCORD_TEST_DATABASE_URL") else {
        println!("fleet: set CONCORD_TEST_DATABASE_URL (PostgreSQL) to run this benchmark");
        return;
    };
    let instances_n = env_or("FLEET_INSTANCES", 3);
    let clients = env_or("FLEET_CLIENTS", 8);
    let seconds = env_or("FLEET_SECONDS", 15);
    let idle_seconds = env_or("FLEET_IDLE_SECONDS", 5);
    println!(
        "# fleet: {instances_n} instances on one PostgreSQL, {clients} clients each, {seconds} s per phase"
    );
    println!(
        "Two cores cannot show scaling: the instances, PostgreSQL, the upstreams and this load \
         generator share this machine's cores. The figures are what a request costs the \
         database and whether instances wait on each other there, not how a fleet scales."
    );
    println!(
        "cores: {}; load average at the start: {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        loadavg()
    );

    // The run's own database.
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("PostgreSQL answers");
    let db = format!("concord_bench_fleet_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut admin)
        .await
        .expect("create the run's database");
    let parsed = reqwest::Url::parse(&admin_url).expect("CONCORD_TEST_DATABASE_URL is a URL");
    let host = parsed.host_str().expect("a host").to_owned();
    let server: SocketAddr =
        tokio::net::lookup_host((host.as_str(), parsed.port().unwrap_or(5432)))
            .await
            .expect("resolve PostgreSQL")
            .next()
            .expect("an address");

    // The shared parts: policies, the token key, the upstreams.
    let dir = tempfile::tempdir().expect("dir");
    copy_policies(&dir.path().join("policies"));
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    std::fs::write(dir.path().join("key.pub.pem"), pair.public_key_pem()).expect("key");
    let key = jsonwebtoken::EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes())
        .expect("signing key");
    let gp = Upstream::start(data::gp()).await;
    let community = Upstream::start(data::community()).await;
    let social = Upstream::start(data::social()).await;
    let sources = [
        ("gp", "Riverside Medical Practice", "A81001", gp.base_url()),
        (
            "community",
            "Northshire Community Health",
            "RY4",
            community.base_url(),
        ),
        (
            "social",
            "Northshire Adult Social Care",
            "LA001",
            social.base_url(),
        ),
    ];

    // The instances, one at a time (the first applies the migrations).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let mut instances = Vec::new();
    for i in 0..instances_n {
        let name = format!(
            "{}",
            char::from(b'a' + u8::try_from(i % 26).expect("small"))
        );
        let (proxy_port, wire) = proxy(server).await;
        let mut url = parsed.clone();
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(proxy_port)).expect("port");
        url.set_path(&format!("/{db}"));
        url.set_query(Some("sslmode=disable"));
        let port = free_port();
        let config = config(dir.path(), &name, port, url.as_str(), &sources);
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).expect("log");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
            .args(["serve", "--config"])
            .arg(&config)
            .current_dir(config.parent().expect("dir"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("concord starts");
        let instance = Instance {
            name,
            port,
            wire,
            child,
        };
        let mut ready = false;
        for _ in 0..600 {
            if let Ok(r) = http.get(instance.url("/readyz")).send().await
                && r.status().as_u16() == 200
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            ready,
            "{} did not become ready: {}",
            instance.name,
            std::fs::read_to_string(dir.path().join(format!("{}.log", instance.name)))
                .unwrap_or_default()
        );
        instances.push(instance);
    }

    let token = |extra: &[(&str, Value)]| {
        let mut c = claims(extra);
        c.insert(
            "exp".into(),
            Value::from(jiff::Timestamp::now().as_second() + 3600),
        );
        mint(&key, &c)
    };
    let tokens = Arc::new(Tokens {
        nurse: token(&[("org", json!("RY4")), ("role", json!("nurse"))]),
        bob: token(&[
            ("scope", json!("patient/*.rs patient/Consent.cs")),
            ("nhs_number", json!(BOB)),
            ("role", json!("patient")),
            ("org", Value::Null),
        ]),
    });
    // Ann's and Bob's gateway ids, found through the first instance by a GP clinician.
    let mut people = Vec::new();
    for nhs in [ANN, BOB] {
        let r = http
            .get(instances[0].url(&format!("/fhir/Patient?identifier={NHS_SYSTEM}|{nhs}")))
            .bearer_auth(token(&[]))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
        people.push(matches(&body)[0]["id"].as_str().expect("id").to_owned());
    }
    let people: [String; 2] = [people[0].clone(), people[1].clone()];
    // Warm every instance (links, consent, tokens), then let the statistics settle.
    for instance in &instances {
        let _ = drive(
            http.clone(),
            instance.url(""),
            people.clone(),
            tokens.clone(),
            2,
            1,
            true,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let snapshot = |instances: &[Instance]| -> Vec<Counts> {
        instances.iter().map(|i| i.wire.counts()).collect()
    };

    // 1. Idle.
    let start = snapshot(&instances);
    let db_start = db_stats(&mut admin, &db).await;
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_seconds)).await;
    let idle_secs = began.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let end = snapshot(&instances);
    let db_end = db_stats(&mut admin, &db).await;
    let idle: Vec<Counts> = end.iter().zip(&start).map(|(e, s)| *e - *s).collect();
    let idle_db = db_end - db_start;
    println!("\n## idle ({idle_secs:.1} s)");
    for (i, c) in idle.iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "small counts")]
        let per_s = |n: u64| n as f64 / idle_secs;
        println!(
            "{}: {:.1} round trips/s, {:.1} statements/s, {:.1} BEGIN/s",
            instances[i].name,
            per_s(c.round_trips),
            per_s(c.statements),
            per_s(c.begins)
        );
    }
    println!("pg_stat_database: {idle_db:?}");
    // The idle phase's counts include the 1.5 s settle: scale by the time they cover.
    let idle_covered = idle_secs + 1.5;

    // 2. and 3.
    for (name, consents) in [
        ("`$everything` only", false),
        ("mixed: one request in five a Consent", true),
    ] {
        let start = snapshot(&instances);
        let db_start = db_stats(&mut admin, &db).await;
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = tokio::spawn(sample_waits(admin_url.clone(), db.clone(), stop.clone()));
        let began = Instant::now();
        let runs: Vec<_> = instances
            .iter()
            .map(|instance| {
                tokio::spawn(drive(
                    http.clone(),
                    instance.url(""),
                    people.clone(),
                    tokens.clone(),
                    clients,
                    seconds,
                    consents,
                ))
            })
            .collect();
        let mut driven = Vec::new();
        for r in runs {
            driven.push(r.await.expect("drive"));
        }
        let took = began.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let waits = sampler.await.expect("sampler");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let end = snapshot(&instances);
        let db_end = db_stats(&mut admin, &db).await;
        let covered = took + 1.5;
        let phase = Phase {
            name,
            load_seconds: took,
            seconds: covered,
            wire: start.into_iter().zip(end).collect(),
            db: db_end - db_start,
            driven,
            waits,
        };
        report(&phase, Some((&idle, idle_covered)), &instances);
        println!(
            "(requests/s over the {took:.1} s of load; the counts cover it and the 1.5 s after, \
             for the statistics to settle)"
        );
    }

    println!("\nload average at the end: {}", loadavg());
    for mut instance in instances {
        let _ = instance.child.start_kill();
        let _ = instance.child.wait().await;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop the run's database");
}
