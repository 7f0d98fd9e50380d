//! The key pepper: the HMAC key that makes a stolen key database useless on its own.

use std::path::Path;

use crate::secret::Secret;

/// The pepper from the environment variable `env`, else a random one kept (mode 0600) in
/// `data_dir/pepper`, created on first use.
pub fn load_or_create_pepper(data_dir: &Path, env: &str) -> std::io::Result<Secret> {
    load_or_create_secret(&data_dir.join("pepper"), env)
}

/// A 256-bit secret from the environment variable `env`, else kept (hex, mode 0600) in the
/// file at `path`, created on first use.
pub fn load_or_create_secret(path: &Path, env: &str) -> std::io::Result<Secret> {
    if let Ok(value) = std::env::var(env) {
        return Ok(Secret::from_text(value));
    }
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(Secret::from_text(existing));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    let text = hex::encode(bytes);
    write_private(path, &text)?;
    Ok(Secret::from_text(text))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pepper_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let env = "FORTRESS_TEST_PEPPER_UNSET_7f3a";
        let first = load_or_create_pepper(dir.path(), env).unwrap();
        let second = load_or_create_pepper(dir.path(), env).unwrap();
        assert_eq!(first.expose(), second.expose());
        assert_eq!(first.expose().len(), 64);
    }
}
