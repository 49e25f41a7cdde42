//! Slow and abusive clients against the real `concord serve`, run as a child process so that
//! it has an open-file limit of its own: callers that never finish a request head, a body
//! shorter than its length or without end, idle kept-alive connections, too many connections
//! (in all and from one address), a client that never reads its answer, and SIGTERM with a
//! half-sent head. Each must leave other callers served and the process able to stop.
//!
//! Well-behaved callers connect from 127.0.0.2 and the abusive ones from 127.0.0.3 and up,
//! so that a per-address cap on the abusers never refuses the caller the test checks on. The
//! timeouts are short; every "closed within" allows a wide margin, as behaviour, not speed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ops::{binary_config, copy_shipped_policies, free_port, serve};

/// The well-behaved caller's address.
const CALLER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// How much later than its timeout a connection may close and still pass: generous, as
/// this machine may be busy.
const MARGIN: Duration = Duration::from_secs(8);

fn abuser(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 3 + n)
}

/// A `concord serve` child with extra `[server]` lines.
struct Gateway {
    child: tokio::process::Child,
    addr: SocketAddr,
    config: std::path::PathBuf,
    caller: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start(server: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("dir");
        copy_shipped_policies(&dir.path().join("policies"));
        let port = free_port();
        let config = binary_config(dir.path(), port);
        let listen = format!("listen = \"127.0.0.1:{port}\"\n");
        let text = std::fs::read_to_string(&config)
            .expect("config")
            .replace(&listen, &format!("{listen}{server}\n"));
        std::fs::write(&config, text).expect("write config");
        let child = serve(&config);
        let caller = reqwest::Client::builder()
            .local_address(IpAddr::V4(CALLER))
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let gateway = Gateway {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            config,
            caller,
            _dir: dir,
        };
        for _ in 0..400 {
            if gateway
                .caller
                .get(gateway.url("/readyz"))
                .send()
                .await
                .is_ok()
            {
                return gateway;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not come up");
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `/healthz` as the well-behaved caller.
    async fn healthz(&self) -> StatusCode {
        self.caller
            .get(self.url("/healthz"))
            .send()
            .await
            .expect("the caller is answered")
            .status()
    }

    async fn metrics(&self) -> String {
        self.caller
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// A raw connection from `from`.
    async fn connect(&self, from: Ipv4Addr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((from, 0)))
            .expect("bind a loopback address");
        socket.connect(self.addr).await.expect("connect")
    }

    /// A demo token for a social worker of the council (the source the config has).
    async fn token(&self) -> String {
        crate::audit::dev_token(&self.config).await
    }

    /// Waits until `/metrics` shows `needle`.
    async fn wait_for_metric(&self, needle: &str) -> String {
        let mut metrics = String::new();
        for _ in 0..200 {
            metrics = self.metrics().await;
            if metrics.contains(needle) {
                return metrics;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no `{needle}` in\n{metrics}");
    }
}

/// A request in progress that will not finish by itself: a Consent POST whose 100-byte body
/// stops after its first byte.
fn unfinished_post(token: &str) -> String {
    format!(
        "POST /fhir/Consent HTTP/1.1\r\nHost: concord\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n{{"
    )
}

/// [`unfinished_post`] with `Expect: 100-continue`: the gateway answers `100 Continue` when
/// its handler starts reading the body, so a caller that has read that knows the request is in
/// progress (busy), not merely sent.
fn unfinished_post_expecting_continue(token: &str) -> String {
    unfinished_post(token).replacen("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n", 1)
}

/// Reads the gateway's `100 Continue` on `stream` (within [`MARGIN`]).
async fn read_continue(stream: &mut TcpStream) {
    let mut got = Vec::new();
    let mut buf = [0_u8; 1024];
    let read = async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before 100 Continue");
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(MARGIN, read)
        .await
        .expect("100 Continue in time");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 100 Continue\r\n"), "{text}");
}

/// Reads until the gateway closes the connection (end of stream or reset), up to `limit`:
/// what was read, or `None` when it is still open.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0_u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// Sends a request and reads one whole answer with a `content-length`, leaving the
/// connection open: the status line.
async fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut got = Vec::new();
    let mut buf = [0_u8; 16 * 1024];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.expect("read answer");
            assert!(n > 0, "closed before answering");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().expect("length"))
                    })
                    .expect("content-length");
                if got.len() >= end + 4 + length {
                    return text.lines().next().unwrap_or_default().to_owned();
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("answered")
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: concord\r\n\r\n";

#[tokio::test]
async fn connections_that_never_finish_a_request_head_are_closed_at_the_header_deadline() {
    let gateway = Gateway::start("header_read_timeout_ms = 600\nidle_timeout_ms = 60000").await;
    let mut silent = gateway.connect(abuser(0)).await;
    let mut half_line = gateway.connect(abuser(0)).await;
    half_line
        .write_all(b"GET /fhir/metad")
        .await
        .expect("write");
    // Slowloris: a header line every 100 ms, for far longer than the header deadline.
    let slowloris = gateway.connect(abuser(1)).await;
    let (mut slow_read, mut slow_write) = slowloris.into_split();
    let trickle = tokio::spawn(async move {
        let _ = slow_write
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: concord\r\n")
            .await;
        for i in 0..200 {
            if slow_write
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    // Meanwhile the caller is served.
    assert_eq!(gateway.healthz().await, StatusCode::OK);

    let limit = Duration::from_millis(600) + MARGIN;
    assert!(
        read_until_closed(&mut silent, limit).await.is_some(),
        "a connection that sends nothing is closed"
    );
    assert!(
        read_until_closed(&mut half_line, limit).await.is_some(),
        "half a request line is closed"
    );
    let mut buf = [0_u8; 1024];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match slow_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a head trickling in is closed at its deadline, not kept alive by each byte"
    );
    trickle.abort();
    assert_eq!(gateway.healthz().await, StatusCode::OK);
    let metrics = gateway
        .wait_for_metric("concord_connections_closed_total{reason=\"header_timeout\"} 3")
        .await;
    assert!(
        !metrics.contains("127.0.0."),
        "no client addresses in metrics"
    );
}

#[tokio::test]
async fn a_request_body_that_stops_or_never_ends_is_answered_408() {
    let gateway = Gateway::start("body_read_timeout_ms = 800\nheader_read_timeout_ms = 5000").await;
    let token = gateway.token().await;
    let head = |length: &str| {
        format!(
            "POST /fhir/Consent HTTP/1.1\r\nHost: concord\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/fhir+json\r\n{length}\r\n"
        )
    };
    // A body shorter than its Content-Length.
    let mut short = gateway.connect(abuser(0)).await;
    short
        .write_all(format!("{}{{\"resourceType\":", head("Content-Length: 400\r\n")).as_bytes())
        .await
        .expect("write");
    // A chunked body that keeps coming, a chunk every 100 ms, for far longer than the timeout.
    let endless = gateway.connect(abuser(1)).await;
    let (mut endless_read, mut endless_write) = endless.into_split();
    let chunked = head("Transfer-Encoding: chunked\r\n");
    let trickle = tokio::spawn(async move {
        let _ = endless_write.write_all(chunked.as_bytes()).await;
        for _ in 0..200 {
            if endless_write.write_all(b"1\r\n \r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(gateway.healthz().await, StatusCode::OK);

    let limit = Duration::from_millis(800) + MARGIN;
    let answer = read_until_closed(&mut short, limit)
        .await
        .expect("closed after the body timeout");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("OperationOutcome"), "{answer}");
    let mut got = Vec::new();
    let endless_answer = tokio::time::timeout(limit, async {
        let mut buf = [0_u8; 4096];
        loop {
            match endless_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    assert!(endless_answer.is_ok(), "a body without end is cut off");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    gateway
        .wait_for_metric("concord_connections_closed_total{reason=\"body_timeout\"} 2")
        .await;
    assert_eq!(gateway.healthz().await, StatusCode::OK);
    // The audit log says what the callers were answered: 408, not the handler's view of a
    // cut-short body.
    let store = concord::store::Store::connect(
        &format!(
            "sqlite://{}",
            gateway._dir.path().join("concord.db").display()
        ),
        1,
    )
    .await
    .expect("the gateway's store");
    let rows: Vec<concord::audit::Record> =
        futures_util::TryStreamExt::try_collect(store.audit_rows())
            .await
            .expect("rows");
    let statuses: Vec<u16> = rows
        .iter()
        .filter_map(|r| serde_json::from_str::<concord::audit::Body>(&r.body).ok())
        .filter(|b| b.route == "/fhir/Consent")
        .map(|b| b.status)
        .collect();
    assert_eq!(statuses, [408, 408], "{statuses:?}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_at_the_idle_deadline() {
    let gateway = Gateway::start("idle_timeout_ms = 700\nheader_read_timeout_ms = 5000").await;
    let mut kept = gateway.connect(abuser(0)).await;
    assert_eq!(exchange(&mut kept, HEALTHZ).await, "HTTP/1.1 200 OK");
    assert_eq!(
        exchange(&mut kept, HEALTHZ).await,
        "HTTP/1.1 200 OK",
        "kept alive between requests"
    );
    assert!(
        read_until_closed(&mut kept, Duration::from_millis(700) + MARGIN)
            .await
            .is_some(),
        "closed once idle"
    );
    gateway
        .wait_for_metric("concord_connections_closed_total{reason=\"idle_timeout\"} 1")
        .await;
}

#[tokio::test]
async fn the_per_client_cap_refuses_one_address_while_another_is_served() {
    let gateway =
        Gateway::start("max_connections_per_client = 3\nheader_read_timeout_ms = 30000").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = gateway.connect(abuser(0)).await;
        assert_eq!(exchange(&mut c, HEALTHZ).await, "HTTP/1.1 200 OK");
        held.push(c);
    }
    let mut fourth = gateway.connect(abuser(0)).await;
    let refused = read_until_closed(&mut fourth, MARGIN)
        .await
        .expect("the fourth connection from one address is closed at once");
    assert!(
        refused.is_empty() || refused.starts_with("HTTP/1.1 503"),
        "{refused}"
    );
    // Another address is served, and so is a second abuser address.
    assert_eq!(gateway.healthz().await, StatusCode::OK);
    let mut other = gateway.connect(abuser(1)).await;
    assert_eq!(exchange(&mut other, HEALTHZ).await, "HTTP/1.1 200 OK");
    // The held connections still work.
    assert_eq!(exchange(&mut held[0], HEALTHZ).await, "HTTP/1.1 200 OK");
    gateway
        .wait_for_metric(
            "concord_connections_refused_total{reason=\"max_connections_per_client\"} 1",
        )
        .await;
}

#[tokio::test]
async fn the_total_cap_evicts_the_longest_idle_connection_and_refuses_only_when_all_are_busy() {
    let gateway = Gateway::start(
        "max_connections = 4\nmax_connections_per_client = 0\nheader_read_timeout_ms = 30000\nbody_read_timeout_ms = 30000",
    )
    .await;
    let token = gateway.token().await;
    // Four silent connections fill the gateway; the caller still gets in, in place of the
    // one that has waited longest.
    let mut silent = Vec::new();
    for n in 0..4 {
        silent.push(gateway.connect(abuser(n)).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gateway.healthz().await, StatusCode::OK);
    assert!(
        read_until_closed(&mut silent[0], MARGIN).await.is_some(),
        "the oldest silent connection made room"
    );
    gateway
        .wait_for_metric("concord_connections_closed_total{reason=\"evicted\"}")
        .await;
    drop(silent);

    // Four connections each busy with a request (a body still to come): nothing to evict,
    // so a fifth is refused, with a 503 where it can be sent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut busy = Vec::new();
    for n in 0..4 {
        let mut c = gateway.connect(abuser(n)).await;
        c.write_all(unfinished_post_expecting_continue(&token).as_bytes())
            .await
            .expect("write");
        // The gateway has read the head and is reading the body: the connection is busy.
        read_continue(&mut c).await;
        busy.push(c);
    }
    let mut fifth = gateway.connect(abuser(5)).await;
    let refused = read_until_closed(&mut fifth, MARGIN)
        .await
        .expect("a connection beyond the cap is closed at once");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("OperationOutcome"), "{refused}");
    drop(busy);
    // Once they are gone the caller is served again.
    let mut served = false;
    for _ in 0..50 {
        if let Ok(r) = gateway.caller.get(gateway.url("/healthz")).send().await
            && r.status() == StatusCode::OK
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the caller is served once connections are freed");
    gateway
        .wait_for_metric("concord_connections_refused_total{reason=\"max_connections\"}")
        .await;
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_cut_off_and_others_are_served() {
    let gateway = Gateway::start("send_timeout_ms = 500").await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((abuser(0), 0))).expect("bind");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let stream = socket.connect(gateway.addr).await.expect("connect");
    let (_never_read, mut write) = stream.into_split();
    // Many pipelined requests for the CapabilityStatement, far more answer than any socket
    // buffer holds, and never a byte read. With a token: callers without one are rate
    // limited, and their short 429s could all fit in the buffers.
    let token = gateway.token().await;
    let flood = tokio::spawn(async move {
        let request = format!(
            "GET /fhir/metadata HTTP/1.1\r\nHost: concord\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .repeat(2_000)
        .into_bytes();
        let _ = write.write_all(&request).await;
        // Keep the connection's write half open until the test ends.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    assert_eq!(gateway.healthz().await, StatusCode::OK);
    gateway
        .wait_for_metric("concord_connections_closed_total{reason=\"send_timeout\"} 1")
        .await;
    assert_eq!(gateway.healthz().await, StatusCode::OK);
    flood.abort();
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_with_a_half_sent_head_ends_the_gateway_within_its_deadline() {
    let mut gateway = Gateway::start(
        "shutdown_deadline_ms = 1500\nheader_read_timeout_ms = 60000\nidle_timeout_ms = 60000\nbody_read_timeout_ms = 60000",
    )
    .await;
    let token = gateway.token().await;
    let search = gateway
        .caller
        .get(gateway.url("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990465630"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answer");
    assert_eq!(search.status(), StatusCode::OK);
    let mut half = gateway.connect(abuser(0)).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: conc")
        .await
        .expect("write");
    let mut idle = gateway.connect(abuser(1)).await;
    assert_eq!(exchange(&mut idle, HEALTHZ).await, "HTTP/1.1 200 OK");
    // A request in progress that will not finish by itself (its body never comes): the
    // gateway waits for it, then closes it at the deadline.
    let mut busy = gateway.connect(abuser(2)).await;
    busy.write_all(unfinished_post(&token).as_bytes())
        .await
        .expect("write");
    // Let the gateway read the heads before the signal.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let pid = gateway.child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_millis(1500) + MARGIN, gateway.child.wait())
        .await
        .expect("the gateway ends within its shutdown deadline")
        .expect("exit status");
    assert!(exit.success(), "{exit:?}");
    assert!(read_until_closed(&mut half, MARGIN).await.is_some());
    assert!(read_until_closed(&mut idle, MARGIN).await.is_some());
    assert!(read_until_closed(&mut busy, MARGIN).await.is_some());

    // The search's audit record, acknowledged before its answer, is there and the chain
    // verifies.
    let verify = tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(["audit", "verify", "--config"])
        .arg(&gateway.config)
        .output()
        .await
        .expect("audit verify");
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(out.contains("1 record(s)"), "{out}");
}
