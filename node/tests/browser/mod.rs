//! Headless Chromium driven over the DevTools protocol (CDP), for the dashboard's tests and
//! the dashboard bench: open a page, wait until the app says it is ready, collect every
//! console error, failed request and byte loaded, read values back, take screenshots.
//!
//! One WebSocket per page (`PUT /json/new`), a handful of commands (`Page.navigate`,
//! `Runtime.evaluate`, `Page.captureScreenshot`, the `*.enable` calls), and the events they
//! turn on. The browser runs with its own empty profile and is killed on drop.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

/// The browser to run: `$GRIDLEDGER_CHROMIUM`, else the first of Debian's and others'
/// names found on `PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GRIDLEDGER_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Sends `request` and reads its answer as JSON.
pub async fn json(request: reqwest::RequestBuilder) -> Result<Value, String> {
    request
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}

/// A running headless browser.
pub struct Browser {
    child: std::process::Child,
    /// `127.0.0.1:port` of its DevTools endpoint.
    devtools: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `exe` headless with a fresh profile, a 1280×900 window, and DevTools on a
    /// loopback port of its choosing.
    pub async fn launch(exe: &std::path::Path) -> Result<Browser, String> {
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "--headless=new",
            "--disable-gpu",
            // Root in a container has no user namespaces for the sandbox.
            "--no-sandbox",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--mute-audio",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        // Its stderr, read to the end on a thread (so that it never blocks on a full
        // pipe); the DevTools address is sent on as soon as it is printed.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = rx.recv().await {
                if let Some(url) = line.strip_prefix("DevTools listening on ws://") {
                    return url.split('/').next().map(str::to_owned);
                }
                seen.push(line);
            }
            None
        })
        .await;
        let devtools = match found {
            Ok(Some(d)) => d,
            _ => {
                let _ = child.kill();
                return Err(format!(
                    "the browser did not open DevTools within 30 s: {}",
                    seen.join(" | ")
                ));
            }
        };
        Ok(Browser {
            child,
            devtools,
            _profile: profile,
        })
    }

    /// A new tab, with the runtime, log, network and page events on.
    pub async fn page(&self) -> Result<Page, String> {
        let client = gridledger::wire::builder()
            .build()
            .map_err(|e| e.to_string())?;
        let target =
            json(client.put(format!("http://{}/json/new?about:blank", self.devtools))).await?;
        let ws = target["webSocketDebuggerUrl"]
            .as_str()
            .ok_or("no webSocketDebuggerUrl")?;
        let (socket, _) = tokio_tungstenite::connect_async(ws)
            .await
            .map_err(|e| format!("DevTools socket: {e}"))?;
        let (sink, mut stream) = socket.split();
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let events: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
        let (p, e) = (pending.clone(), events.clone());
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = v["id"].as_u64() {
                    if let Some(tx) = p.lock().ok().and_then(|mut p| p.remove(&id)) {
                        let _ = tx.send(v);
                    }
                } else if let Ok(mut e) = e.lock() {
                    e.push(v);
                }
            }
        });
        let page = Page {
            sink: tokio::sync::Mutex::new(Box::pin(sink)),
            pending,
            events,
            next: AtomicU64::new(1),
        };
        for m in [
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
            "Page.enable",
        ] {
            page.call(m, json!({})).await?;
        }
        // Every page as a first visit: its weight is everything it loads.
        page.call("Network.setCacheDisabled", json!({"cacheDisabled": true}))
            .await?;
        Ok(page)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;
type Sink = std::pin::Pin<
    Box<dyn futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Send>,
>;

/// One tab.
pub struct Page {
    sink: tokio::sync::Mutex<Sink>,
    pending: Pending,
    events: Arc<Mutex<Vec<Value>>>,
    next: AtomicU64,
}

/// What loading one page did.
#[derive(Debug, Default)]
pub struct Load {
    /// Console errors, uncaught exceptions and error log entries (CSP violations among them).
    pub errors: Vec<String>,
    /// Requests that failed or were answered 4xx/5xx.
    pub failed: Vec<String>,
    /// Bytes received over the network, headers included.
    pub bytes: u64,
    /// Requests made.
    pub requests: usize,
}

impl Page {
    /// Sends a command and waits (at most 30 s) for its answer.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.sink
            .lock()
            .await
            .send(Message::Text(msg.into()))
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        let answer = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .map_err(|_| format!("{method}: no answer within 30 s"))?
            .map_err(|_| format!("{method}: the socket closed"))?;
        if let Some(err) = answer.get("error") {
            return Err(format!("{method}: {err}"));
        }
        Ok(answer["result"].clone())
    }

    /// Evaluates `expr` (awaiting a promise) and returns its value as JSON.
    pub async fn eval(&self, expr: &str) -> Result<Value, String> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(format!("{expr}: {e}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Opens `url`, waits (at most 20 s) for the dashboard's `gl.ready`, lets late requests
    /// finish, and reports what loading it did.
    pub async fn open(&self, url: &str) -> Result<Load, String> {
        if let Ok(mut e) = self.events.lock() {
            e.clear();
        }
        self.call("Page.navigate", json!({"url": url})).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            // Until the new document exists, `gl` may be the old page's or absent.
            let ready = self
                .eval("!!(window.gl && window.gl.ready && window.gl.page === location.pathname)")
                .await
                .unwrap_or(Value::Bool(false));
            if ready == Value::Bool(true) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("{url}: not ready within 20 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(self.load())
    }

    /// The errors, failures and bytes of the events seen since the last `open`.
    pub fn load(&self) -> Load {
        let events = self.events.lock().map(|e| e.clone()).unwrap_or_default();
        let mut load = Load::default();
        for e in &events {
            let p = &e["params"];
            match e["method"].as_str().unwrap_or("") {
                "Runtime.exceptionThrown" => load.errors.push(format!(
                    "exception: {}",
                    p["exceptionDetails"]["exception"]["description"]
                        .as_str()
                        .unwrap_or_else(|| p["exceptionDetails"]["text"].as_str().unwrap_or("?"))
                )),
                "Runtime.consoleAPICalled"
                    if matches!(p["type"].as_str(), Some("error" | "assert")) =>
                {
                    load.errors
                        .push(format!("console.{}: {}", p["type"], p["args"]))
                }
                "Log.entryAdded" if p["entry"]["level"] == "error" => load.errors.push(format!(
                    "log: {} ({})",
                    p["entry"]["text"], p["entry"]["url"]
                )),
                "Network.requestWillBeSent" => load.requests += 1,
                "Network.loadingFailed" => load
                    .failed
                    .push(format!("{}: {}", p["type"], p["errorText"])),
                "Network.responseReceived" => {
                    let status = p["response"]["status"].as_u64().unwrap_or(0);
                    if status >= 400 {
                        load.failed
                            .push(format!("{} {}", status, p["response"]["url"]));
                    }
                }
                "Network.loadingFinished" => {
                    load.bytes += p["encodedDataLength"].as_f64().unwrap_or(0.0) as u64;
                }
                _ => {}
            }
        }
        load
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) -> Result<(), String> {
        self.capture(path, json!({"format": "png"})).await
    }

    /// A JPEG of the viewport scaled by `scale` (quality 80), written to `path`: small
    /// enough to commit.
    pub async fn screenshot_jpeg(&self, path: &std::path::Path, scale: f64) -> Result<(), String> {
        let size = self
            .eval("[document.documentElement.clientWidth, window.innerHeight]")
            .await?;
        let (w, h) = (
            size[0].as_f64().unwrap_or(1280.0),
            size[1].as_f64().unwrap_or(900.0),
        );
        self.capture(
            path,
            json!({"format": "jpeg", "quality": 80,
                   "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": scale}}),
        )
        .await
    }

    async fn capture(&self, path: &std::path::Path, params: Value) -> Result<(), String> {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", params).await?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}
