//! The shared dashboard in a real browser: headless Chromium driven through chromedriver
//! (WebDriver) against the one-command launcher (MCP Fortress with its mock helpdesk, PAT
//! Fortress with its mock Claude API, and one dashboard over both), in-process on ephemeral
//! ports with a temporary data directory.
//!
//! It logs in; makes an MCP tool call and a Claude API call and sees both arrive live on
//! the Traffic Feed; opens the MCP policy set in the policy editor; flips the workspace
//! kill switch in the Management page and sees the next call of each gateway denied;
//! finds the flip in the Change Log; adds a connector from the Management page and sees
//! its tools served; and saves a screenshot of each page under
//! `$CARGO_TARGET_DIR/dashboard-screenshots/`. Every wait is a WebDriver wait on a page
//! condition (polled with a deadline).
//!
//! Needs `chromium` and `chromedriver` (`bash scripts/setup-browser.sh`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use fortress_core::admin::embedded::DEMO_WORKSPACE;
use fortress_examples::launcher::{Fortress, LaunchOptions, OWNER, launch};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(30);

fn ephemeral() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
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
    let mut chrome = json!({
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
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
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

async fn wait_for(client: &Client, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .with_context(|| format!("{css} did not appear"))
}

/// Opens a page from the navigation bar and waits for `ready` to be on it.
async fn open_page(client: &Client, page: &str, ready: &str) -> anyhow::Result<()> {
    client
        .find(Locator::Css(&format!("nav a[data-page='{page}']")))
        .await?
        .click()
        .await?;
    wait_for(client, ready)
        .await
        .with_context(|| format!("on the {page} page"))?;
    Ok(())
}

/// Sends one Claude Messages call through PAT Fortress; returns status, request id, body.
async fn claude_call(fortress: &Fortress) -> anyhow::Result<(u16, String, Value)> {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/messages", fortress.pat_url))
        .header(
            "x-api-key",
            fortress.pat_key.expose_str().unwrap_or_default(),
        )
        .header("anthropic-version", "2023-06-01")
        .json(&json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 32,
            "messages": [{"role": "user", "content": "Hello from the browser test"}],
        }))
        .send()
        .await?;
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, id, response.json().await?))
}

/// Calls one tool through MCP Fortress (a stateless, modern-era request).
async fn mcp_call(fortress: &Fortress, tool: &str, arguments: Value) -> anyhow::Result<Value> {
    mcp(
        fortress,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    )
    .await
}

async fn mcp(fortress: &Fortress, method: &str, mut params: Value) -> anyhow::Result<Value> {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "browser-test", "version": "1"}
    });
    let mut request = reqwest::Client::new()
        .post(&fortress.mcp_url)
        .header(
            "x-api-key",
            fortress.mcp_key.expose_str().unwrap_or_default(),
        )
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = params["name"].as_str() {
        request = request.header("mcp-name", name);
    }
    let reply = request
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await?;
    anyhow::ensure!(reply.status() == 200, "MCP answered {}", reply.status());
    Ok(reply.json().await?)
}

/// Every tool MCP Fortress lists (one page per connector).
async fn tool_names(fortress: &Fortress) -> anyhow::Result<Vec<String>> {
    let (mut names, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let params = cursor.map_or_else(|| json!({}), |c| json!({"cursor": c}));
        let page = mcp(fortress, "tools/list", params).await?;
        for tool in page["result"]["tools"].as_array().context("tools")? {
            names.push(tool["name"].as_str().unwrap_or_default().to_owned());
        }
        match page["result"]["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(names),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_drives_both_gateways() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let fortress = launch(LaunchOptions {
        mcp_listen: ephemeral(),
        pat_listen: ephemeral(),
        dashboard_listen: ephemeral(),
        data_dir: data.path().join("data"),
    })
    .await?;
    let (mut driver, driver_url) = start_chromedriver().await?;
    let client = browser(&driver_url).await?;
    let result = drive(&client, &fortress).await;
    // Always end the browser session and the processes, then report.
    let _ = client.close().await;
    let _ = driver.kill().await;
    fortress.shutdown().await?;
    result
}

async fn drive(client: &Client, fortress: &Fortress) -> anyhow::Result<()> {
    let password = fortress
        .owner_password
        .as_ref()
        .and_then(|p| p.expose_str())
        .context("a fresh data dir creates the owner")?
        .to_owned();

    // Log in.
    client.goto(&fortress.dashboard_url).await?;
    wait_for(client, "#login:not([hidden]) #login-form").await?;
    screenshot(client, "login").await?;
    client
        .find(Locator::Css("#login-form input[name='username']"))
        .await?
        .send_keys(OWNER)
        .await?;
    client
        .find(Locator::Css("#login-form input[name='password']"))
        .await?
        .send_keys(&password)
        .await?;
    client
        .find(Locator::Css("#login-form button[type='submit']"))
        .await?
        .click()
        .await?;
    wait_for(client, "#nav:not([hidden])")
        .await
        .context("login did not succeed")?;
    let who = client.find(Locator::Id("who")).await?.text().await?;
    assert_eq!(who, format!("{OWNER} (owner)"));

    // Status Board.
    wait_for(client, "#status:not([hidden]) #uptime .card").await?;
    screenshot(client, "status").await?;

    // Traffic Feed: once the live stream is open, a call through each gateway shows up.
    open_page(client, "traffic", "#live[data-state='open']").await?;
    let answer = mcp_call(fortress, "zendesk__get_ticket", json!({"ticket_id": 3})).await?;
    assert_eq!(
        answer["result"]["structuredContent"]["subject"], "Invoice address change",
        "{answer}"
    );
    let mcp_row = wait_for(
        client,
        "#feed tr.event[data-action='tools/call'][data-resource='tool:zendesk/get_ticket'][data-outcome='success']",
    )
    .await
    .context("the MCP call did not appear on the Traffic Feed")?;
    let text = mcp_row.text().await?;
    assert!(text.contains(fortress_mcp::demo::DEMO_USER), "{text}");
    let (status, request_id, body) = claude_call(fortress).await?;
    assert_eq!(status, 200, "{body}");
    let pat_row = wait_for(client, &format!("#feed tr[data-request-id='{request_id}']"))
        .await
        .context("the Claude call did not appear on the Traffic Feed")?;
    let text = pat_row.text().await?;
    assert!(text.contains("demo-user"), "{text}");
    assert!(text.contains("messages/create"), "{text}");
    pat_row.click().await?;
    let detail = wait_for(client, "#event-detail:not([hidden])")
        .await?
        .text()
        .await?;
    assert!(detail.contains(&request_id), "{detail}");
    assert!(
        !detail.contains("Hello from the browser test"),
        "content leaked: {detail}"
    );
    screenshot(client, "traffic").await?;

    // Management: the policy editor shows the MCP gateway's set too.
    open_page(client, "manage", "#policy-form[data-set='pat']").await?;
    client
        .find(Locator::Css("#policy-set option[value='mcp']"))
        .await?
        .click()
        .await?;
    wait_for(client, "#policy-form[data-set='mcp']").await?;
    let policy = client
        .find(Locator::Css("#policy-form textarea[name='text']"))
        .await?
        .prop("value")
        .await?
        .unwrap_or_default();
    assert!(policy.contains("demo-helpdesk"), "{policy}");

    // Add a connector from the Management page: its tools are served at once.
    client
        .find(Locator::Css("#connector-form input[name='name']"))
        .await?
        .send_keys("crm")
        .await?;
    client
        .find(Locator::Css("#connector-form input[name='definition']"))
        .await?
        .send_keys("salesforce")
        .await?;
    client
        .find(Locator::Css("#connector-form input[name='settings']"))
        .await?
        .send_keys("instance=acme")
        .await?;
    client
        .find(Locator::Css("#connector-form button[type='submit']"))
        .await?
        .click()
        .await?;
    wait_for(client, "#connector-rows tr.connector[data-name='crm']")
        .await
        .context("the added connector is not listed")?;
    let tools = tool_names(fortress).await?;
    assert!(tools.iter().any(|t| t.starts_with("crm__")), "{tools:?}");
    // Flip the workspace kill switch: both gateways stop.
    client
        .find(Locator::Css(
            "#switch-form select[name='kind'] option[value='workspace']",
        ))
        .await?
        .click()
        .await?;
    client
        .find(Locator::Css("#switch-form input[name='name']"))
        .await?
        .send_keys(DEMO_WORKSPACE)
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
    wait_for(
        client,
        &format!("#switch-rows tr.switch[data-target='workspace:{DEMO_WORKSPACE}']"),
    )
    .await
    .context("the kill switch did not show as engaged")?;
    let denied = mcp_call(fortress, "zendesk__get_ticket", json!({"ticket_id": 3})).await?;
    assert!(denied["error"].is_object(), "{denied}");
    assert!(
        denied.to_string().contains("kill switch"),
        "the denial says why: {denied}"
    );
    let (status, _, body) = claude_call(fortress).await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "permission_error", "{body}");

    screenshot(client, "management").await?;

    // The Change Log shows the flip and the new connector, by whom and on what.
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
    assert!(flip.contains(OWNER), "{flip}");
    assert!(
        flip.contains(&format!("workspace:{DEMO_WORKSPACE}")),
        "{flip}"
    );
    assert!(
        flip.contains("\"engaged\":false") && flip.contains("\"engaged\":true"),
        "{flip}"
    );
    let added = client
        .find(Locator::Css(
            "#change-rows tr.change[data-action='connector.add']",
        ))
        .await?
        .text()
        .await?;
    assert!(added.contains("connector:crm"), "{added}");
    screenshot(client, "changes").await?;

    // The denied calls are in the Traffic Feed's history too.
    open_page(client, "traffic", "#feed tr[data-outcome='denied']").await?;

    // Billing and Settings render.
    open_page(client, "billing", "#billing-body .card").await?;
    let billing = client
        .find(Locator::Id("billing-body"))
        .await?
        .text()
        .await?;
    assert!(billing.contains("Active users"), "{billing}");
    let models = wait_for(client, "#billing-models tr").await?.text().await?;
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
