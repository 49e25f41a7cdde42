//! Seeded generator of Concord's demo data: three fictional Northshire
//! providers that hold overlapping records of the same people, each written
//! as a FHIR Bulk Data export (one `{ResourceType}.ndjson` file per type).
//!
//! ```text
//! cargo run --release --example generate_demo -- --seed 2026 --people 200 --out examples/demo
//! ```
//!
//! - `gp/`: Riverside Medical Practice (ODS `A81001`)
//! - `community/`: Northshire Community Health NHS Trust (ODS `RY4`)
//! - `socialcare/`: Northshire County Council Adult Social Care (`LA001`, fictional)
//!
//! The same seed and people count give byte-identical output: the generator
//! uses its own SplitMix64 PRNG (no `rand`), a fixed reference date instead
//! of the clock, and ordered JSON objects. People are generated and written
//! one at a time, so memory stays flat however many are asked for. All people
//! are fictional; NHS numbers come from the 999 test range.
//!
//! Self-contained on purpose: it uses only `serde_json` and `std`, not the
//! `concord` library, so it keeps building while the library changes.

mod care;
mod codes;
mod community;
mod dates;
mod fhir;
mod gp;
mod gp_clinical;
mod gp_observations;
mod names;
mod nhs;
mod nursing;
mod out;
mod people;
mod profile;
mod rng;
mod socialcare;
mod specialist;
mod vitals;

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use crate::nhs::NhsNumbers;
use crate::out::{Export, Tally};

/// Command-line usage.
const USAGE: &str = "usage: generate_demo [--seed N] [--people N] [--out DIR]\n\
    \n  --seed N     PRNG seed, an unsigned 64-bit integer (default 2026)\
    \n  --people N   how many people, 1 to 900000 (default 200)\
    \n  --out DIR    output directory (default examples/demo)";

/// Parsed command-line options.
#[derive(Debug)]
struct Options {
    /// PRNG seed.
    seed: u64,
    /// Number of people.
    people: u64,
    /// Output directory.
    out: PathBuf,
}

/// Parse `--seed`, `--people` and `--out`; an error message names the problem.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut opts = Options {
        seed: 2026,
        people: 200,
        out: PathBuf::from("examples/demo"),
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("`{flag}` needs a value"))?;
        match flag.as_str() {
            "--seed" => {
                opts.seed = value
                    .parse()
                    .map_err(|_| format!("`--seed {value}` is not an unsigned integer"))?
            }
            "--people" => {
                opts.people = value
                    .parse()
                    .map_err(|_| format!("`--people {value}` is not an unsigned integer"))?;
                if !(1..=NhsNumbers::MAX_PEOPLE).contains(&opts.people) {
                    return Err(format!(
                        "`--people {value}` must be between 1 and {}",
                        NhsNumbers::MAX_PEOPLE
                    ));
                }
            }
            "--out" => opts.out = PathBuf::from(value),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(opts)
}

fn main() -> Result<(), Box<dyn Error>> {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(msg) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let mut gp = Export::create(&opts.out.join("gp"))?;
    let mut community = Export::create(&opts.out.join("community"))?;
    let mut social = Export::create(&opts.out.join("socialcare"))?;
    let mut numbers = NhsNumbers::new(opts.seed);
    let mut tally = Tally::new();
    let mut overlap = Tally::new();
    let mut walkthrough = Vec::new();

    for index in 0..opts.people {
        let nhs = numbers
            .next_number()
            .ok_or("ran out of 999-range NHS numbers")?;
        // INVARIANT: the allocator only yields numbers with a valid check digit.
        if !nhs::is_valid(&nhs) {
            return Err(format!("generated an invalid NHS number `{nhs}`").into());
        }
        let person = people::person(opts.seed, index, nhs);
        let known = [
            (person.at_gp, "GP"),
            (person.at_community, "community"),
            (person.at_social, "social care"),
        ];
        let key = known
            .iter()
            .filter(|k| k.0)
            .map(|k| k.1)
            .collect::<Vec<_>>()
            .join(" + ");
        *overlap.entry(key.clone()).or_insert(0) += 1;
        if index < 3 || (walkthrough.len() < 6 && !person.at_gp) {
            walkthrough.push(format!(
                "{} {} {} ({}, born {}): {key}",
                person.nhs, person.given, person.family, person.gender, person.birth
            ));
        }
        if person.at_gp {
            gp::generate(opts.seed, &person, &mut gp, &mut tally)?;
        }
        if person.at_community {
            community::generate(opts.seed, &person, &mut community, &mut tally)?;
        }
        if person.at_social {
            socialcare::generate(opts.seed, &person, &mut social, &mut tally)?;
        }
    }
    for export in [&mut gp, &mut community, &mut social] {
        export.finish()?;
    }

    println!(
        "seed {}, {} people, written to {}",
        opts.seed,
        opts.people,
        opts.out.display()
    );
    for (name, export) in [
        ("gp", &gp),
        ("community", &community),
        ("socialcare", &social),
    ] {
        let total: u64 = export.counts().values().sum();
        println!("\n{name}/  ({total} resources, {} bytes)", export.bytes());
        for (kind, n) in export.counts() {
            println!("  {kind:<22} {n:>8}");
        }
    }
    println!("\nknown to");
    for (key, n) in &overlap {
        println!("  {key:<36} {n:>8}");
    }
    println!("\nsensitive and notable records (provider | label | what)");
    for (key, n) in &tally {
        println!("  {key:<60} {n:>6}");
    }
    println!("\nwalk-through people (first three are fixed scenarios)");
    for line in &walkthrough {
        println!("  {line}");
    }
    eprintln!("\ndone in {:.2?}", started.elapsed());
    Ok(())
}
