//! The shared secret CloudFront sends and the load balancer checks.
//!
//! The ALB's header condition matches values case-insensitively, treats `*` and `?` as wildcards,
//! and takes at most 128 characters. So a secret is exactly what [`generate`] makes: 32 bytes from
//! the operating system's CSPRNG (256 bits) as [`LENGTH`] lowercase hex characters, nothing the ALB
//! could read as a pattern or fold. The Terraform alb module, which puts the values on the
//! listener rule, validates the same format (a test here reads its regex).

use std::fmt;

use rand::TryRngCore;
use rand::rngs::OsRng;

/// Characters in every value: 32 bytes as hex.
pub const LENGTH: usize = 64;

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
            SecretError::Length(length) => {
                write!(f, "has {length} characters; a value has {LENGTH}")
            }
            SecretError::Characters => write!(
                f,
                "may contain only lowercase hex digits 0-9 and a-f, because the load balancer matches \
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
    let mut bytes = [0u8; LENGTH / 2];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| SecretError::Entropy)?;
    Ok(crate::hex(&bytes))
}

/// Checks a value read from the state document.
pub fn check(value: &str) -> Result<(), SecretError> {
    if value.len() != LENGTH {
        return Err(SecretError::Length(value.chars().count()));
    }
    if !value
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
        assert_eq!(check(&"a".repeat(63)), Err(SecretError::Length(63)));
        assert_eq!(check(&"a".repeat(65)), Err(SecretError::Length(65)));
        for bad in ["A", "*", "?", "-", " ", "g"] {
            let value = format!("{}{bad}", "a".repeat(63));
            assert_eq!(check(&value), Err(SecretError::Characters), "{bad:?}");
        }
        assert!(check(&"0a".repeat(32)).is_ok());
    }

    /// The alb module refuses at plan time what this function would refuse at run time, and
    /// accepts what it writes: one format on both sides.
    #[test]
    fn the_alb_module_validates_the_same_format() {
        let variables = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../terraform/modules/alb/variables.tf");
        let text = std::fs::read_to_string(&variables).unwrap();
        let expected = format!(r#"can(regex("^[0-9a-f]{{{LENGTH}}}$", v))"#);
        assert!(
            text.contains(&expected),
            "{} does not validate origin_secret_header_values with {expected}",
            variables.display()
        );
    }
}
