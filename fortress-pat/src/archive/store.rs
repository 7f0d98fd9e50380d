//! Where archive objects are stored: a local directory (the default) or an S3-compatible
//! bucket, both through `object_store`.
//!
//! S3 settings come from the `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT`, …), overridden by
//! [`S3Settings`] (whose keys the configuration reads from named environment variables or
//! from the vault). Credentials are never logged: the store is never formatted with
//! `Debug`, and errors name only the bucket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fortress_core::secret::Secret;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;

use super::ArchiveError;

/// Where the archive lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveLocation {
    /// A directory on the local filesystem.
    Local(PathBuf),
    /// An S3-compatible bucket, under an optional key prefix.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket (no leading or trailing `/`; may be empty).
        prefix: String,
    },
}

impl ArchiveLocation {
    /// Parses `s3://bucket/prefix`, `file:///absolute/dir`, or a plain directory path.
    pub fn parse(url: &str) -> Result<Self, ArchiveError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(ArchiveError::Config("s3:// needs a bucket name".into()));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            return Ok(Self::Local(PathBuf::from(path)));
        }
        if url.contains("://") {
            return Err(ArchiveError::Config(
                "the archive url must be s3://bucket/prefix, file:///dir or a directory".into(),
            ));
        }
        Ok(Self::Local(PathBuf::from(url)))
    }
}

/// Explicit S3 settings; whatever is `None` falls back to the `AWS_*` environment.
#[derive(Default)]
pub struct S3Settings {
    /// Endpoint of an S3-compatible service (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<Secret>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
}

/// Opens the store at `location`.
pub fn open(
    location: &ArchiveLocation,
    s3: S3Settings,
) -> Result<Arc<dyn ObjectStore>, ArchiveError> {
    match location {
        ArchiveLocation::Local(dir) => local(dir),
        ArchiveLocation::S3 { bucket, prefix } => {
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = s3.endpoint {
                // A custom endpoint is a self-hosted service, often plain HTTP on a
                // private network, addressed by path rather than virtual host.
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_virtual_hosted_style_request(false)
                    .with_endpoint(endpoint);
            }
            if let Some(region) = s3.region {
                builder = builder.with_region(region);
            }
            if let Some(id) = &s3.access_key_id {
                builder = builder.with_access_key_id(text(id)?);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(text(secret)?);
            }
            let store = builder.build().map_err(|e| {
                // The builder's message names the missing setting, never a credential.
                ArchiveError::Config(format!("S3 bucket {bucket}: {e}"))
            })?;
            Ok(if prefix.is_empty() {
                Arc::new(store)
            } else {
                Arc::new(PrefixStore::new(store, prefix.as_str()))
            })
        }
    }
}

/// A local directory store (created if missing); empty directories left by deletions are
/// removed.
pub fn local(dir: &Path) -> Result<Arc<dyn ObjectStore>, ArchiveError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        ArchiveError::Config(format!("cannot create {}: {}", dir.display(), e.kind()))
    })?;
    let store = LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| ArchiveError::Config(format!("archive directory {}: {e}", dir.display())))?
        .with_automatic_cleanup(true);
    Ok(Arc::new(store))
}

fn text(secret: &Secret) -> Result<&str, ArchiveError> {
    secret
        .expose_str()
        .ok_or_else(|| ArchiveError::Config("S3 credentials must be text".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(
            ArchiveLocation::parse("s3://bucket/a/b/").unwrap(),
            ArchiveLocation::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            ArchiveLocation::parse("s3://bucket").unwrap(),
            ArchiveLocation::S3 {
                bucket: "bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            ArchiveLocation::parse("file:///var/archive").unwrap(),
            ArchiveLocation::Local("/var/archive".into())
        );
        assert_eq!(
            ArchiveLocation::parse("data/archive").unwrap(),
            ArchiveLocation::Local("data/archive".into())
        );
        assert!(ArchiveLocation::parse("s3:///x").is_err());
        assert!(ArchiveLocation::parse("gs://x").is_err());
    }
}
