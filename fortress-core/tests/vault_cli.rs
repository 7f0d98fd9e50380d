//! The `vault` CLI command: values come from stdin or a file, are never echoed, and the
//! vault it opens refuses a master key kept inside the data directory.

use std::sync::Arc;

use clap::Parser;
use fortress_core::audit::MemoryAuditSink;
use fortress_core::subject::WorkspaceId;
use fortress_core::vault::cli::{VaultCliError, VaultCommand, VaultStorageArgs};
use fortress_core::vault::keys::RootKey;
use fortress_core::vault::{CredentialSlot, CredentialState, Vault, VaultError};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    storage: VaultStorageArgs,
    #[command(subcommand)]
    vault: VaultCommand,
}

fn cli<S: AsRef<str>>(args: &[S]) -> Cli {
    Cli::try_parse_from(std::iter::once("fortress").chain(args.iter().map(AsRef::as_ref))).unwrap()
}

async fn run<S: AsRef<str>>(
    vault: &dyn Vault,
    args: &[S],
    stdin: &[u8],
) -> Result<String, VaultCliError> {
    let mut out = Vec::new();
    cli(args).vault.run(vault, stdin, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn manages_credentials_without_echoing_values() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key_file = tmp.path().join("master.key");
    std::fs::write(&key_file, RootKey::generate().to_hex().as_bytes()).unwrap();
    let storage = [
        "--data-dir",
        data.to_str().unwrap(),
        "--master-key-file",
        key_file.to_str().unwrap(),
    ];
    let args = |rest: &[&str]| -> Vec<String> {
        storage.iter().chain(rest).map(|s| s.to_string()).collect()
    };

    let vault = cli(&args(&["list", "acme"]))
        .storage
        .open(Arc::new(MemoryAuditSink::new()))
        .await
        .unwrap();

    let out = run(&vault, &args(&["put", "acme", "zendesk"]), b"zd-canary-1\n")
        .await
        .unwrap();
    assert_eq!(out, "stored acme/zendesk version 1\n");

    let value_file = tmp.path().join("value.txt");
    std::fs::write(&value_file, "gh-canary-2\n").unwrap();
    let out = run(
        &vault,
        &args(&[
            "put",
            "acme",
            "github",
            "--user",
            "alice",
            "--from-file",
            value_file.to_str().unwrap(),
        ]),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(out, "stored acme/github/alice version 1\n");

    let out = run(
        &vault,
        &args(&["rotate", "acme", "zendesk"]),
        b"zd-canary-3",
    )
    .await
    .unwrap();
    assert_eq!(out, "rotated acme/zendesk to version 2\n");
    let out = run(
        &vault,
        &args(&["revoke", "acme", "github", "--user", "alice"]),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(out, "revoked acme/github/alice\n");

    let listing = run(&vault, &args(&["list", "acme"]), b"").await.unwrap();
    assert!(
        listing.contains("acme/zendesk\tversion 2\tactive"),
        "{listing}"
    );
    assert!(
        listing.contains("acme/github/alice\tversion 1\trevoked"),
        "{listing}"
    );
    assert!(!listing.contains("canary"));

    let zendesk = CredentialSlot::workspace(WorkspaceId::new("acme"), "zendesk");
    assert_eq!(
        vault.resolve(&zendesk).await.unwrap().secret().expose(),
        b"zd-canary-3"
    );
    let alice = CredentialSlot::user(WorkspaceId::new("acme"), "github", "alice");
    assert_eq!(
        vault.list(&WorkspaceId::new("acme")).await.unwrap()[0].state,
        CredentialState::Revoked
    );
    assert!(matches!(
        vault.resolve(&alice).await,
        Err(VaultError::Revoked(_))
    ));

    let out = run(&vault, &args(&["delete", "acme", "zendesk"]), b"")
        .await
        .unwrap();
    assert_eq!(out, "deleted acme/zendesk\n");
    let refused = run(&vault, &args(&["delete-workspace", "acme"]), b"")
        .await
        .unwrap_err();
    assert!(matches!(refused, VaultCliError::Usage(_)));
    let out = run(&vault, &args(&["delete-workspace", "acme", "--yes"]), b"")
        .await
        .unwrap();
    assert_eq!(out, "deleted 1 credentials of acme\n");

    // An empty value is refused rather than stored.
    let empty = run(&vault, &args(&["put", "acme", "x"]), b"\n")
        .await
        .unwrap_err();
    assert!(empty.to_string().contains("empty"), "{empty}");
}

#[tokio::test]
async fn the_master_key_may_not_live_in_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("master.key");
    std::fs::write(&key_file, RootKey::generate().to_hex().as_bytes()).unwrap();
    let parsed = cli(&[
        "--data-dir",
        tmp.path().to_str().unwrap(),
        "--master-key-file",
        key_file.to_str().unwrap(),
        "list",
        "acme",
    ]);
    let err = parsed
        .storage
        .open(Arc::new(MemoryAuditSink::new()))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("must not be inside the data directory"),
        "{err}"
    );
}

#[test]
fn values_cannot_be_given_on_the_command_line() {
    let parsed = Cli::try_parse_from(["fortress", "put", "acme", "zendesk", "sk-on-argv"]);
    assert!(parsed.is_err(), "a positional value must be refused");
}
