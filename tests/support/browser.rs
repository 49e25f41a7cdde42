//! A real headless browser for tests: Debian's `chromium` driven through `chromedriver`'s
//! W3C WebDriver HTTP API with reqwest (a handful of commands; no WebDriver crate needed).
//!
//! [`Browser::start`] returns `None` (the test is skipped, with a note) when `chromedriver`
//! or `chromium` is not installed, unless `CONCORD_BROWSER_TESTS=1` is set, as `.ci/run`
//! sets it: then a missing browser fails the test with a message saying what to install.

use std::time::Duration;

use serde_json::{Value, json};

/// Set to `1` to make a missing browser a failure rather than a skip.
pub(crate) const ENV_BROWSER_TESTS: &str = "CONCORD_BROWSER_TESTS";

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A program on `PATH`.
fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Sends a WebDriver command and reads its JSON answer.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    let bytes = request
        .send()
        .await
        .expect("chromedriver answers")
        .bytes()
        .await
        .expect("an answer");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// A headless Chromium session; the driver process ends when dropped.
pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` when they are not
    /// installed and browser tests are not required.
    pub(crate) async fn start() -> Option<Browser> {
        let required = std::env::var(ENV_BROWSER_TESTS).is_ok_and(|v| v == "1");
        let (Some(driver), Some(chromium)) = (on_path("chromedriver"), on_path("chromium")) else {
            assert!(
                !required,
                "{ENV_BROWSER_TESTS}=1 but `chromedriver` or `chromium` is not on PATH: apt-get install chromium chromium-driver"
            );
            eprintln!(
                "skipped: no chromedriver/chromium (set {ENV_BROWSER_TESTS}=1 to require them)"
            );
            return None;
        };
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("addr").port()
        };
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let answer = json_of(
            http.post(format!("{base}/session"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(capabilities.to_string()),
        )
        .await;
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        Some(Browser {
            http,
            session: format!("{base}/session/{session}"),
            driver: child,
            _profile: profile,
        })
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        json_of(request).await["value"].clone()
    }

    /// Opens a URL and waits for it to load.
    pub(crate) async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The address of the page shown.
    pub(crate) async fn url(&self) -> String {
        let v = self.command(reqwest::Method::GET, "/url", None).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// The page's HTML as the browser holds it.
    pub(crate) async fn source(&self) -> String {
        let v = self.command(reqwest::Method::GET, "/source", None).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// The element a CSS selector finds, if any.
    async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().map(str::to_owned)
    }

    /// Waits up to ten seconds for an element, then its text.
    pub(crate) async fn text(&self, css: &str) -> String {
        for _ in 0..100 {
            if let Some(id) = self.find(css).await {
                let v = self
                    .command(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                    .await;
                return v.as_str().unwrap_or_default().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no `{css}` on {} after 10 s:\n{}",
            self.url().await,
            self.source().await
        );
    }

    /// Waits up to ten seconds for an element, then the value of its attribute `name`
    /// (none when it has none).
    pub(crate) async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.text(css).await;
        let id = self.find(css).await.expect("found a moment ago");
        let v = self
            .command(
                reqwest::Method::GET,
                &format!("/element/{id}/attribute/{name}"),
                None,
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    /// The id of the element that has the keyboard's focus ("" for none).
    pub(crate) async fn focused(&self) -> String {
        let v = self
            .execute_async(
                "arguments[arguments.length - 1](document.activeElement ? document.activeElement.id : '');",
                json!([]),
            )
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// Checks a mistake shown the NHS.UK way in the page's form: the field `holder` (a CSS
    /// selector: the field, or its radios' group) is `aria-invalid="true"` and described by
    /// `#{field}-error`, which says `message`; the error summary at the top links to
    /// `#{field}` with the same words, and following the link puts the focus on the field.
    pub(crate) async fn assert_mistake(&self, holder: &str, field: &str, message: &str) {
        assert_eq!(
            self.attribute(holder, "aria-invalid").await.as_deref(),
            Some("true"),
            "{holder}"
        );
        let described = self
            .attribute(holder, "aria-describedby")
            .await
            .unwrap_or_default();
        assert!(
            described
                .split(' ')
                .any(|id| id == format!("{field}-error")),
            "{holder} is described by its message: {described}"
        );
        let beside = self.text(&format!("#{field}-error")).await;
        assert!(beside.contains(message), "{field}: {beside}");
        assert!(self.displayed(&format!("#{field}-error")).await);
        let link = format!(".nhsuk-error-summary a[href=\"#{field}\"]");
        let summary = self.text(&link).await;
        assert!(
            summary.contains(message),
            "{field} in the summary: {summary}"
        );
        self.click(&link).await;
        assert_eq!(self.focused().await, field, "the link leads to the field");
    }

    /// Waits up to ten seconds for an element, then clicks it.
    pub(crate) async fn click(&self, css: &str) {
        self.text(css).await;
        let id = self.find(css).await.expect("found a moment ago");
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Saves a screenshot of the page (PNG) to `path`.
    pub(crate) async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let v = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("base64 PNG");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Waits up to ten seconds for a field, then types `text` into it.
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        self.text(css).await;
        let id = self.find(css).await.expect("found a moment ago");
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Runs `script` in the page as WebDriver's asynchronous script: the body of a function
    /// whose last argument is the callback that ends it with a value, which is returned (or
    /// WebDriver's error, as `{"error": …, "message": …}`). WebDriver runs it outside the
    /// page's Content-Security-Policy.
    pub(crate) async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Presses `key` `times` times, as a keyboard does: W3C WebDriver key actions, one
    /// command for all of them (`'\u{E004}'` is Tab).
    pub(crate) async fn press(&self, key: char, times: usize) {
        let key = key.to_string();
        let strokes: Vec<Value> = (0..times)
            .flat_map(|_| {
                [
                    json!({"type": "keyDown", "value": key}),
                    json!({"type": "keyUp", "value": key}),
                ]
            })
            .collect();
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": strokes}]});
        self.command(reqwest::Method::POST, "/actions", Some(actions))
            .await;
    }

    /// Resizes the browser's window, in CSS pixels (e.g. to photograph a whole page).
    pub(crate) async fn resize(&self, width: u32, height: u32) {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Prints the page as the browser would (its print stylesheet applies) to a PDF at
    /// `path`: WebDriver's print command, A4.
    pub(crate) async fn print_pdf(&self, path: &std::path::Path) -> Vec<u8> {
        use base64::Engine;
        let page = json!({"page": {"width": 21.0, "height": 29.7}, "background": true});
        let v = self
            .command(reqwest::Method::POST, "/print", Some(page))
            .await;
        let pdf = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_else(|_| panic!("a base64 PDF: {v}"));
        std::fs::write(path, &pdf).expect("write the PDF");
        pdf
    }

    /// Renders the page as for print (`true`) or for the screen (`false`), through Chromium's
    /// DevTools protocol, so that a screenshot or [`Browser::displayed`] shows the print
    /// stylesheet's effect.
    pub(crate) async fn emulate_print(&self, print: bool) {
        let media = if print { "print" } else { "" };
        let command = json!({"cmd": "Emulation.setEmulatedMedia", "params": {"media": media}});
        self.command(reqwest::Method::POST, "/goog/cdp/execute", Some(command))
            .await;
    }

    /// Whether the element a CSS selector finds is shown (false when there is none).
    pub(crate) async fn displayed(&self, css: &str) -> bool {
        let Some(id) = self.find(css).await else {
            return false;
        };
        let v = self
            .command(
                reqwest::Method::GET,
                &format!("/element/{id}/displayed"),
                None,
            )
            .await;
        v.as_bool().unwrap_or(false)
    }

    /// Ends the session and the driver.
    pub(crate) async fn close(mut self) {
        self.command(reqwest::Method::DELETE, "", None).await;
        let _ = self.driver.kill().await;
    }
}
