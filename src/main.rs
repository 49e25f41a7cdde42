//! The `concord` binary.

use clap::Parser;

/// FHIR JSON handling allocates many small maps and strings; mimalloc serves that pattern
/// markedly faster than the system allocator (see benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = concord::cli::Cli::parse();
    match concord::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("concord: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
