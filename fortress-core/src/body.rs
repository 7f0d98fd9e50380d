//! The response body type the governance stack speaks, and helpers to build it.
//!
//! Layers that change a body (redaction, audit) or answer on their own (a denial) all
//! return [`Body`], a boxed `http_body::Body` of `Bytes`. Any body converts with
//! [`boxed`]; fixed content with [`full`].
//!
//! ```
//! use fortress_core::body;
//!
//! let b = body::full("hello");
//! # let _ = b;
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

/// The error type of governed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A boxed, `Send` response body of `Bytes`.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A body with fixed content.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes any body whose error converts into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Reads a whole body into memory (tests and small documents only).
pub async fn collect(body: Body) -> Result<Bytes, BoxError> {
    Ok(body.collect().await?.to_bytes())
}
