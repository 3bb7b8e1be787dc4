//! Webhook signing secrets: a set (several are active during a rotation), loaded
//! from the environment and/or from a file or directory that Kubernetes may swap
//! underneath us, and never printed.

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

/// One secret's bytes. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    pub fn new(bytes: impl AsRef<[u8]>) -> Secret {
        Secret(Arc::from(bytes.as_ref()))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The secrets a signature may be made with. Order is kept; duplicates dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets(Vec<Secret>);

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} holds no secret (one secret per line)")]
    Empty { path: PathBuf },
}

impl Secrets {
    /// Parses a comma-separated list, ignoring blanks around and between items.
    pub fn from_list(list: &str) -> Secrets {
        Secrets::from_iter(list.split(','))
    }

    /// Reads a file (one secret per line) or a directory of such files, as
    /// Kubernetes mounts a Secret: hidden entries (`..data`, `..2026_...`) are
    /// its bookkeeping and are skipped; the visible names are symlinks into them.
    pub fn read(path: &Path) -> Result<Secrets, SecretsError> {
        let read_err = |source| SecretsError::Read {
            path: path.to_owned(),
            source,
        };
        let mut text = String::new();
        if fs::metadata(path).map_err(read_err)?.is_dir() {
            let mut names: Vec<_> = fs::read_dir(path)
                .map_err(read_err)?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .filter(|p| p.is_file())
                .collect();
            names.sort();
            for name in names {
                let content = fs::read_to_string(&name).map_err(|source| SecretsError::Read {
                    path: name.clone(),
                    source,
                })?;
                text.push_str(&content);
                text.push('\n');
            }
        } else {
            text = fs::read_to_string(path).map_err(read_err)?;
        }
        let secrets = Secrets::from_iter(text.lines());
        if secrets.is_empty() {
            return Err(SecretsError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(secrets)
    }

    /// This set plus `other`'s secrets, without duplicates.
    pub fn merged(&self, other: Option<&Secrets>) -> Secrets {
        let mut all = self.clone();
        for secret in other.into_iter().flat_map(|o| o.iter()) {
            if !all.0.contains(secret) {
                all.0.push(secret.clone());
            }
        }
        all
    }

    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> FromIterator<&'a str> for Secrets {
    fn from_iter<I: IntoIterator<Item = &'a str>>(items: I) -> Secrets {
        let mut secrets = Secrets::default();
        for item in items.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
            let secret = Secret::new(item);
            if !secrets.0.contains(&secret) {
                secrets.0.push(secret);
            }
        }
        secrets
    }
}

/// The live set of secrets, swapped without locks when the file changes.
pub type SharedSecrets = Arc<ArcSwap<Secrets>>;

/// Re-reads `file` every `interval` and swaps in the new set (plus the inline
/// secrets) when it changed. A file that became unreadable or empty keeps the
/// previous set and logs a warning: a half-written mount must not lock everyone out.
pub async fn watch(
    shared: SharedSecrets,
    inline: Secrets,
    file: PathBuf,
    interval: Duration,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let path = file.clone();
        let loaded = match tokio::task::spawn_blocking(move || Secrets::read(&path)).await {
            Ok(loaded) => loaded,
            Err(_) => continue,
        };
        match loaded {
            Ok(from_file) => {
                let next = inline.merged(Some(&from_file));
                if **shared.load() != next {
                    tracing::info!(secrets = next.len(), path = %file.display(), "webhook secrets reloaded");
                    metrics.secrets.set(next.len() as i64);
                    shared.store(Arc::new(next));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "keeping the previous webhook secrets");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let secrets = Secrets::from_list("hunter2,correct-horse");
        let shown = format!("{secrets:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("correct-horse"),
            "{shown}"
        );
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn lists_are_trimmed_and_deduplicated() {
        let secrets = Secrets::from_list(" a ,b,, a,");
        let got: Vec<_> = secrets.iter().map(Secret::expose).collect();
        assert_eq!(got, vec![b"a".as_slice(), b"b".as_slice()]);
    }

    #[test]
    fn file_holds_one_secret_per_line() {
        let dir = tempdir();
        let file = dir.path().join("secret");
        fs::write(&file, "first\r\n\nsecond\n").unwrap();
        let secrets = Secrets::read(&file).unwrap();
        let got: Vec<_> = secrets.iter().map(Secret::expose).collect();
        assert_eq!(got, vec![b"first".as_slice(), b"second".as_slice()]);
    }

    #[test]
    fn directory_skips_kubernetes_bookkeeping() {
        let tmp = tempdir();
        let dir = tmp.path();
        fs::create_dir(dir.join("..2026_11_24")).unwrap();
        fs::write(dir.join("..2026_11_24/current"), "new").unwrap();
        fs::write(dir.join("current"), "new").unwrap();
        fs::write(dir.join("previous"), "old").unwrap();
        fs::write(dir.join(".hidden"), "nope").unwrap();
        let secrets = Secrets::read(dir).unwrap();
        let got: Vec<_> = secrets.iter().map(Secret::expose).collect();
        assert_eq!(got, vec![b"new".as_slice(), b"old".as_slice()]);
    }

    #[test]
    fn empty_file_is_an_error() {
        let dir = tempdir();
        let file = dir.path().join("secret");
        fs::write(&file, "\n  \n").unwrap();
        assert!(matches!(
            Secrets::read(&file),
            Err(SecretsError::Empty { .. })
        ));
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }
}
