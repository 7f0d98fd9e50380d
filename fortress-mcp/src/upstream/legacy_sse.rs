//! Upstreams on the deprecated HTTP+SSE transport of 2024-11-05: a GET opens an SSE stream
//! whose first `endpoint` event names where to POST; every server message, responses included,
//! arrives on the stream (spec 2024-11-05, Basic › Transports › HTTP with SSE). Fortress falls
//! back to it when a legacy `initialize` POST fails with 400, 404 or 405, as the backward
//! compatibility rules describe (spec 2026-07-28, Streamable HTTP › Backward Compatibility).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::peer::{self, Peer};
use crate::jsonrpc::{ErrorObject, Notification, UPSTREAM_ERROR};
use crate::sse::SseDecoder;
use crate::version::Era;

/// Resolves the `endpoint` event's data against the SSE URL.
fn resolve(base: &Uri, endpoint: &str) -> Option<Uri> {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        return endpoint.parse().ok();
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?;
    let path = if endpoint.starts_with('/') {
        endpoint.to_owned()
    } else {
        let dir = base.path().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        format!("{dir}/{endpoint}")
    };
    format!("{scheme}://{authority}{path}").parse().ok()
}

/// Opens the stream, learns the endpoint, and initializes a legacy session over it.
pub(crate) async fn connect(
    client: Client<HttpConnector, Full<Bytes>>,
    url: Uri,
    name: &str,
    broadcast: broadcast::Sender<Notification>,
    request_timeout: Duration,
    max_event_bytes: usize,
) -> Result<Arc<Peer>, ErrorObject> {
    let failed = |why: String| ErrorObject::new(UPSTREAM_ERROR, why);
    let request = http::Request::builder()
        .method(Method::GET)
        .uri(url.clone())
        .header(http::header::ACCEPT, "text/event-stream")
        .body(Full::new(Bytes::new()))
        .map_err(ErrorObject::internal)?;
    let response = tokio::time::timeout(request_timeout, client.request(request))
        .await
        .map_err(|_| failed("the SSE stream did not open in time".into()))?
        .map_err(|e| failed(format!("upstream unreachable: {e}")))?;
    let is_sse = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !response.status().is_success() || !is_sse {
        return Err(failed(format!(
            "upstream speaks neither Streamable HTTP nor HTTP+SSE (GET answered {})",
            response.status()
        )));
    }
    let (writer, mut outgoing) = mpsc::channel::<Bytes>(256);
    let conn = Arc::new(Peer::new(name, writer, broadcast));
    let (endpoint_tx, endpoint_rx) = oneshot::channel::<Uri>();
    let reader = conn.clone();
    let base = url.clone();
    tokio::spawn(async move {
        let mut endpoint_tx = Some(endpoint_tx);
        let mut body = response.into_body();
        let mut decoder = SseDecoder::new(max_event_bytes);
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let Ok(events) = decoder.push(&data) else {
                break;
            };
            for event in events {
                if event.event() == Some("endpoint") {
                    if let (Some(tx), Some(uri)) =
                        (endpoint_tx.take(), resolve(&base, event.data().trim()))
                    {
                        let _ = tx.send(uri);
                    }
                } else {
                    peer::dispatch(&reader, event.data()).await;
                }
            }
        }
        reader.close();
    });
    let endpoint = tokio::time::timeout(request_timeout, endpoint_rx)
        .await
        .map_err(|_| failed("the SSE stream named no endpoint".into()))?
        .map_err(|_| failed("the SSE stream ended before naming an endpoint".into()))?;
    let poster = client.clone();
    let closed = conn.closed.clone();
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                line = outgoing.recv() => match line { Some(l) => l, None => break },
                () = closed.cancelled() => break,
            };
            let request = http::Request::builder()
                .method(Method::POST)
                .uri(endpoint.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(line));
            let Ok(request) = request else { continue };
            match poster.request(request).await {
                Ok(response) => {
                    let _ = response.into_body().collect().await;
                }
                Err(error) => tracing::warn!(%error, "POST to the HTTP+SSE upstream failed"),
            }
        }
    });
    // 2024-11-05 servers are legacy by definition: no modern probe.
    let era = Mutex::new(Some(Era::Legacy));
    let description = peer::handshake(&conn, &era, request_timeout, request_timeout).await?;
    peer::set_description(&conn, description);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_against_the_stream_url() {
        let base: Uri = "http://127.0.0.1:3001/sse".parse().unwrap();
        assert_eq!(
            resolve(&base, "/messages?sessionId=a").unwrap().to_string(),
            "http://127.0.0.1:3001/messages?sessionId=a"
        );
        assert_eq!(
            resolve(&base, "http://other:1/m").unwrap().to_string(),
            "http://other:1/m"
        );
    }
}
