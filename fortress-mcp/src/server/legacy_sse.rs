//! The deprecated HTTP+SSE transport of 2024-11-05, as an adapter over the Streamable HTTP
//! handling: `GET /sse` opens the stream and names, in an `endpoint` event, where to POST;
//! each POSTed message is served as a Streamable HTTP POST in the channel's session, and
//! everything the answer carries (results, notifications, server requests) is written to the
//! stream (spec 2024-11-05, Basic › Transports › HTTP with SSE).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fortress_core::body::{self, Body};
use http::{HeaderValue, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

use super::handler::{Handler, error, plain, sse_headers};
use crate::jsonrpc::{ErrorObject, Message, parse_message};
use crate::sse::SseDecoder;
use crate::upstream::http::SESSION_HEADER;

/// One open SSE stream and the Streamable HTTP session behind it, once initialized.
pub(crate) struct Channel {
    outbox: mpsc::Sender<Bytes>,
    session: Mutex<Option<String>>,
}

impl Channel {
    /// The Streamable HTTP session behind the channel, once initialized.
    fn session(&self) -> Option<String> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// All open HTTP+SSE streams, by channel id.
#[derive(Default)]
pub(crate) struct Channels {
    map: Mutex<HashMap<String, Arc<Channel>>>,
}

impl Channels {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Channel>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes the channel when its stream ends.
struct ChannelGuard {
    channels: Arc<Channels>,
    id: String,
}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        self.channels.map().remove(&self.id);
    }
}

fn message_event(data: &[u8]) -> Bytes {
    crate::sse::encode(Some("message"), &String::from_utf8_lossy(data))
}

impl Handler {
    /// `GET /sse`: a new channel; its first event says where to POST.
    pub(super) fn open_legacy_sse(&self) -> http::Response<Body> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (outbox, rx) = mpsc::channel::<Bytes>(256);
        let channel = Arc::new(Channel {
            outbox,
            session: Mutex::new(None),
        });
        self.legacy_channels
            .map()
            .insert(id.clone(), channel.clone());
        let handler = self.clone();
        let endpoint = crate::sse::encode(
            Some("endpoint"),
            &format!("{}?sessionId={id}", self.messages_path()),
        );
        let guard = ChannelGuard {
            channels: self.legacy_channels.clone(),
            id,
        };
        let shutdown = self.shutdown_token();
        let keep_alive = self.keep_alive();
        let notifications = self.notifications();
        let stream = futures_util::stream::unfold(
            (Some(endpoint), rx, notifications, guard),
            move |(first, mut rx, mut notifications, guard)| {
                let shutdown = shutdown.clone();
                let (handler, channel) = (handler.clone(), channel.clone());
                async move {
                    if let Some(first) = first {
                        return Some((
                            Ok::<_, Infallible>(Frame::data(first)),
                            (None, rx, notifications, guard),
                        ));
                    }
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => return None,
                            () = tokio::time::sleep(keep_alive) => {
                                let ping = Frame::data(Bytes::from_static(b":\n\n"));
                                return Some((Ok(ping), (None, rx, notifications, guard)));
                            }
                            event = rx.recv() => {
                                let event = event?;
                                return Some((Ok(Frame::data(event)), (None, rx, notifications, guard)));
                            }
                            n = notifications.recv() => match n {
                                Ok(n) if handler.session_wants(channel.session(), &n) => {
                                    let event = message_event(&Message::Notification(n).to_bytes());
                                    return Some((Ok(Frame::data(event)), (None, rx, notifications, guard)));
                                }
                                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                            },
                        }
                    }
                }
            },
        );
        let mut response =
            http::Response::new(body::boxed(http_body_util::StreamBody::new(stream)));
        sse_headers(&mut response);
        response
    }

    /// `POST /messages?sessionId=…`: served like a Streamable HTTP POST; the answer goes to
    /// the channel's stream and the POST itself gets `202 Accepted`.
    pub(super) async fn legacy_sse_post<B>(
        &self,
        request: http::Request<B>,
        peer: super::handler::Caller,
    ) -> http::Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<fortress_core::body::BoxError>,
    {
        let channel_id = request.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| {
                    kv.strip_prefix("sessionId=")
                        .or_else(|| kv.strip_prefix("session_id="))
                })
                .map(str::to_owned)
        });
        let Some(channel) = channel_id.and_then(|id| self.legacy_channels.map().get(&id).cloned())
        else {
            return error(
                StatusCode::NOT_FOUND,
                None,
                ErrorObject::invalid_request("unknown session"),
            );
        };
        let (parts, bytes) = match self.read_body(request).await {
            Ok(read) => read,
            Err(response) => return response,
        };
        if let Err(e) = parse_message(&bytes) {
            return error(StatusCode::BAD_REQUEST, None, e);
        }
        let mut inner = http::Request::new(Full::new(bytes));
        *inner.method_mut() = http::Method::POST;
        *inner.headers_mut() = parts.headers;
        inner.headers_mut().remove(SESSION_HEADER);
        let session = channel
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(session) = session.and_then(|s| HeaderValue::from_str(&s).ok()) {
            inner.headers_mut().insert(SESSION_HEADER, session);
        }
        let handler = self.clone();
        // Answer the POST at once; the result travels on the stream.
        tokio::spawn(async move {
            let response = handler.post(inner, peer).await;
            if let Some(session) = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                *channel.session.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(session.to_owned());
            }
            pump(response, &channel.outbox).await;
        });
        plain(StatusCode::ACCEPTED)
    }
}

/// Copies the messages of a Streamable HTTP answer (JSON or SSE) onto the channel.
async fn pump(response: http::Response<Body>, outbox: &mpsc::Sender<Bytes>) {
    let streaming = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut body = response.into_body();
    if streaming {
        let mut decoder = SseDecoder::new(16 * 1024 * 1024);
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let Ok(events) = decoder.push(&data) else {
                return;
            };
            for event in events.into_iter().filter(|e| !e.data().is_empty()) {
                if outbox
                    .send(message_event(event.data().as_bytes()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    } else if let Ok(collected) = body.collect().await {
        let bytes = collected.to_bytes();
        if !bytes.is_empty() {
            let _ = outbox.send(message_event(&bytes)).await;
        }
    }
}
