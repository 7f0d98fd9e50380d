//! The operator commands mounted in the real `fortress-mcp` binary: a credential is stored
//! from stdin without being echoed, listed without its value, its change is in the audit
//! trail, and the trail verifies.

use std::io::Write;
use std::process::{Command, Stdio};

const CANARY: &str = "ops-CANARY-77d1c0";

fn fortress(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fortress-mcp"))
        .args(args)
        .env("FORTRESS_DATA_DIR", dir.join("data"))
        .env("FORTRESS_MASTER_KEY_FILE", dir.join("keys/master.key"))
        .env_remove("FORTRESS_MASTER_KEY")
        .env_remove("FORTRESS_AUDIT_SIGNING_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("stdin written");
    }
    drop(input);
    let output = child.wait_with_output().expect("the binary ends");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn vault_and_audit_commands_work_through_the_binary() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("keys")).expect("keys dir");
    std::fs::write(dir.path().join("keys/master.key"), "11".repeat(32)).expect("master key");

    let (ok, out, err) = fortress(
        dir.path(),
        &["vault", "put", "acme", "zendesk"],
        Some(CANARY),
    );
    assert!(ok, "put failed: {out} {err}");
    assert!(out.contains("stored acme/zendesk version 1"), "{out}");

    let (ok, out, err) = fortress(dir.path(), &["vault", "list", "acme"], None);
    assert!(ok, "list failed: {err}");
    assert!(
        out.contains("acme/zendesk") && out.contains("active"),
        "{out}"
    );

    let (ok, out, err) = fortress(dir.path(), &["audit", "verify"], None);
    assert!(ok, "verify failed: {out} {err}");
    assert!(out.contains("audit trail verified"), "{out}");

    let (ok, out, err) = fortress(dir.path(), &["audit", "query"], None);
    assert!(ok, "query failed: {err}");
    assert!(out.contains("credential"), "the put is in the trail: {out}");

    for text in [&out, &err] {
        assert!(!text.contains(CANARY));
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("data")).expect("data dir") {
        files.extend(std::fs::read(entry.expect("entry").path()).unwrap_or_default());
    }
    assert!(
        !String::from_utf8_lossy(&files).contains(CANARY),
        "the canary is on disk in clear"
    );
}

#[test]
fn policy_validate_reports_the_first_error_with_its_location() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("main.cedar"),
        "permit (principal, action == Action::\"tools/call\", resource);\nforbid (principal, action, resource) when { nonsense };\n",
    )
    .expect("policy");
    let policies = dir.path().to_string_lossy().into_owned();
    let (ok, out, err) = fortress(
        dir.path(),
        &["policy", "validate", "--dir", &policies],
        None,
    );
    assert!(!ok, "an invalid set must not validate: {out}");
    let report = out.clone() + &err;
    assert!(
        report.contains("main.cedar") && report.contains("line 2"),
        "{report}"
    );
}
