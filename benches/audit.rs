//! What the audit log costs, measured on the real stores:
//!
//! 1. Durable appends per second with concurrent writers (`WRITERS` tasks appending at once, default 256,
//!    as the requests of a busy gateway do), group commit on (the gateway's writer) and off
//!    (the same writer taking one record per transaction), side by side, on SQLite (WAL,
//!    `synchronous=FULL`: every commit is on disk when it returns) and on PostgreSQL (when
//!    `CONCORD_TEST_DATABASE_URL` is set; a fresh database is made and dropped). Each run is
//!    bounded by a count of appends. The time of each append is what auditing adds to a
//!    request; its median and p99 are printed, under load and for a lone writer.
//! 2. `audit verify` over a chain of `VERIFY_RECORDS` records (default 1,000,000) on SQLite
//!    (and a fifth of that on PostgreSQL): records checked per second, beside the rate at
//!    which the store hands over the same rows with no check at all (the floor). The records are
//!    written straight into the store in large batches, each body shaped like the gateway's
//!    (a request disclosing 0 to 20 resources, from a fixed-seed generator).
//!
//! Run with `cargo bench --bench audit`. Figures are recorded in `benches/README.md`.

#![allow(missing_docs, reason = "a benchmark binary")]

use std::time::{Duration, Instant};

use concord::audit::{
    AuditKey, AuditLog, Body, Columns, Disclosure, GENESIS, Options, Projection, Record,
    SourceOutcome,
};
use concord::store::Store;

#[path = "common/rng.rs"]
mod rng;

use rng::SplitMix64 as Rng;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &[u8] = b"the audit benchmark's key, not a secret of any kind";
/// Concurrent writers (`WRITERS`, default 256: requests in flight on a busy gateway).
fn writers() -> usize {
    std::env::var("WRITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}
const SEED: u64 = 0xA0D1_7000_2026_1125;

/// A record like the gateway writes for `$everything`: who, whose, what was disclosed.
fn body(rng: &mut Rng, i: u64) -> Body {
    let disclosed = rng.below(21) as u64;
    Body {
        recorded_us: 1_764_000_000_000_000 + i as i64 * 1_000,
        request_id: format!("{:016x}{:016x}", rng.next(), rng.next()),
        client_address: Some(format!(
            "10.0.{}.{}:5{:04}",
            rng.below(256),
            rng.below(256),
            i % 10_000
        )),
        user: Some(format!("user-{}", rng.below(500))),
        user_name: Some("A. Clinician".into()),
        org: Some(["A81001", "RY4", "LA001"][rng.below(3)].into()),
        role: Some("clinician".into()),
        caller: "staff".into(),
        method: "GET".into(),
        route: "/fhir/Patient/{id}/$everything".into(),
        target: format!("/fhir/Patient/{:032x}/$everything", rng.next()),
        purpose: Some("TREAT".into()),
        person: Some(format!("{:032x}", rng.below(10_000))),
        sources: ["gp", "community", "socialcare"]
            .iter()
            .map(|s| SourceOutcome {
                source: (*s).into(),
                outcome: "ok".into(),
            })
            .collect(),
        disclosed: (0..disclosed)
            .map(|d| Disclosure {
                reference: format!("Observation/gp.{:x}-{d}", rng.next()).into(),
                agreement: "dsa-northshire-direct-care".into(),
                rule: "gp-to-community".into(),
                emergency: false,
            })
            .collect(),
        withheld: rng.below(3),
        policy_hash: format!("{:016x}", rng.next()).repeat(4),
        outcome: "success".into(),
        status: 200,
        ..Body::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Bytes this process has handed to `write` so far (`wchar` of `/proc/self/io`; Linux), or
/// `None` where that cannot be read.
fn bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Appends `total` records from `writers` concurrent tasks; returns appends per second, the
/// sorted times of single appends, how long the search projection took to catch up after
/// the last append, and the bytes this process wrote per append until then (on SQLite the
/// write-ahead log's frames and the checkpoints' copies; on PostgreSQL the server writes).
async fn appends(
    store: &Store,
    max_batch: usize,
    writers: usize,
    total: usize,
) -> (f64, Vec<Duration>, Duration, Option<u64>) {
    let log = AuditLog::start(
        store.clone(),
        AuditKey::new(KEY).expect("key"),
        Options {
            max_batch,
            ..Options::default()
        },
    );
    let mut rng = Rng(SEED);
    let bodies: Vec<Body> = (0..total as u64).map(|i| body(&mut rng, i)).collect();
    let per = total / writers;
    let written = bytes_written();
    let started = Instant::now();
    let tasks: Vec<_> = bodies
        .chunks(per.max(1))
        .map(|chunk| {
            let (log, chunk) = (log.clone(), chunk.to_vec());
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(chunk.len());
                for b in &chunk {
                    let t = Instant::now();
                    log.append(b).await.expect("durable append");
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut times = Vec::with_capacity(total);
    for t in tasks {
        times.extend(t.await.expect("writer"));
    }
    let rate = times.len() as f64 / started.elapsed().as_secs_f64();
    // The search projection follows the log a moment later: how long after the last
    // durable append every record is searchable.
    let settling = Instant::now();
    log.settle().await;
    let settled = settling.elapsed();
    let per_append = written
        .zip(bytes_written())
        .map(|(before, after)| after.saturating_sub(before) / times.len().max(1) as u64);
    times.sort_unstable();
    (rate, times, settled, per_append)
}

async fn append_table(name: &str, store: &Store) {
    println!("\n## Durable appends, {name}\n");
    println!(
        "| group commit | writers | appends | appends/s | append median | append p99 | searchable after the last | bytes written per append |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (label, max_batch, writers, total) in [
        ("on", concord::audit::MAX_BATCH, writers(), 100_000),
        ("off (1 record per transaction)", 1, writers(), 10_000),
        ("on", concord::audit::MAX_BATCH, 1, 2_000),
        ("off (1 record per transaction)", 1, 1, 2_000),
    ] {
        let (rate, times, settled, written) = appends(store, max_batch, writers, total).await;
        let written = match (store, written) {
            (Store::Sqlite(_), Some(n)) => n.to_string(),
            _ => "-".into(),
        };
        println!(
            "| {label} | {writers} | {} | **{rate:.0}** | {} | {} | {} | {written} |",
            times.len(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(settled),
        );
    }
}

/// Appends records to the log and their rows to the search projection, as the gateway's
/// writer and projector do.
async fn fill(store: &Store, batch: &mut Vec<(Record, Columns)>) {
    let records: Vec<Record> = batch.iter().map(|(r, _)| r.clone()).collect();
    store.append_audit(&records).await.expect("fill");
    let projected: Vec<Projection> = batch
        .drain(..)
        .map(|(r, columns)| Projection {
            chain: r.chain.as_str().into(),
            seq: r.seq,
            columns,
        })
        .collect();
    store.project_audit(&projected).await.expect("project");
}

/// Writes `n` chained records straight into the store (unless `filled`: the store holds
/// them from an earlier run), then times `verify`.
async fn verify_run(name: &str, store: &Store, n: u64, filled: bool) {
    let key = AuditKey::new(KEY).expect("key");
    if !filled {
        fill_chain(name, store, &key, n).await;
    }
    time_verify(name, store, &key).await;
}

/// Writes `n` chained records of a new chain straight into the store.
async fn fill_chain(name: &str, store: &Store, key: &AuditKey, n: u64) {
    let chain = uuid::Uuid::new_v4().to_string();
    let mut rng = Rng(SEED ^ 0x5EED);
    let mut prev = GENESIS.to_owned();
    let filling = Instant::now();
    let mut batch = Vec::with_capacity(4096);
    for i in 0..n {
        let b = body(&mut rng, i);
        let text = serde_json::to_string(&b).expect("json");
        let hash = key.hash(&chain, i as i64, &prev, &text);
        batch.push((
            Record {
                chain: chain.clone(),
                seq: i as i64,
                body: text,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            },
            Columns::of(&b),
        ));
        if batch.len() == 4096 {
            fill(store, &mut batch).await;
        }
    }
    fill(store, &mut batch).await;
    if let Store::Sqlite(pool) = store {
        // The fill wrote past the gateway's writer, which checkpoints every second: leave the
        // database as a running gateway keeps it, its write-ahead log copied back.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await
            .expect("checkpoint");
    }
    eprintln!(
        "{name}: {n} records written in {:.1} s",
        filling.elapsed().as_secs_f64()
    );
}

/// Times reading the log's rows alone (the floor), then `verify`.
async fn time_verify(name: &str, store: &Store, key: &AuditKey) {
    // The floor: reading the rows alone, no check.
    let started = Instant::now();
    let read = {
        use futures_util::TryStreamExt;
        let mut rows = store.audit_rows();
        let mut n = 0_u64;
        while rows.try_next().await.expect("row").is_some() {
            n += 1;
        }
        n
    };
    let floor = started.elapsed();
    let started = Instant::now();
    let verified = concord::audit::verify(store, key)
        .await
        .expect("readable")
        .expect("verifies");
    let took = started.elapsed();
    println!(
        "| {name} | {} | {:.2} s | **{:.0}** | {:.0} |",
        verified.records,
        took.as_secs_f64(),
        verified.records as f64 / took.as_secs_f64(),
        read as f64 / floor.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = |name: &str| {
        let url = format!("sqlite://{}", dir.path().join(name).display());
        async move {
            let store = Store::connect(&url, 4).await.expect("sqlite");
            store.migrate().await.expect("migrate");
            store
        }
    };
    let verify_records: u64 = std::env::var("VERIFY_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!(
        "# Audit log benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // `APPENDS=0` measures verification alone.
    let appends = std::env::var("APPENDS").map_or(true, |v| v != "0");
    if appends {
        append_table(
            "SQLite (WAL, synchronous=FULL)",
            &sqlite("appends.db").await,
        )
        .await;
    }
    let postgres = concord::testing::TestDatabase::create().await;
    if let Some(db) = postgres.as_ref().filter(|_| appends) {
        let store = Store::connect(db.url(), 8).await.expect("postgres");
        store.migrate().await.expect("migrate");
        append_table("PostgreSQL (127.0.0.1)", &store).await;
    } else if postgres.is_none() {
        println!("\nPostgreSQL: not measured (CONCORD_TEST_DATABASE_URL is not set)");
    }

    if verify_records == 0 {
        if let Some(db) = postgres {
            db.drop().await;
        }
        return;
    }
    println!("\n## audit verify\n");
    println!("| store | records | time | records/s | rows/s read alone (no check) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    // `VERIFY_DB=<file>`: the SQLite database is kept there, and a later run with the same
    // file verifies it again without writing it anew (so that two builds verify the same
    // records; the records are not counted again, `VERIFY_RECORDS` only says "not 0").
    match std::env::var_os("VERIFY_DB") {
        Some(file) => {
            let file = std::path::PathBuf::from(file);
            let filled = file.exists();
            let store = Store::connect(&format!("sqlite://{}", file.display()), 4)
                .await
                .expect("sqlite");
            store.migrate().await.expect("migrate");
            verify_run("SQLite", &store, verify_records, filled).await;
        }
        None => verify_run("SQLite", &sqlite("verify.db").await, verify_records, false).await,
    }
    if let Some(db) = postgres {
        let store = Store::connect(db.url(), 8).await.expect("postgres");
        // With `APPENDS=0` nothing has made the schema yet.
        store.migrate().await.expect("migrate");
        verify_run("PostgreSQL", &store, verify_records / 5, false).await;
        drop(store);
        db.drop().await;
    }
}
