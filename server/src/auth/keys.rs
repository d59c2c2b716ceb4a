//! The identity provider's signing keys: a JWKS document fetched over HTTPS (`AUTH_JWKS_URL`) or
//! read from a file (`AUTH_JWKS_FILE`), kept by key id.
//!
//! When the keys are loaded:
//! - at start-up, by the background task ([`KeyStore::keep_fresh`]);
//! - when a token names a key id not held (the provider rotated), but never sooner than
//!   [`REFETCH_INTERVAL`] after the last load from a URL, [`FILE_INTERVAL`] from a file: a flood of
//!   made-up key ids must not turn the server into a client hammering the identity provider, or
//!   into a reader of its own disk and a writer of log lines;
//! - periodically, by the background task, so that a key the provider withdrew (revoked) stops
//!   being trusted even if no token with an unknown key id comes: every [`REFRESH_INTERVAL`] from a
//!   URL; a file is looked at every [`FILE_INTERVAL`].
//!
//! A file is read again only when it changed (its inode, size, modification or status change time)
//! or was modified in the last two seconds (`SETTLE`), so looking at it mostly costs one `open` and
//! one `fstat`. A load that fails, or that finds no usable key, keeps the keys held: an identity
//! provider that is down for a moment, or serves an empty or broken document, must not sign
//! everyone out. "JWKS loaded" is logged only when the keys held changed; a failed load is a
//! warning, one per load at most, so no more frequent than loads.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::shutdown::Shutdown;

/// Least time between two fetches of a JWKS URL.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// How often a JWKS URL is fetched even when every token names a key held, so that a key the
/// provider removed stops being accepted. Providers rotate with overlap (the new key is published
/// well before tokens use it) and say their documents may be cached for hours, so a removal is
/// rarely urgent for them; ten minutes bounds how long a revoked key stays trusted at the cost of
/// six small requests an hour per task, nothing to the provider even for hundreds of tasks.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(600);

/// How often a JWKS file is looked at (and read if it changed), and the least time between two
/// looks, whatever the tokens presented: a local file costs little to look at, and a key removed
/// from it then stops being accepted within a second.
pub const FILE_INTERVAL: Duration = Duration::from_secs(1);

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest JWKS document accepted: real ones hold a few keys in a few KiB.
const MAX_DOCUMENT: usize = 1 << 20;

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Fetched over HTTPS (plain HTTP only from a loopback address).
    Url(String),
    /// Read from a local file.
    File(PathBuf),
}

/// When a source is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Least time between two loads, whatever asks for them.
    pub min_interval: Duration,
    /// How long after the last load the background task loads again.
    pub refresh: Duration,
}

impl Schedule {
    /// The schedule of `source`: [`REFETCH_INTERVAL`] and [`REFRESH_INTERVAL`] for a URL,
    /// [`FILE_INTERVAL`] for both with a file.
    pub fn of(source: &KeySource) -> Schedule {
        match source {
            KeySource::Url(_) => Schedule {
                min_interval: REFETCH_INTERVAL,
                refresh: REFRESH_INTERVAL,
            },
            KeySource::File(_) => Schedule {
                min_interval: FILE_INTERVAL,
                refresh: FILE_INTERVAL,
            },
        }
    }
}

/// A verification key and the one algorithm it is used with.
#[derive(Clone)]
pub struct Key {
    pub decoding: DecodingKey,
    pub algorithm: Algorithm,
}

/// The usable keys of a JWKS document, by key id.
pub struct KeySet {
    keys: HashMap<String, Key>,
    /// Each key's JWK as published, to tell whether a load changed anything.
    jwks: BTreeMap<String, Value>,
}

impl KeySet {
    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The keys by key id, and loading them.
pub struct KeyStore {
    source: KeySource,
    schedule: Schedule,
    keys: RwLock<Arc<HashMap<String, Key>>>,
    /// Held while loading, so that concurrent misses load once.
    state: tokio::sync::Mutex<LoadState>,
    http: reqwest::Client,
}

/// What loading remembers between loads.
#[derive(Default)]
struct LoadState {
    /// When the last load started.
    last: Option<Instant>,
    /// The file as last read; it is read again only once this changed.
    file_seen: Option<Stamp>,
    /// The JWKs of the keys held.
    jwks: BTreeMap<String, Value>,
}

/// What a load did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The keys held changed (a key id came or went, or a key id's key changed).
    Changed,
    /// The source holds the keys held already.
    Unchanged,
    /// The file is as it was when last read: not read again.
    NotRead,
    /// Failed, or no usable key: the keys held are kept.
    Failed,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("source", &self.source)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A store with no key yet, loading `source` on its [`Schedule`].
    pub fn new(source: KeySource) -> KeyStore {
        let schedule = Schedule::of(&source);
        KeyStore::with_schedule(source, schedule)
    }

    /// A store loading `source` on `schedule`.
    pub fn with_schedule(source: KeySource, schedule: Schedule) -> KeyStore {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with the process's rustls provider");
        KeyStore {
            source,
            schedule,
            keys: RwLock::default(),
            state: tokio::sync::Mutex::new(LoadState::default()),
            http,
        }
    }

    /// The key `kid`, loading the keys again if it is unknown and the source may be asked now.
    pub async fn get(&self, kid: &str) -> Option<Key> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        let mut state = self.state.lock().await;
        // Another lookup may have loaded it while this one waited for the lock.
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        if state
            .last
            .is_some_and(|at| at.elapsed() < self.schedule.min_interval)
        {
            return None;
        }
        self.load(&mut state).await;
        self.cached(kid)
    }

    /// Loads the keys now unless a lookup got there first, then again every
    /// [`Schedule::refresh`] after the last load, until the server terminates.
    pub async fn keep_fresh(&self, mut shutdown: Shutdown) {
        tokio::select! {
            () = shutdown.terminating() => {}
            () = self.refresh_forever() => {}
        }
    }

    async fn refresh_forever(&self) {
        loop {
            let due = {
                let mut state = self.state.lock().await;
                match state.last {
                    Some(at) if at.elapsed() < self.schedule.refresh => at + self.schedule.refresh,
                    _ => {
                        self.load(&mut state).await;
                        Instant::now() + self.schedule.refresh
                    }
                }
            };
            tokio::time::sleep_until(due).await;
        }
    }

    fn cached(&self, kid: &str) -> Option<Key> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    /// Replaces the keys with the source's, unless the load fails or finds no usable key.
    async fn load(&self, state: &mut LoadState) -> Outcome {
        state.last = Some(Instant::now());
        let document = match &self.source {
            KeySource::Url(url) => self.fetch(url).await,
            KeySource::File(path) => {
                let (path, seen) = (path.clone(), state.file_seen);
                match tokio::task::spawn_blocking(move || read_if_changed(&path, seen)).await {
                    Ok(FileRead::Unchanged) => return Outcome::NotRead,
                    Ok(FileRead::Read(stamp, document)) => {
                        state.file_seen = stamp;
                        document
                    }
                    Err(err) => Err(format!("reading the file: {err}")),
                }
            }
        };
        match document.and_then(|document| parse(&document)) {
            Ok(set) => {
                let outcome = if set.jwks == state.jwks {
                    debug!(keys = set.len(), "JWKS unchanged");
                    Outcome::Unchanged
                } else {
                    let kids: Vec<&str> = set.jwks.keys().map(String::as_str).collect();
                    info!(keys = set.len(), kids = ?kids, "JWKS loaded");
                    Outcome::Changed
                };
                state.jwks = set.jwks;
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set.keys);
                outcome
            }
            Err(why) => {
                let held = state.jwks.len();
                warn!(error = %why, held, "JWKS not loaded; keeping the keys held");
                Outcome::Failed
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|err| format!("GET {url}: {err}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_DOCUMENT as u64)
        {
            return Err(format!("GET {url}: over {MAX_DOCUMENT} bytes"));
        }
        let body = response
            .bytes()
            .await
            .map_err(|err| format!("GET {url}: {err}"))?;
        if body.len() > MAX_DOCUMENT {
            return Err(format!("GET {url}: over {MAX_DOCUMENT} bytes"));
        }
        Ok(body.to_vec())
    }
}

/// What a file looked like when it was read: what changes when it is written or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    Opened {
        device: u64,
        inode: u64,
        size: u64,
        modified: (i64, i64),
        changed: (i64, i64),
    },
    /// It could not be opened, for this reason.
    Unopened(std::io::ErrorKind),
}

/// How long after its last modification a file's stamp is trusted to tell a later change.
/// Timestamps come from a coarse clock (a scheduler tick; a second or two on some filesystems),
/// so a file rewritten with as many bytes within that much of a read could keep its stamp; until
/// its modification time is that old, it is read at every look.
const SETTLE: Duration = Duration::from_secs(2);

enum FileRead {
    /// As it was when last read.
    Unchanged,
    /// Read: its stamp if later looks may trust it, and its content or why it cannot be read.
    Read(Option<Stamp>, Result<Vec<u8>, String>),
}

/// Reads `path` unless it looks as `seen`.
fn read_if_changed(path: &Path, seen: Option<Stamp>) -> FileRead {
    use std::os::unix::fs::MetadataExt;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) => {
            let stamp = Stamp::Unopened(err.kind());
            if seen == Some(stamp) {
                return FileRead::Unchanged;
            }
            let why = format!("cannot read {}: {err}", path.display());
            return FileRead::Read(Some(stamp), Err(why));
        }
    };
    let (stamp, settled) = match file.metadata() {
        Ok(meta) => {
            let stamp = Stamp::Opened {
                device: meta.dev(),
                inode: meta.ino(),
                size: meta.size(),
                modified: (meta.mtime(), meta.mtime_nsec()),
                changed: (meta.ctime(), meta.ctime_nsec()),
            };
            let settled = meta
                .modified()
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age >= SETTLE);
            (stamp, settled)
        }
        Err(err) => (Stamp::Unopened(err.kind()), false),
    };
    if seen == Some(stamp) {
        return FileRead::Unchanged;
    }
    FileRead::Read(settled.then_some(stamp), read_limited(file, path))
}

fn read_limited(file: std::fs::File, path: &Path) -> Result<Vec<u8>, String> {
    let mut document = Vec::new();
    file.take(MAX_DOCUMENT as u64 + 1)
        .read_to_end(&mut document)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if document.len() > MAX_DOCUMENT {
        return Err(format!("{} is over {MAX_DOCUMENT} bytes", path.display()));
    }
    Ok(document)
}

/// The usable keys of the JWKS file at `path`, or why there are none (checked at start-up).
pub fn read_file(path: &Path) -> Result<KeySet, String> {
    let file = std::fs::File::open(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    parse(&read_limited(file, path)?)
}

/// The usable keys of a JWKS document: those with a `kid`, meant for signatures, of a supported
/// kind (RSA for RS256, EC P-256 for ES256, Ed25519 for EdDSA) whose `alg`, if given, agrees.
/// Keys that are not usable are skipped, not fatal: a provider may publish other kinds beside. A
/// document without any usable key is an error: it cannot be the provider's real key set.
pub fn parse(document: &[u8]) -> Result<KeySet, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let document: Document = serde_json::from_slice(document)
        .map_err(|err| format!("not a JWKS document (an object with keys): {err}"))?;
    let published = document.keys.len();
    let mut set = KeySet {
        keys: HashMap::new(),
        jwks: BTreeMap::new(),
    };
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else {
            continue;
        };
        if let Some((kid, key)) = usable(&jwk) {
            set.keys.insert(kid.clone(), key);
            set.jwks.insert(kid, value);
        }
    }
    if set.is_empty() {
        return Err(format!(
            "no usable key among its {published}: a key needs a kid and use sig (or none), and RSA, EC P-256 or Ed25519"
        ));
    }
    Ok(set)
}

fn usable(jwk: &Jwk) -> Option<(String, Key)> {
    let kid = jwk.common.key_id.clone()?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    if let Some(declared) = jwk.common.key_algorithm
        && declared.to_string() != format!("{algorithm:?}")
    {
        return None;
    }
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some((
        kid,
        Key {
            decoding,
            algorithm,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const OTHER_X: &str = "Fjsq9o5qWVmvXUBZq8A5Tk08hqNqc4Uo_Nmfm5uZ2aM";

    /// A JWKS of Ed25519 keys with these key ids (all the same key: only the ids matter here).
    fn jwks(kids: &[&str]) -> String {
        let keys: Vec<Value> = kids
            .iter()
            .map(|kid| serde_json::json!({"kid": kid, "kty": "OKP", "crv": "Ed25519", "x": X}))
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    fn held(store: &KeyStore) -> Vec<String> {
        let mut kids: Vec<String> = store.keys.read().unwrap().keys().cloned().collect();
        kids.sort();
        kids
    }

    /// A JWKS over plain HTTP on loopback whose document a test may change, counting fetches.
    struct Provider {
        url: String,
        document: Arc<Mutex<String>>,
        fetches: Arc<AtomicUsize>,
    }

    impl Provider {
        async fn start(document: String) -> Provider {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/jwks", listener.local_addr().unwrap());
            let document = Arc::new(Mutex::new(document));
            let fetches = Arc::new(AtomicUsize::new(0));
            let (served, counted) = (Arc::clone(&document), Arc::clone(&fetches));
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let body = served.lock().unwrap().clone();
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let _ = socket.read(&mut [0u8; 4096]).await;
                        let response = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                    });
                }
            });
            Provider {
                url,
                document,
                fetches,
            }
        }

        fn set(&self, document: String) {
            *self.document.lock().unwrap() = document;
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    /// A store on `schedule` (the source's own if `None`), with ring as rustls' provider, as
    /// `run` installs it.
    fn store(source: KeySource, schedule: Option<Schedule>) -> KeyStore {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let schedule = schedule.unwrap_or_else(|| Schedule::of(&source));
        KeyStore::with_schedule(source, schedule)
    }

    async fn load(store: &KeyStore) -> Outcome {
        let mut state = store.state.lock().await;
        store.load(&mut state).await
    }

    #[test]
    fn only_signature_keys_of_supported_kinds_with_a_kid_are_kept() {
        let document = br#"{"keys":[
            {"kid":"rsa","kty":"RSA","n":"qYHKfbet6vg","e":"AQAB","alg":"RS256","use":"sig"},
            {"kid":"ed","kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kid":"enc","kty":"RSA","n":"qYHKfbet6vg","e":"AQAB","use":"enc"},
            {"kid":"hmac","kty":"oct","k":"c2VjcmV0"},
            {"kid":"p384","kty":"EC","crv":"P-384","x":"AA","y":"AA"},
            {"kid":"liar","kty":"RSA","n":"qYHKfbet6vg","e":"AQAB","alg":"RS512"},
            {"kid":"odd","kty":"XYZ"}
        ]}"#;
        let set = parse(document).unwrap();
        let mut kids: Vec<&str> = set.keys.keys().map(String::as_str).collect();
        kids.sort();
        assert_eq!(kids, ["ed", "rsa"]);
        assert_eq!(set.keys["rsa"].algorithm, Algorithm::RS256);
        assert_eq!(set.keys["ed"].algorithm, Algorithm::EdDSA);
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn a_document_without_a_usable_key_is_an_error() {
        let empty = parse(br#"{"keys":[]}"#).err().unwrap();
        assert!(empty.contains("no usable key"), "{empty}");
        let unsupported = parse(br#"{"keys":[{"kid":"hmac","kty":"oct","k":"c2VjcmV0"}]}"#)
            .err()
            .unwrap();
        assert!(
            unsupported.contains("no usable key among its 1"),
            "{unsupported}"
        );
    }

    #[tokio::test]
    async fn loads_tell_a_change_of_keys_from_the_same_keys_again() {
        let provider = Provider::start(jwks(&["a"])).await;
        let store = store(KeySource::Url(provider.url.clone()), None);
        assert_eq!(load(&store).await, Outcome::Changed, "the first keys");
        assert_eq!(load(&store).await, Outcome::Unchanged);
        provider.set(jwks(&["a", "b"]));
        assert_eq!(load(&store).await, Outcome::Changed, "a key id came");
        provider.set(jwks(&["b"]));
        assert_eq!(load(&store).await, Outcome::Changed, "a key id went");
        provider.set(
            serde_json::json!({"keys":[{"kid":"b","kty":"OKP","crv":"Ed25519","x":OTHER_X}]})
                .to_string(),
        );
        assert_eq!(
            load(&store).await,
            Outcome::Changed,
            "a key id's key changed"
        );
        assert_eq!(provider.fetches(), 5);
    }

    #[tokio::test]
    async fn an_empty_or_useless_key_set_keeps_the_keys_held() {
        let provider = Provider::start(jwks(&["a"])).await;
        let store = store(KeySource::Url(provider.url.clone()), None);
        load(&store).await;
        for document in [
            r#"{"keys":[]}"#,
            r#"{"keys":[{"kid":"hmac","kty":"oct","k":"c2VjcmV0"}]}"#,
            "not json",
        ] {
            provider.set(document.to_owned());
            assert_eq!(load(&store).await, Outcome::Failed, "{document}");
            assert_eq!(held(&store), ["a"], "{document}");
        }
        assert_eq!(provider.fetches(), 4);
    }

    #[tokio::test]
    async fn unknown_key_ids_load_at_most_once_per_interval() {
        let provider = Provider::start(jwks(&["a"])).await;
        let schedule = Schedule {
            min_interval: Duration::from_millis(500),
            refresh: Duration::from_secs(3600),
        };
        let store = store(KeySource::Url(provider.url.clone()), Some(schedule));
        assert!(store.get("a").await.is_some(), "the first lookup loads");
        provider.set(jwks(&["a", "b"]));
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(300) {
            assert!(store.get("made-up").await.is_none());
            assert!(store.get("b").await.is_none(), "not loaded again so soon");
        }
        assert_eq!(provider.fetches(), 1);
        tokio::time::sleep_until(started + schedule.min_interval).await;
        assert!(store.get("b").await.is_some(), "past the interval");
        assert!(store.get("made-up").await.is_none());
        assert_eq!(provider.fetches(), 2);
    }

    #[tokio::test]
    async fn the_background_task_drops_removed_keys_and_stops_with_the_server() {
        let provider = Provider::start(jwks(&["old", "kept"])).await;
        let schedule = Schedule {
            min_interval: Duration::from_millis(100),
            refresh: Duration::from_secs(1),
        };
        let store = Arc::new(store(KeySource::Url(provider.url.clone()), Some(schedule)));
        let (lifecycle, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.keep_fresh(shutdown).await }
        });
        let started = Instant::now();
        while held(&store).is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "loaded at start"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(provider.fetches(), 1);

        // The provider withdraws a key; only the refresh can tell, as no token names a new one.
        provider.set(jwks(&["kept"]));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            held(&store),
            ["kept", "old"],
            "not before the refresh is due"
        );
        tokio::time::sleep(schedule.refresh).await;
        assert_eq!(held(&store), ["kept"]);
        assert_eq!(provider.fetches(), 2);

        lifecycle.drain();
        lifecycle.terminate();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task stops with the server")
            .unwrap();
        let fetched = provider.fetches();
        tokio::time::sleep(schedule.refresh * 2).await;
        assert_eq!(provider.fetches(), fetched, "nothing after it stopped");
    }

    /// Makes `path` look modified an hour ago, as a file is for most of its life.
    fn age(path: &Path) {
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let then = std::time::SystemTime::now() - Duration::from_secs(3600);
        file.set_modified(then).unwrap();
    }

    #[tokio::test]
    async fn a_file_is_read_again_only_once_it_changed() {
        let dir = std::env::temp_dir().join(format!("jwks-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        std::fs::write(&path, jwks(&["a"])).unwrap();
        let store = store(KeySource::File(path.clone()), None);
        assert_eq!(load(&store).await, Outcome::Changed);
        assert_eq!(
            load(&store).await,
            Outcome::Unchanged,
            "just written: read at every look"
        );
        age(&path);
        assert_eq!(load(&store).await, Outcome::Unchanged);
        assert_eq!(load(&store).await, Outcome::NotRead);

        // Replaced whole (a new inode), as tools that write atomically do.
        let next = dir.join("next.json");
        std::fs::write(&next, jwks(&["a", "b"])).unwrap();
        age(&next);
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(load(&store).await, Outcome::Changed);
        assert_eq!(held(&store), ["a", "b"]);
        assert_eq!(load(&store).await, Outcome::NotRead);

        // Written in place with as many bytes: its times tell.
        std::fs::write(&path, jwks(&["a", "c"])).unwrap();
        assert_eq!(load(&store).await, Outcome::Changed);
        assert_eq!(held(&store), ["a", "c"]);
        age(&path);
        assert_eq!(load(&store).await, Outcome::Unchanged);
        assert_eq!(load(&store).await, Outcome::NotRead);

        // Gone: one warning, then nothing until it is back.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(load(&store).await, Outcome::Failed);
        assert_eq!(load(&store).await, Outcome::NotRead);
        assert_eq!(held(&store), ["a", "c"]);
        std::fs::write(&path, jwks(&["a", "c"])).unwrap();
        assert_eq!(load(&store).await, Outcome::Unchanged, "read, same keys");

        // Broken: a warning per look while it is fresh, then none until it changes.
        std::fs::write(&path, "{").unwrap();
        assert_eq!(load(&store).await, Outcome::Failed);
        age(&path);
        assert_eq!(load(&store).await, Outcome::Failed);
        assert_eq!(load(&store).await, Outcome::NotRead);
        assert_eq!(held(&store), ["a", "c"]);

        assert!(read_file(&path).is_err());
        std::fs::write(&path, vec![b' '; MAX_DOCUMENT + 1]).unwrap();
        let too_big = read_file(&path).err().unwrap();
        assert!(too_big.contains("over"), "{too_big}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
