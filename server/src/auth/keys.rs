//! The identity provider's signing keys: a JWKS document fetched over HTTPS (`AUTH_JWKS_URL`) or
//! read from a file (`AUTH_JWKS_FILE`), kept by key id, and fetched again when a token names a key
//! id not seen yet: at most every [`REFETCH_INTERVAL`] from a URL (so a flood of made-up key ids
//! cannot turn the server into a client hammering the identity provider), every time from a file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tracing::{info, warn};

/// Least time between two fetches of a JWKS URL.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

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

/// A verification key and the one algorithm it is used with.
#[derive(Clone)]
pub struct Key {
    pub decoding: DecodingKey,
    pub algorithm: Algorithm,
}

/// The keys by key id, and fetching them.
pub struct KeyStore {
    source: KeySource,
    keys: RwLock<Arc<HashMap<String, Key>>>,
    /// When the last fetch started; held while fetching, so concurrent misses fetch once.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A store with no key yet; the first lookup (or [`KeyStore::refresh`]) loads them.
    pub fn new(source: KeySource) -> KeyStore {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with the process's rustls provider");
        KeyStore {
            source,
            keys: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
            http,
        }
    }

    /// The key `kid`, loading the keys again if it is unknown and the source may be asked now.
    pub async fn get(&self, kid: &str) -> Option<Key> {
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        let mut last_fetch = self.last_fetch.lock().await;
        // Another lookup may have loaded it while this one waited for the lock.
        if let Some(key) = self.cached(kid) {
            return Some(key);
        }
        let may_fetch = match (&self.source, *last_fetch) {
            (KeySource::File(_), _) | (_, None) => true,
            (KeySource::Url(_), Some(at)) => at.elapsed() >= REFETCH_INTERVAL,
        };
        if !may_fetch {
            return None;
        }
        *last_fetch = Some(Instant::now());
        self.load().await;
        self.cached(kid)
    }

    /// Loads the keys now (at start-up, so the first client does not wait for the fetch).
    pub async fn refresh(&self) {
        let mut last_fetch = self.last_fetch.lock().await;
        *last_fetch = Some(Instant::now());
        self.load().await;
    }

    fn cached(&self, kid: &str) -> Option<Key> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    /// Replaces the keys with the source's; on failure the keys held are kept (an identity
    /// provider that is down for a moment must not sign everyone out).
    async fn load(&self) {
        let document = match &self.source {
            KeySource::Url(url) => self.fetch(url).await,
            KeySource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|err| format!("cannot read {}: {err}", path.display())),
        };
        let keys = document.and_then(|document| parse(&document));
        match keys {
            Ok(keys) => {
                info!(keys = keys.len(), "JWKS loaded");
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
            }
            Err(why) => warn!(error = %why, "JWKS not loaded; keeping the keys held"),
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

/// The usable keys of a JWKS document: those with a `kid`, meant for signatures, of a supported
/// kind (RSA for RS256, EC P-256 for ES256, Ed25519 for EdDSA) whose `alg`, if given, agrees.
/// Keys that are not usable are skipped, not fatal: a provider may publish other kinds beside.
pub fn parse(document: &[u8]) -> Result<HashMap<String, Key>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(document)
        .map_err(|err| format!("not a JWKS document (an object with keys): {err}"))?;
    let mut keys = HashMap::new();
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if let Some((kid, key)) = usable(&jwk) {
            keys.insert(kid, key);
        }
    }
    Ok(keys)
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
        let keys = parse(document).unwrap();
        let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
        kids.sort();
        assert_eq!(kids, ["ed", "rsa"]);
        assert_eq!(keys["rsa"].algorithm, Algorithm::RS256);
        assert_eq!(keys["ed"].algorithm, Algorithm::EdDSA);
        assert!(parse(b"[]").is_err());
    }
}
