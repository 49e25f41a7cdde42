//! Driving a gateway under load for the benchmarks: wrk when it is installed (fixed duration,
//! 1 thread, 32 connections), an in-process closed loop of 32 clients otherwise.

use std::time::Instant;

/// Requests/s, median and p99 (ms) of one run (`-` for the closed loop, which measures no
/// latencies).
pub(crate) struct Load {
    pub(crate) rps: f64,
    pub(crate) p50: String,
    pub(crate) p99: String,
}

/// True when `wrk` is on the PATH.
pub(crate) fn has_wrk() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

/// How long each wrk run lasts: `LOAD_SECONDS`, 10 by default.
pub(crate) fn seconds() -> u64 {
    std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// One wrk run against `url` with `extra` arguments (headers, a Lua script); every request
/// must succeed.
pub(crate) async fn wrk(url: &str, extra: &[std::ffi::OsString], seconds: u64) -> Load {
    let output = tokio::process::Command::new("wrk")
        .args(["-t1", "-c32", &format!("-d{seconds}s"), "--latency"])
        .args(extra)
        .args(["-H", "Accept: application/fhir+json", url])
        .output()
        .await
        .expect("run wrk");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        !text.contains("Non-2xx"),
        "every request must succeed:\n{text}"
    );
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned()))
            .unwrap_or_else(|| panic!("wrk printed no `{prefix}`:\n{text}"))
    };
    Load {
        rps: field("Requests/sec:").parse().expect("requests/s"),
        p50: field("50%"),
        p99: field("99%"),
    }
}

/// Closed loop of 32 in-process clients for a fixed number of requests (when wrk is absent),
/// sending `token` when given.
pub(crate) async fn closed_loop(url: &str, token: Option<&str>, requests: usize) -> Load {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, url) = (client.clone(), url.to_owned());
        let token = token.map(str::to_owned);
        tasks.push(tokio::spawn(async move {
            for _ in 0..requests / 32 {
                let mut request = client.get(&url);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let r = request.send().await.expect("answer");
                assert!(r.status().is_success());
                let _ = r.bytes().await.expect("body");
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    Load {
        rps: (requests / 32 * 32) as f64 / started.elapsed().as_secs_f64(),
        p50: "-".into(),
        p99: "-".into(),
    }
}
