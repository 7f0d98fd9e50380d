//! The dashboard in a real browser: headless Chromium driven through chromedriver
//! (WebDriver) against the real `fortress-pat demo` binary (mock Claude API upstream,
//! dashboard under `/admin`).
//!
//! It logs in, sends a Claude API call through the gateway and sees it arrive live on the
//! Traffic Feed, flips a kill switch in the Management page and sees the next call denied,
//! finds the flip in the Change Log, and saves a screenshot of each page under
//! `$CARGO_TARGET_DIR/dashboard-screenshots/`. Every wait is a WebDriver wait on a page
//! condition (polled with a deadline).
//!
//! Needs `chromium` and `chromedriver` (`bash scripts/setup-browser.sh`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(30);

/// What the demo prints for a new user.
struct Demo {
    child: Child,
    base: String,
    key: String,
    dashboard: String,
    password: String,
}

async fn start_demo(data_dir: &std::path::Path) -> anyhow::Result<Demo> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fortress-pat"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let (mut base, mut key, mut dashboard, mut password) = (None, None, None, None);
    let read = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("PAT Fortress demo is listening on ") {
                base = Some(rest.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("Your gateway key: ") {
                key = Some(rest.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("Dashboard: ") {
                dashboard = Some(rest.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("Dashboard owner: admin / password: ") {
                password = Some(rest.trim().to_owned());
            }
            if base.is_some() && key.is_some() && dashboard.is_some() && password.is_some() {
                return Ok::<_, anyhow::Error>(lines);
            }
        }
        bail!("the demo exited before printing its URLs and credentials")
    };
    let lines = tokio::time::timeout(WAIT, read)
        .await
        .context("the demo did not print its URLs in time")??;
    // Keep draining stdout so the demo never blocks on a full pipe.
    tokio::spawn(async move {
        let mut lines = lines;
        while let Ok(Some(_)) = lines.next_line().await {}
    });
    Ok(Demo {
        child,
        base: base.context("base")?,
        key: key.context("key")?,
        dashboard: dashboard.context("dashboard")?,
        password: password.context("password")?,
    })
}

/// Starts chromedriver on a free port and waits until it accepts connections.
async fn start_chromedriver() -> anyhow::Result<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("chromedriver is not installed: run `bash scripts/setup-browser.sh`")?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((child, format!("http://127.0.0.1:{port}")));
        }
        if tokio::time::Instant::now() > deadline {
            bail!("chromedriver did not start listening");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn browser(driver: &str) -> anyhow::Result<Client> {
    let mut chrome = serde_json::json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1100"],
    });
    for binary in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(binary).exists() {
            chrome["binary"] = binary.into();
            break;
        }
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), chrome);
    Ok(ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await?)
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/<profile>/fortress-pat → target
            let exe = PathBuf::from(env!("CARGO_BIN_EXE_fortress-pat"));
            exe.ancestors().nth(2).map(PathBuf::from).unwrap_or(exe)
        });
    target.join("dashboard-screenshots")
}

async fn screenshot(client: &Client, name: &str) -> anyhow::Result<()> {
    let png = client.screenshot().await?;
    assert!(png.starts_with(b"\x89PNG"), "not a PNG screenshot");
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{name}.png")), png)?;
    Ok(())
}

/// Opens a page from the navigation bar and waits for `ready` to be on it.
async fn open_page(client: &Client, page: &str, ready: &str) -> anyhow::Result<()> {
    client
        .find(Locator::Css(&format!("nav a[data-page='{page}']")))
        .await?
        .click()
        .await?;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(ready))
        .await
        .with_context(|| format!("{page}: {ready} did not appear"))?;
    Ok(())
}

/// Sends one Claude Messages call through the gateway; returns status, request id, body.
async fn claude_call(demo: &Demo) -> anyhow::Result<(u16, String, String)> {
    let client: HttpClient<_, Full<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).build(HttpConnector::new());
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "Hello from the browser test"}],
    });
    let request = http::Request::post(format!("{}/v1/messages", demo.base))
        .header("x-api-key", &demo.key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = String::from_utf8(response.into_body().collect().await?.to_bytes().to_vec())?;
    Ok((status, id, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_traffic_and_flips_the_kill_switch() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut demo = start_demo(data.path()).await?;
    let (mut driver, driver_url) = start_chromedriver().await?;
    let client = browser(&driver_url).await?;
    let result = drive(&client, &demo).await;
    // Always end the browser session and the processes, then report.
    let _ = client.close().await;
    let _ = driver.kill().await;
    let _ = demo.child.kill().await;
    result
}

async fn drive(client: &Client, demo: &Demo) -> anyhow::Result<()> {
    // Log in.
    client.goto(&demo.dashboard).await?;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#login:not([hidden]) #login-form"))
        .await?;
    screenshot(client, "login").await?;
    client
        .find(Locator::Css("#login-form input[name='username']"))
        .await?
        .send_keys("admin")
        .await?;
    client
        .find(Locator::Css("#login-form input[name='password']"))
        .await?
        .send_keys(&demo.password)
        .await?;
    client
        .find(Locator::Css("#login-form button[type='submit']"))
        .await?
        .click()
        .await?;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#nav:not([hidden])"))
        .await
        .context("login did not succeed")?;
    let who = client.find(Locator::Id("who")).await?.text().await?;
    assert_eq!(who, "admin (owner)");

    // Status Board.
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#status:not([hidden]) #uptime .card"))
        .await?;
    screenshot(client, "status").await?;

    // Traffic Feed: once the live stream is open, a call through the gateway shows up.
    open_page(client, "traffic", "#live[data-state='open']").await?;
    let (status, request_id, body) = claude_call(demo).await?;
    assert_eq!(status, 200, "{body}");
    assert!(!request_id.is_empty());
    let row = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!(
            "#feed tr[data-request-id='{request_id}']"
        )))
        .await
        .context("the call did not appear on the Traffic Feed")?;
    let text = row.text().await?;
    assert!(text.contains("demo-user"), "{text}");
    assert!(text.contains("messages/create"), "{text}");
    assert!(text.contains("allow"), "{text}");
    row.click().await?;
    let detail = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#event-detail:not([hidden])"))
        .await?;
    let detail = detail.text().await?;
    assert!(detail.contains(&request_id), "{detail}");
    assert!(
        !detail.contains("Hello from the browser test"),
        "content leaked: {detail}"
    );
    screenshot(client, "traffic").await?;

    // Management: engage a kill switch for the model.
    open_page(client, "manage", "#switch-rows tr").await?;
    client
        .find(Locator::Css(
            "#switch-form select[name='kind'] option[value='model']",
        ))
        .await?
        .click()
        .await?;
    client
        .find(Locator::Css("#switch-form input[name='name']"))
        .await?
        .send_keys("claude-sonnet-4-5")
        .await?;
    client
        .find(Locator::Css("#switch-form input[name='reason']"))
        .await?
        .send_keys("browser test")
        .await?;
    client
        .find(Locator::Id("switch-engage"))
        .await?
        .click()
        .await?;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(
            "#switch-rows tr.switch[data-target='model:claude-sonnet-4-5']",
        ))
        .await
        .context("the kill switch did not show as engaged")?;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#policy-form textarea[name='text']"))
        .await?;
    screenshot(client, "management").await?;

    // The next call is denied by the kill switch.
    let (status, _, body) = claude_call(demo).await?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("permission_error"), "{body}");
    assert!(body.contains("kill switch"), "{body}");

    // The Change Log shows the flip, by whom and on what.
    open_page(
        client,
        "changes",
        "#change-rows tr.change[data-action='kill_switch.engage']",
    )
    .await?;
    let flip = client
        .find(Locator::Css(
            "#change-rows tr.change[data-action='kill_switch.engage']",
        ))
        .await?
        .text()
        .await?;
    assert!(flip.contains("admin"), "{flip}");
    assert!(flip.contains("model:claude-sonnet-4-5"), "{flip}");
    assert!(
        flip.contains("\"engaged\":false") && flip.contains("\"engaged\":true"),
        "{flip}"
    );
    screenshot(client, "changes").await?;

    // The denied call is in the Traffic Feed's history too.
    open_page(client, "traffic", "#feed tr[data-outcome='denied']").await?;

    // Billing and Settings render.
    open_page(client, "billing", "#billing-body .card").await?;
    let billing = client
        .find(Locator::Id("billing-body"))
        .await?
        .text()
        .await?;
    assert!(billing.contains("Active users"), "{billing}");
    // The allowed call's Claude usage, from the ledger's metering.
    let models = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#billing-models tr"))
        .await?
        .text()
        .await?;
    assert!(models.contains("claude-sonnet-4-5"), "{models}");
    screenshot(client, "billing").await?;
    open_page(client, "settings", "#settings-form[data-loaded='true']").await?;
    let settings = client
        .find(Locator::Css("#settings-form textarea"))
        .await?
        .prop("value")
        .await?
        .unwrap_or_default();
    assert!(settings.contains("\"retention\""), "{settings}");
    screenshot(client, "settings").await?;
    Ok(())
}
