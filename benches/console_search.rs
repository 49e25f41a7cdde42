//! The audit search of the IG console and the AuditEvent API over a region's log (issue 16,
//! "How it is checked"): 1,000,000 records over 10,000 people, 2,000 users, 20 organisations
//! and 90 days, on SQLite and on PostgreSQL (when `CONCORD_TEST_DATABASE_URL` is set).
//!
//! The records are generated from a fixed seed and written through the store's own path, as
//! the gateway's writer and projector write them: `Store::append_audit` (the log) and
//! `Store::project_audit` with `Columns::of` each body (the search projection and its side
//! tables of disclosing sources and agreements), in batches of 4,096. Each record is a
//! staff request about one person: its user belongs to one of the 20 organisations (each one
//! source), the person's data is held by their home organisation and by up to two more, and
//! a successful request discloses 1 to 8 resources from those sources under one or two of 12
//! agreements (a few common, most rare). Purposes, outcomes and times are drawn as a busy
//! region's would be (1% break-glass, 5% refused, 1% failed; evenly over 90 days, 4 chains).
//!
//! Then `Store::audit_search` (the function the console and the AuditEvent API call) is
//! timed for the first page (51 rows: the console's 50 and one to know there is an older
//! page), newest first, for each filter alone (person, user, organisation, purpose, outcome,
//! review) and for an agreement with a 30-day range, each within the region scope (every
//! record) and within an IG lead's scope (the accesses by one organisation's staff and to
//! its data), `SEARCH_RUNS` runs each (default 200), each run with other values drawn from
//! the fixed seed (another person, user, organisation, agreement, window, and another
//! organisation's IG lead). Prints p50, p95 and the slowest run.
//!
//! `cargo bench --bench console_search`. `SEARCH_RECORDS` (1,000,000) changes the log's
//! size and `SEARCH_RUNS` (200) the runs per row; `SEARCH_SQLITE` names a SQLite file to keep
//! and `SEARCH_POSTGRES_URL` a PostgreSQL database to keep (one that already holds records
//! is searched again without writing them); `SEARCH_POSTGRES=0` skips PostgreSQL. Figures
//! are in `benches/README.md`.

#![allow(missing_docs, reason = "a benchmark binary")]

use std::time::{Duration, Instant};

use concord::audit::{AuditKey, Body, Columns, Disclosure, GENESIS, Projection, Record};
use concord::store::{AuditColumn, AuditQuery, AuditScope, AuditSpan, Store};

#[path = "common/rng.rs"]
mod rng;

use rng::SplitMix64 as Rng;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &[u8] = b"the console search benchmark's key, not a secret of any kind";
const SEED: u64 = 0x5EA2_C400_2026_1125;

const PEOPLE: usize = 10_000;
const USERS: usize = 2_000;
const ORGS: usize = 20;
const CHAINS: usize = 4;
const DAYS: i64 = 90;
const DAY_US: i64 = 86_400_000_000;
/// The log ends here (2026-11-25T00:00:00Z) and starts 90 days before.
const END_US: i64 = 1_795_564_800_000_000;
/// The first page of the console (50) and one more.
const PAGE: u32 = 51;

/// 12 agreements and how often each is the one a disclosure is made under, in thousandths.
const AGREEMENTS: [(&str, u32); 12] = [
    ("dsa-region-direct-care", 400),
    ("dsa-gp-community", 200),
    ("dsa-social-care", 120),
    ("dsa-hospital-discharge", 80),
    ("dsa-mental-health", 60),
    ("dsa-out-of-hours", 50),
    ("dsa-pharmacy", 40),
    ("dsa-emergency-access", 20),
    ("dsa-hospice", 12),
    ("dsa-maternity", 10),
    ("dsa-screening", 5),
    ("dsa-research-pilot", 3),
];

fn ods(org: usize) -> String {
    format!("ORG{org:02}")
}

fn source(org: usize) -> String {
    format!("src-{org:02}")
}

fn person_id(p: usize) -> String {
    let mut rng = Rng(SEED ^ (p as u64).wrapping_mul(0x9E37_79B9));
    uuid::Uuid::from_u128(u128::from(rng.next()) << 64 | u128::from(rng.next())).to_string()
}

/// The organisations holding a person's data: their home organisation and up to two more.
fn holders(p: usize) -> Vec<usize> {
    let mut rng = Rng(SEED ^ 0xB0D1 ^ p as u64);
    let mut orgs = vec![p % ORGS];
    for _ in 0..rng.below(3) {
        let o = rng.below(ORGS);
        if !orgs.contains(&o) {
            orgs.push(o);
        }
    }
    orgs
}

fn agreement(rng: &mut Rng) -> &'static str {
    let mut at = rng.below(1000) as u32;
    for (id, share) in AGREEMENTS {
        if at < share {
            return id;
        }
        at -= share;
    }
    AGREEMENTS[0].0
}

/// Record `i` of `n`: a staff request about one person, at its place in the 90 days.
fn body(rng: &mut Rng, i: usize, n: usize) -> Body {
    let step = DAYS * DAY_US / n as i64;
    let recorded_us =
        END_US - DAYS * DAY_US + i as i64 * step + rng.below(step.max(1) as usize) as i64;
    let user = rng.below(USERS);
    let org = user % ORGS;
    let person = rng.below(PEOPLE);
    let purpose = match rng.below(1000) {
        0..10 => "ETREAT",
        10..70 => "CAREMGT",
        _ => "TREAT",
    };
    let (outcome, status) = match rng.below(100) {
        0..5 => ("refused", 403),
        5 => ("error", 503),
        _ => ("success", 200),
    };
    let mut disclosed = Vec::new();
    if outcome == "success" {
        let held = holders(person);
        let agreements = [agreement(rng), agreement(rng)];
        for d in 0..rng.between(1, 8) {
            let from = held[rng.below(held.len())];
            disclosed.push(Disclosure {
                reference: format!("Observation/{}.obs-{person}-{d}", source(from)).into(),
                agreement: agreements[d % if rng.chance(0.3) { 2 } else { 1 }].into(),
                rule: "direct-care".into(),
                emergency: purpose == "ETREAT",
            });
        }
    }
    Body {
        recorded_us,
        request_id: format!("{:016x}", rng.next()),
        client_address: Some(format!(
            "10.{}.{}.{}:443",
            org,
            rng.below(256),
            rng.below(256)
        )),
        user: Some(format!("user-{user:04}")),
        user_name: Some(format!("Clinician {user}")),
        org: Some(ods(org)),
        role: Some("clinician".into()),
        caller: "staff".into(),
        method: "GET".into(),
        route: "/fhir/Patient/{id}/$everything".into(),
        target: format!("/fhir/Patient/{}/$everything", person_id(person)),
        purpose: Some(purpose.into()),
        break_glass_reason: (purpose == "ETREAT")
            .then(|| "Unconscious in the emergency department".into()),
        person: Some(person_id(person)),
        disclosed,
        withheld: rng.below(3),
        policy_hash: "0".repeat(64),
        outcome: outcome.into(),
        status,
        review: (purpose == "ETREAT").then(|| concord::audit::REVIEW_BREAK_GLASS.into()),
        ..Body::default()
    }
}

/// Writes `n` records, chained and hashed, through the store's append and projection.
async fn fill(store: &Store, n: usize) {
    let key = AuditKey::new(KEY).expect("key");
    let chains: Vec<String> = (0..CHAINS).map(|c| format!("bench-chain-{c}")).collect();
    let mut heads: Vec<(i64, String)> = vec![(0, GENESIS.to_owned()); CHAINS];
    let mut rng = Rng(SEED);
    let started = Instant::now();
    let mut batch: Vec<(Record, Columns)> = Vec::with_capacity(4096);
    for i in 0..n {
        let b = body(&mut rng, i, n);
        let c = i % CHAINS;
        let text = serde_json::to_string(&b).expect("json");
        let (seq, prev) = &mut heads[c];
        let hash = key.hash(&chains[c], *seq, prev, &text);
        batch.push((
            Record {
                chain: chains[c].clone(),
                seq: *seq,
                body: text,
                prev_hash: std::mem::replace(prev, hash.clone()),
                hash,
            },
            Columns::of(&b),
        ));
        *seq += 1;
        if batch.len() == 4096 {
            write(store, &mut batch).await;
        }
        if i % 100_000 == 99_999 {
            eprintln!(
                "  {} records written, {:.0} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    write(store, &mut batch).await;
    if let Store::Sqlite(pool) = store {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await
            .expect("checkpoint");
    }
    if let Store::Postgres(pool) = store {
        // As autovacuum does on a live server after such a load: statistics for the planner.
        sqlx::query("ANALYZE").execute(pool).await.expect("analyze");
    }
    eprintln!(
        "  {n} records written in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// One batch: the log first, then its rows in the search projection, as the gateway does.
async fn write(store: &Store, batch: &mut Vec<(Record, Columns)>) {
    let records: Vec<Record> = batch.iter().map(|(r, _)| r.clone()).collect();
    store.append_audit(&records).await.expect("append");
    let rows: Vec<Projection> = batch
        .drain(..)
        .map(|(r, columns)| Projection {
            chain: r.chain.as_str().into(),
            seq: r.seq,
            columns,
        })
        .collect();
    store.project_audit(&rows).await.expect("project");
}

/// An IG lead's scope: the accesses by `org`'s staff and to its data (its one source).
fn lead_of(org: usize) -> AuditScope {
    AuditScope {
        orgs: vec![ods(org)],
        sources: vec![source(org)],
    }
}

/// A filter of the search, drawn afresh for each run.
#[derive(Clone, Copy)]
enum Filter {
    Nothing,
    Person,
    User,
    Org,
    Purpose(&'static str),
    Outcome(&'static str),
    Review,
    AgreementIn30Days,
}

impl Filter {
    fn label(self) -> String {
        match self {
            Filter::Nothing => "none (the newest page)".into(),
            Filter::Person => "person".into(),
            Filter::User => "user".into(),
            Filter::Org => "organisation".into(),
            Filter::Purpose(p) => format!("purpose {p}"),
            Filter::Outcome(o) => format!("outcome {o}"),
            Filter::Review => "review break-glass".into(),
            Filter::AgreementIn30Days => "agreement + 30-day range".into(),
        }
    }

    fn query(self, rng: &mut Rng) -> AuditQuery {
        let mut q = AuditQuery {
            limit: PAGE,
            ..AuditQuery::default()
        };
        let mut equals = |column, value: String| q.equals.push((column, vec![value]));
        match self {
            Filter::Nothing => {}
            Filter::Person => equals(AuditColumn::Person, person_id(rng.below(PEOPLE))),
            Filter::User => equals(AuditColumn::User, format!("user-{:04}", rng.below(USERS))),
            Filter::Org => equals(AuditColumn::Org, ods(rng.below(ORGS))),
            Filter::Purpose(p) => equals(AuditColumn::Purpose, p.into()),
            Filter::Outcome(o) => equals(AuditColumn::Outcome, o.into()),
            Filter::Review => equals(AuditColumn::Review, "break-glass".into()),
            Filter::AgreementIn30Days => {
                let (id, _) = AGREEMENTS[rng.below(AGREEMENTS.len())];
                equals(AuditColumn::Agreement, id.into());
                let to = END_US - rng.below(60) as i64 * DAY_US;
                q.recorded.push(vec![AuditSpan {
                    from: Some(to - 30 * DAY_US),
                    to: Some(to),
                }]);
            }
        }
        q
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Times each filter, in the region scope and an IG lead's, and prints a table.
async fn searches(name: &str, store: &Store, runs: usize) {
    println!("\n## {name}\n");
    println!("| filter | scope | rows (last run) | p50 | p95 | slowest |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    let filters = [
        Filter::Nothing,
        Filter::Person,
        Filter::User,
        Filter::Org,
        Filter::Purpose("TREAT"),
        Filter::Purpose("ETREAT"),
        Filter::Outcome("success"),
        Filter::Outcome("refused"),
        Filter::Outcome("error"),
        Filter::Review,
        Filter::AgreementIn30Days,
    ];
    let mut worst = Duration::ZERO;
    for filter in filters {
        for region in [true, false] {
            let mut rng = Rng(SEED ^ 0x5EA7C4);
            let mut times = Vec::with_capacity(runs);
            let mut found = 0;
            for _ in 0..runs {
                let mut query = filter.query(&mut rng);
                if !region {
                    query.scope = Some(lead_of(rng.below(ORGS)));
                }
                let started = Instant::now();
                let rows = store.audit_search(&query).await.expect("search");
                times.push(started.elapsed());
                found = rows.len();
            }
            times.sort_unstable();
            let p95 = percentile(&times, 0.95);
            worst = worst.max(p95);
            println!(
                "| {} | {} | {found} | {} | **{}** | {} |",
                filter.label(),
                if region { "region" } else { "one organisation" },
                ms(percentile(&times, 0.5)),
                ms(p95),
                ms(*times.last().expect("runs")),
            );
        }
    }
    println!("\nWorst p95: {}", ms(worst));
}

/// Times the console's pictures (`/console/charts`): its three counts over the log's last
/// 30 days, in the region scope and an IG lead's (the audit search's scope), and prints a
/// table.
async fn charts(name: &str, store: &Store, runs: usize) {
    println!("\n## {name}: the pictures' three counts, last 30 days\n");
    println!("| scope | p50 | p95 | slowest |");
    println!("| --- | ---: | ---: | ---: |");
    let (from, to) = (END_US - 30 * DAY_US, END_US);
    for region in [true, false] {
        let mut rng = Rng(SEED ^ 0xC4A475);
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let scope = (!region).then(|| lead_of(rng.below(ORGS)));
            let started = Instant::now();
            store
                .audit_accesses_per_day(from, to, scope.as_ref())
                .await
                .expect("accesses");
            store
                .audit_break_glass_per_week(from, to, scope.as_ref())
                .await
                .expect("break-glass");
            store
                .audit_refusals_per_day(from, to, scope.as_ref())
                .await
                .expect("refusals");
            times.push(started.elapsed());
        }
        times.sort_unstable();
        println!(
            "| {} | {} | **{}** | {} |",
            if region { "region" } else { "one organisation" },
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.95)),
            ms(*times.last().expect("runs")),
        );
    }
}

async fn records(store: &Store) -> i64 {
    store.audit_count(None, None).await.expect("count")
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("SEARCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("SEARCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let charts_runs: usize = std::env::var("CHARTS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    println!(
        "# Audit search benchmark: {n} records, {PEOPLE} people, {USERS} users, {ORGS} organisations, {DAYS} days ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let dir = tempfile::tempdir().expect("dir");
    let file = std::env::var("SEARCH_SQLITE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("search.db"));
    let store = Store::connect(&format!("sqlite://{}", file.display()), 4)
        .await
        .expect("sqlite");
    store.migrate().await.expect("migrate");
    if records(&store).await == 0 {
        eprintln!("SQLite: writing {n} records to {}", file.display());
        fill(&store, n).await;
    }
    if std::env::var("SEARCH_CHARTS_ONLY").is_err() {
        searches("SQLite (WAL)", &store, runs).await;
    }
    charts("SQLite (WAL)", &store, charts_runs).await;
    drop(store);

    if std::env::var("SEARCH_POSTGRES").is_ok_and(|v| v == "0") {
        return;
    }
    if let Ok(url) = std::env::var("SEARCH_POSTGRES_URL") {
        // A database of one's own, kept: written once, searched again on later runs.
        let store = Store::connect(&url, 4).await.expect("postgres");
        store.migrate().await.expect("migrate");
        if records(&store).await == 0 {
            eprintln!("PostgreSQL: writing {n} records");
            fill(&store, n).await;
        }
        searches("PostgreSQL (127.0.0.1)", &store, runs).await;
        charts("PostgreSQL (127.0.0.1)", &store, charts_runs).await;
        return;
    }
    let Some(db) = concord::testing::TestDatabase::create().await else {
        println!("\nPostgreSQL: not measured (CONCORD_TEST_DATABASE_URL is not set)");
        return;
    };
    let store = Store::connect(db.url(), 4).await.expect("postgres");
    store.migrate().await.expect("migrate");
    eprintln!("PostgreSQL: writing {n} records");
    fill(&store, n).await;
    searches("PostgreSQL (127.0.0.1)", &store, runs).await;
    charts("PostgreSQL (127.0.0.1)", &store, charts_runs).await;
    if let Store::Postgres(pool) = store {
        pool.close().await;
    }
    db.drop().await;
}
