//! The shared secret CloudFront sends and the load balancer checks.
//!
//! The ALB's header condition matches values case-insensitively, treats `*` and `?` as wildcards,
//! and takes at most 128 characters. So a secret is lowercase letters and digits only (nothing the
//! ALB could read as a pattern or fold), at least 32 characters, at most 128; a generated one is 64
//! hex characters, 256 bits from the operating system's CSPRNG.

use std::fmt;

use rand::TryRngCore;
use rand::rngs::OsRng;

/// Shortest value accepted in the state document.
pub const MIN_LENGTH: usize = 32;
/// Longest value an ALB header condition takes.
pub const MAX_LENGTH: usize = 128;

/// Why a value is refused. The message never contains the value; the caller says which one
/// (`"pending" has 6 characters; …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretError {
    Length(usize),
    Characters,
    Entropy,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Length(length) => write!(
                f,
                "has {length} characters; a value needs {MIN_LENGTH} to {MAX_LENGTH}"
            ),
            SecretError::Characters => write!(
                f,
                "may contain only lowercase letters a-z and digits 0-9, because the load balancer matches \
                 header values case-insensitively and reads * and ? as wildcards"
            ),
            SecretError::Entropy => {
                write!(f, "the operating system's random number generator failed")
            }
        }
    }
}

impl std::error::Error for SecretError {}

/// A new secret: 32 bytes from the OS CSPRNG, as 64 lowercase hex characters.
pub fn generate() -> Result<String, SecretError> {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| SecretError::Entropy)?;
    Ok(crate::hex(&bytes))
}

/// Checks a value read from the state document.
pub fn check(value: &str) -> Result<(), SecretError> {
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&value.len()) {
        return Err(SecretError::Length(value.chars().count()));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(SecretError::Characters);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_64_hex_characters_and_differ() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_eq!(a.len(), 64);
        assert!(check(&a).is_ok());
        assert_ne!(a, b);
    }

    #[test]
    fn refuses_what_the_load_balancer_could_misread() {
        assert_eq!(check(&"a".repeat(31)), Err(SecretError::Length(31)));
        assert_eq!(check(&"a".repeat(129)), Err(SecretError::Length(129)));
        for bad in ["A", "*", "?", "-", " "] {
            let value = format!("{}{bad}", "a".repeat(40));
            assert_eq!(check(&value), Err(SecretError::Characters), "{bad:?}");
        }
        assert!(check(&"0a".repeat(20)).is_ok());
    }
}
