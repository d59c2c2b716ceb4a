//! Sign-in with JWTs from the team's identity provider (Cognito, Auth0, Okta, Keycloak…).
//!
//! With a key source configured, every WebSocket upgrade needs a valid token, else 401 before the
//! upgrade: in `Authorization: Bearer …`, or, for browsers (which cannot set headers on a
//! WebSocket), as the subprotocol pair `bearer`, `<token>` (the server then selects `bearer`), or
//! as `?token=` (visible in access logs). A token is valid when it names a key id (`kid`) of the
//! provider's JWKS ([`keys`]), is signed with that key's algorithm (RS256, ES256 or EdDSA; no
//! other, and never `none` or HMAC), carries `exp`, and names `AUTH_ISSUER` and `AUTH_AUDIENCE`;
//! `exp` and `nbf` are checked with `AUTH_LEEWAY` of clock skew. An `exp` so far off that the
//! grant's end cannot be represented is refused as malformed.
//!
//! What a token allows is its [`Grant`]: the optional `channels` claim limits the channels the
//! connection may subscribe to and publish on, the optional `publish` claim narrows publishing
//! further (patterns: a name, or a prefix followed by `*`).

mod keys;

pub use keys::{FILE_INTERVAL, KeySource, REFETCH_INTERVAL, REFRESH_INTERVAL};

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use warp::http::HeaderMap;
use warp::http::header;

use crate::hub::ChannelName;
use crate::shutdown::Shutdown;
use keys::KeyStore;

/// The settings of sign-in.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Where the keys come from.
    pub source: KeySource,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry.
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Checks tokens against the identity provider's keys. One per process.
#[derive(Debug)]
pub struct Authenticator {
    keys: KeyStore,
    settings: AuthSettings,
}

/// Why a token is refused. Also the `reason` label of `websocket_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token where one is looked for.
    Missing,
    /// Not a JWT, no `kid`, a claim of the wrong shape, or an algorithm this server does not take.
    Malformed,
    /// A `kid` the provider does not publish (also after fetching its keys again), or not any more.
    UnknownKey,
    /// The signature does not verify, or was made with another algorithm than the key's.
    BadSignature,
    /// Past `exp` (plus the leeway), or before `nbf`.
    Expired,
    /// Not `AUTH_ISSUER`.
    WrongIssuer,
    /// Not `AUTH_AUDIENCE`.
    WrongAudience,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::UnknownKey => "unknown_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::WrongIssuer => "wrong_issuer",
            Refusal::WrongAudience => "wrong_audience",
        }
    }

    /// What the client is told (never the token, nor which key was tried).
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "a token is required: Authorization: Bearer <token>, the subprotocols bearer and <token>, or ?token=<token>"
            }
            Refusal::Malformed => "the token is not a JWT this server accepts",
            Refusal::UnknownKey => "the token's key id is not one of the identity provider's keys",
            Refusal::BadSignature => "the token's signature does not verify",
            Refusal::Expired => "the token has expired or is not valid yet",
            Refusal::WrongIssuer => "the token is from another issuer",
            Refusal::WrongAudience => "the token is for another audience",
        }
    }
}

/// Channel patterns: a name, or a prefix ending in `*` that matches every name it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns(Vec<String>);

impl Patterns {
    fn parse(patterns: Vec<String>) -> Option<Patterns> {
        let valid = patterns.iter().all(|pattern| {
            let name = pattern.strip_suffix('*').unwrap_or(pattern);
            name.is_empty() && pattern == "*" || ChannelName::parse(name).is_ok()
        });
        valid.then_some(Patterns(patterns))
    }

    /// Whether `channel` matches one of the patterns.
    pub fn allow(&self, channel: &str) -> bool {
        self.0
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => channel.starts_with(prefix),
                None => pattern == channel,
            })
    }
}

/// What a valid token allows, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The token's `sub`, for logs; a refresh needs one, the same in both tokens.
    pub subject: Option<String>,
    /// When the grant ends: the token's `exp` plus the leeway.
    pub expires: SystemTime,
    /// Channels it may subscribe to and publish on; `None`: all.
    channels: Option<Patterns>,
    /// Channels it may publish on (within `channels`); `None`: as `channels`.
    publish: Option<Patterns>,
}

impl Grant {
    /// Whether the holder may subscribe to `channel`.
    pub fn may_subscribe(&self, channel: &str) -> bool {
        self.channels.as_ref().is_none_or(|p| p.allow(channel))
    }

    /// Whether the holder may publish on `channel`.
    pub fn may_publish(&self, channel: &str) -> bool {
        self.may_subscribe(channel) && self.publish.as_ref().is_none_or(|p| p.allow(channel))
    }

    /// How long from now until the grant ends (zero once it has).
    pub fn remaining(&self) -> Duration {
        self.expires
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }
}

/// The claims this server reads.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: u64,
    channels: Option<Vec<String>>,
    publish: Option<Vec<String>>,
}

/// The subprotocol that announces a token in the next one.
pub const BEARER_PROTOCOL: &str = "bearer";

/// Where an upgrade request carries its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// `Authorization: Bearer …`.
    Header,
    /// `Sec-WebSocket-Protocol: bearer, <token>`: the 101 must select `bearer`.
    Subprotocol,
    /// `?token=`.
    Query,
}

/// The token of an upgrade request, and where it was found.
pub fn token_of<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<(&'a str, Carrier)> {
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        return Some((token.trim(), Carrier::Header));
    }
    let mut protocols = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim);
    if protocols.any(|p| p == BEARER_PROTOCOL)
        && let Some(token) = protocols.next()
    {
        return Some((token, Carrier::Subprotocol));
    }
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|token| !token.is_empty())
        .map(|token| (token, Carrier::Query))
}

impl Authenticator {
    /// An authenticator that loads its keys on first need; spawn
    /// [`Authenticator::keep_keys_fresh`] to load them at start-up and keep them fresh.
    pub fn new(settings: AuthSettings) -> Authenticator {
        Authenticator {
            keys: KeyStore::new(settings.source.clone()),
            settings,
        }
    }

    /// Loads the keys now, then again periodically (so that a key the identity provider
    /// withdrew stops being accepted), until the server terminates.
    pub async fn keep_keys_fresh(&self, shutdown: Shutdown) {
        self.keys.keep_fresh(shutdown).await;
    }

    /// Checks `token`; what it allows, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Grant, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(Refusal::Malformed);
        }
        let kid = header.kid.ok_or(Refusal::Malformed)?;
        let key = self.keys.get(&kid).await.ok_or(Refusal::UnknownKey)?;
        if key.algorithm != header.alg {
            return Err(Refusal::BadSignature);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|err| match err.kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => Refusal::BadSignature,
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => Refusal::Expired,
                ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
                ErrorKind::InvalidAudience => Refusal::WrongAudience,
                _ => Refusal::Malformed,
            })?
            .claims;
        let patterns = |claim: Option<Vec<String>>| match claim {
            None => Ok(None),
            Some(list) => Patterns::parse(list).map(Some).ok_or(Refusal::Malformed),
        };
        let expires = UNIX_EPOCH
            .checked_add(Duration::from_secs(claims.exp))
            .and_then(|exp| exp.checked_add(self.settings.leeway))
            .ok_or(Refusal::Malformed)?;
        Ok(Grant {
            subject: claims.sub,
            expires,
            channels: patterns(claims.channels)?,
            publish: patterns(claims.publish)?,
        })
    }
}

/// Checks the JWKS file at `path` as the server would load it: readable, a JWKS document, and
/// with at least one usable key; the number of usable keys, or what is wrong, in one line.
pub fn check_jwks_file(path: &Path) -> Result<usize, String> {
    keys::read_file(path).map(|set| set.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    #[test]
    fn patterns_match_names_and_prefixes() {
        let patterns = Patterns::parse(vec!["room:*".into(), "lobby".into()]).unwrap();
        assert!(patterns.allow("room:1") && patterns.allow("room:") && patterns.allow("lobby"));
        assert!(!patterns.allow("lobby2") && !patterns.allow("roo"));
        assert!(Patterns::parse(vec!["*".into()]).unwrap().allow("anything"));
        assert!(Patterns::parse(vec!["bad name".into()]).is_none());
        assert!(Patterns::parse(vec!["a*b".into()]).is_none());
    }

    #[test]
    fn publish_is_within_channels() {
        let grant = Grant {
            subject: None,
            expires: SystemTime::now(),
            channels: Patterns::parse(vec!["room:*".into()]),
            publish: Patterns::parse(vec!["room:1".into(), "other".into()]),
        };
        assert!(grant.may_subscribe("room:2") && !grant.may_publish("room:2"));
        assert!(grant.may_publish("room:1"));
        assert!(
            !grant.may_publish("other"),
            "publish narrows channels, never widens them"
        );
    }

    #[test]
    fn tokens_are_found_in_header_subprotocol_or_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            token_of(&headers, Some("a=1&token=q")),
            Some(("q", Carrier::Query))
        );
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("bearer, t.o.k"),
        );
        assert_eq!(
            token_of(&headers, None),
            Some(("t.o.k", Carrier::Subprotocol))
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer h"));
        assert_eq!(token_of(&headers, None), Some(("h", Carrier::Header)));
        assert_eq!(token_of(&HeaderMap::new(), Some("token=")), None);
    }
}
