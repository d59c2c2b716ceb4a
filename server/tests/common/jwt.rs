//! Signing keys, tokens and a JWKS server for the sign-in tests: Ed25519 and P-256 keys drawn at
//! run time (ring), and one RSA key fixed here (ring cannot draw RSA keys). These keys sign test
//! tokens only; nothing trusts them.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A 2048-bit RSA private key (PKCS#1 DER, base64), for RS256 test tokens.
const RSA_PKCS1_DER: &[&str] = &[
    "MIIEpAIBAAKCAQEAqYHKfbet6vh++mTzMuQ2cDX1/EDgE3QLbZEYSEEtecJyZ+WPKbgkHgAytwCbtE/r14qMBqA5pc4+rTeo",
    "+76aPQIPW8Ql21nGfha7EyvNphCkTqLKQ1iNHuRXD0jNtSP7wC5c3bVtKDm1sGe/9Op6CEnDfTDAK/9nU5q4nmde08T6PKgr",
    "9+dHp6Wj4Tvt7JOcf7LCovBWevbDQYJKN8OGoKvB/l22CIlI40DLMgtzKIU4vOIA6vXKSdm+xavcjTouJvrk36uZd8KRSRjJ",
    "sHLYp2xUmYi5sSSlXlShAb+mnQONI99wXy2H3Q57pwYajvQ6lyvTXLdwNkRc//kLGShcLQIDAQABAoIBACM70dHQ+MszLP2y",
    "NyUYb8JiTQfKmmkgwXFcbA400hWRmANFobz7xDIiO2hzrWnNBQpQB6wm6OSwmrGZtLvjUh8lSvj5rB7MqegypF8nRz9iDS01",
    "RFK8WNUXhIsuSGgDG0TGvlHtcMugN0Z8QlfP117aqlJe7EsY8yrbKc3vUbQ10mVBGpGOax8tp3nBnsBTnjVtFh/J/Aa0eEm5",
    "nFznjjdfuhSm5XiT/J/n8heorpOVH2UL2qeRGgarh5AH5XRK8BMuN7B/VZFF4uNWTDMqGP44pG/UNFbB9iLW0+UtIYKEinTn",
    "PZ7558NewRcHOK0pp91vz9z6HroSlpAfrL/1t4ECgYEA1lY9PmLtukwjF7oQVfZsCCVJVSh9JPdRz/6lj5oDX9RgSi+jp8xJ",
    "UMJ5UImCYh9taB0LDQckCq09YM0v9JOKUQC6Hg8VAky29CaMDqicxAoMWP1Q/XBER+a6/JSWpixuqS8hiuMBV6fLk1j1+kaj",
    "WMmJQR2oaiPK3++aZ0tFZO0CgYEAynS+A0PxKtrmEcAJG/0jccsFHNehV3sVntUdxJg+9e37NzrGOxWAK3iTf9CdUgPKMXVp",
    "OrEhnVaxR1fprE5IfTigZR5GlwGjGLzvflm8zT6VVOTFzZSs+EOmLoz+evazySPoN29PBmYrGSG8NGIXykOVHDlwp+/tmr4c",
    "V67VLEECgYEAxXEN27FgEpReY1X4BGgK3noSkorItUvKppKKSr1yTE2kIdK+rC0ogGeVP1ZcsC0JKLZQXsDsN5Wci9aYTXG4",
    "IaRMzrHQBZ1Lj58Ot9YlCwXCmBtKBxzrGVz3dQMfv5YAnoMXIAy7SNb+Vg7GELYPdRO6Byzd3mB4W08p6etR0oUCgYEAocPn",
    "81n9P/3J6RLk9G0uPgU235XXv7uESfYFJAl1/TEbEkUvERSb5aAhUvZQTbDjhONIonHX5wzW96dh+aBPQWbWmhU31/6h3+lO",
    "/0kal3BTB5MIDbym/HOpO/bCe2PVwXikWm7g2L8X3qva4owicCXR5cxrnHQUCRmwMctrX0ECgYA5Bkl8iNwp9H3OtguhJveS",
    "q1c92OXgdacIuBT6WeylWUyuVezLy1ZmX2kcjxApeCt85EptXcRqy6VbEgqCcaddSDyY2cahyl9DXHKu+U4kcKydOBKKbw2F",
    "AmTlErPUWZxnoEHh8ThCMcEVzxtIC6EzqNYD5RvHAaU5rPkSi2EhGw==",
];

/// Its modulus, base64url (the JWK's `n`).
const RSA_MODULUS: &str = "qYHKfbet6vh--mTzMuQ2cDX1_EDgE3QLbZEYSEEtecJyZ-WPKbgkHgAytwCbtE_r14qMBqA5pc4-rTeo-76aPQIPW8Ql21nGfha7EyvNphCkTqLKQ1iNHuRXD0jNtSP7wC5c3bVtKDm1sGe_9Op6CEnDfTDAK_9nU5q4nmde08T6PKgr9-dHp6Wj4Tvt7JOcf7LCovBWevbDQYJKN8OGoKvB_l22CIlI40DLMgtzKIU4vOIA6vXKSdm-xavcjTouJvrk36uZd8KRSRjJsHLYp2xUmYi5sSSlXlShAb-mnQONI99wXy2H3Q57pwYajvQ6lyvTXLdwNkRc__kLGShcLQ";

/// The RSA key's modulus as bytes: public, so what an attacker would try as an HMAC secret.
pub fn rsa_modulus() -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(RSA_MODULUS).unwrap()
}

/// A token with `claims`, HS256 with `secret`, naming `kid`: what a server that let the token
/// pick its algorithm would check with a public key as the secret.
pub fn hs256(kid: &str, secret: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// A signing key with its key id and JWK.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl SigningKey {
    /// A fresh Ed25519 key (EdDSA).
    pub fn ed25519(kid: &str) -> SigningKey {
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        SigningKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kid": kid, "kty": "OKP", "crv": "Ed25519", "use": "sig",
                         "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())}),
        }
    }

    /// A fresh P-256 key (ES256).
    pub fn p256(kid: &str) -> SigningKey {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        // An uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        SigningKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kid": kid, "kty": "EC", "crv": "P-256", "alg": "ES256",
                         "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                         "y": URL_SAFE_NO_PAD.encode(&point[33..])}),
        }
    }

    /// The fixed RSA key (RS256).
    pub fn rsa(kid: &str) -> SigningKey {
        let der = STANDARD.decode(RSA_PKCS1_DER.concat()).unwrap();
        SigningKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(&der),
            jwk: json!({"kid": kid, "kty": "RSA", "alg": "RS256", "n": RSA_MODULUS, "e": "AQAB"}),
        }
    }

    /// A token with `claims`, signed by this key and naming its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "websocket-tests";

/// Seconds since the epoch, `offset` from now.
pub fn at(offset: i64) -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset
}

/// Claims accepted by a server set up with `ISSUER` and `AUDIENCE`, valid for an hour.
pub fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": at(3600)})
}

/// A JWKS document of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// A JWKS served over plain HTTP on loopback, whose document the test may change, counting fetches.
pub struct JwksServer {
    pub url: String,
    document: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    pub async fn start(document: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let document = Arc::new(Mutex::new(document));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (Arc::clone(&document), Arc::clone(&fetches));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = served.lock().unwrap().clone();
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        JwksServer {
            url: format!("http://{addr}/.well-known/jwks.json"),
            document,
            fetches,
        }
    }

    pub fn set(&self, document: String) {
        *self.document.lock().unwrap() = document;
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Waits until the document has been asked for `count` times; panics after 10 s.
    pub async fn wait_for_fetches(&self, count: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.fetches() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "{} fetches, expected {count}",
                self.fetches()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// A JWKS file in a directory of its own, removed when dropped. Each `write` replaces it whole
/// (written beside it, then renamed over it), so the server never reads half of one.
pub struct JwksFile {
    dir: PathBuf,
    pub path: PathBuf,
}

impl JwksFile {
    pub fn new(document: &str) -> JwksFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "jwks-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = JwksFile {
            path: dir.join("jwks.json"),
            dir,
        };
        file.write(document);
        file
    }

    pub fn write(&self, document: &str) {
        let next = self.dir.join("next.json");
        std::fs::write(&next, document).unwrap();
        std::fs::rename(&next, &self.path).unwrap();
    }

    pub fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for JwksFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
