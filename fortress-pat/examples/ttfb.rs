//! Time to first body byte of streamed `POST /v1/messages`, for `scripts/bench-pat.sh`
//! (`wrk` measures whole responses only). Sends `N` requests one after the other on one
//! keep-alive connection and prints `p50_us p99_us` of the time from sending the request
//! to the first data frame of the answer.
//!
//! ```text
//! cargo run --release -p fortress-pat --example ttfb -- URL KEY BODY_FILE [N]
//! ```

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key, body_file, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: ttfb URL KEY BODY_FILE [N]");
    };
    let n: usize = rest.first().map_or(Ok(2000), |n| n.parse())?;
    let body = Bytes::from(std::fs::read(body_file).context("body file")?);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut samples = Vec::with_capacity(n);
    // A few unmeasured requests open the connection and warm both ends.
    for i in 0..n + 50 {
        let request = http::Request::post(url.as_str())
            .header("x-api-key", key.as_str())
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))?;
        let start = Instant::now();
        let response = client.request(request).await?;
        anyhow::ensure!(
            response.status().is_success(),
            "status {}",
            response.status()
        );
        let mut body = response.into_body();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            if first.is_none() && frame?.is_data() {
                first = Some(start.elapsed());
            }
        }
        if i >= 50 {
            samples.push(first.unwrap_or(Duration::MAX));
        }
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!("{} {}", at(0.50).as_micros(), at(0.99).as_micros());
    Ok(())
}
