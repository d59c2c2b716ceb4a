//! The pure part: editing the custom headers of a distribution's origins, under CloudFront's rules.
//!
//! Edits work on the SDK's own `DistributionConfig`, so a read-modify-write keeps every other field
//! exactly as it was read. All edits are checked before any is made: on error the config is
//! untouched, so a bad request can never turn into a partial update.

use std::fmt;

use aws_sdk_cloudfront::types::{CustomHeaders, DistributionConfig, Origin, OriginCustomHeader};

// Quotas from "Quotas on headers" (custom headers), and the deny list from "Custom headers that
// CloudFront can't add to origin requests", both in the Amazon CloudFront Developer Guide
// (docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/cloudfront-limits.html and
// .../add-origin-custom-headers.html). CloudFront refuses the whole UpdateDistribution when one is
// broken; checking first turns that into a message naming the header.

/// Custom headers per origin (a default quota, which AWS can raise on request).
pub const MAX_HEADERS_PER_ORIGIN: usize = 10;
/// Characters in a custom header name.
pub const MAX_NAME_LENGTH: usize = 256;
/// Characters in a custom header value.
pub const MAX_VALUE_LENGTH: usize = 1783;
/// Characters of all custom header names and values of one origin.
pub const MAX_TOTAL_LENGTH: usize = 10_240;

/// Headers CloudFront cannot add to origin requests, lowercase.
const FORBIDDEN_NAMES: &[&str] = &[
    "cache-control",
    "connection",
    "content-length",
    "cookie",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "max-forwards",
    "pragma",
    "proxy-authorization",
    "proxy-connection",
    "range",
    "request-range",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
    "x-real-ip",
];
/// The documented `X-Amz-` and `X-Edge-` prefixes, and `X-Forwarded-`: CloudFront and the load
/// balancer write those headers themselves, so a secret there would not arrive as sent.
const FORBIDDEN_PREFIXES: &[&str] = &["x-amz-", "x-edge-", "x-forwarded-"];

/// One edit of one origin's custom headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Add the header, or replace its value (names compare case-insensitively, as in HTTP).
    Set {
        origin_id: String,
        name: String,
        value: String,
    },
    /// Remove the header if it is there; an unknown origin has nothing to remove.
    Remove { origin_id: String, name: String },
}

/// Why a set of edits cannot be made. Messages name what to fix and never contain header values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    UnknownOrigin {
        origin_id: String,
        known: Vec<String>,
    },
    InvalidName(String),
    ForbiddenName(String),
    NameTooLong(String),
    ValueTooLong(String),
    ControlCharacters(String),
    TooManyHeaders {
        origin_id: String,
        count: usize,
    },
    TooLong {
        origin_id: String,
        total: usize,
    },
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::UnknownOrigin { origin_id, known } => write!(
                f,
                "the distribution has no origin with id {origin_id:?}; its origins are: {}",
                known
                    .iter()
                    .map(|id| format!("{id:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ChangeError::InvalidName(name) => write!(
                f,
                "{name:?} is not a valid header name: use letters, digits and !#$%&'*+-.^_`|~ only"
            ),
            ChangeError::ForbiddenName(name) => write!(
                f,
                "CloudFront cannot add the header {name:?} to origin requests; choose another name, e.g. X-Origin-Verify"
            ),
            ChangeError::NameTooLong(name) => write!(
                f,
                "the header name {name:?} is longer than CloudFront's {MAX_NAME_LENGTH} characters"
            ),
            ChangeError::ValueTooLong(name) => write!(
                f,
                "the value for header {name:?} is longer than CloudFront's {MAX_VALUE_LENGTH} characters"
            ),
            ChangeError::ControlCharacters(name) => {
                write!(
                    f,
                    "the value for header {name:?} contains control characters"
                )
            }
            ChangeError::TooManyHeaders { origin_id, count } => write!(
                f,
                "origin {origin_id:?} would have {count} custom headers; CloudFront allows {MAX_HEADERS_PER_ORIGIN}"
            ),
            ChangeError::TooLong { origin_id, total } => write!(
                f,
                "origin {origin_id:?}'s custom header names and values would total {total} characters; CloudFront allows {MAX_TOTAL_LENGTH}"
            ),
        }
    }
}

impl std::error::Error for ChangeError {}

/// Checks a header name against HTTP's token rules and CloudFront's deny list and quota.
pub fn check_name(name: &str) -> Result<(), ChangeError> {
    let is_token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(is_token) {
        return Err(ChangeError::InvalidName(name.to_owned()));
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(ChangeError::NameTooLong(name.to_owned()));
    }
    let lower = name.to_ascii_lowercase();
    if FORBIDDEN_NAMES.contains(&lower.as_str())
        || FORBIDDEN_PREFIXES.iter().any(|p| lower.starts_with(p))
    {
        return Err(ChangeError::ForbiddenName(name.to_owned()));
    }
    Ok(())
}

/// Checks a header value against CloudFront's quota (and that it is a single visible line).
pub fn check_value(name: &str, value: &str) -> Result<(), ChangeError> {
    if value.chars().count() > MAX_VALUE_LENGTH {
        return Err(ChangeError::ValueTooLong(name.to_owned()));
    }
    if value.chars().any(char::is_control) {
        return Err(ChangeError::ControlCharacters(name.to_owned()));
    }
    Ok(())
}

/// The value of header `name` on origin `origin_id`, if the origin has it.
pub fn header_value<'a>(
    config: &'a DistributionConfig,
    origin_id: &str,
    name: &str,
) -> Result<Option<&'a str>, ChangeError> {
    let origin =
        find_origin(origins(config), origin_id).ok_or_else(|| unknown_origin(config, origin_id))?;
    Ok(headers(origin)
        .iter()
        .find(|header| header.header_name.eq_ignore_ascii_case(name))
        .map(|header| header.header_value.as_str()))
}

/// Makes `edits` in order. Returns whether anything changed; on error `config` is untouched.
pub fn apply(config: &mut DistributionConfig, edits: &[Edit]) -> Result<bool, ChangeError> {
    let mut origins = origins(config).to_vec();
    let mut touched: Vec<&str> = Vec::new();
    let mut changed = false;
    for edit in edits {
        match edit {
            Edit::Set {
                origin_id,
                name,
                value,
            } => {
                check_name(name)?;
                check_value(name, value)?;
                let origin = find_origin_mut(&mut origins, origin_id)
                    .ok_or_else(|| unknown_origin(config, origin_id))?;
                changed |= set_header(origin, name, value);
                touched.push(origin_id);
            }
            Edit::Remove { origin_id, name } => {
                if let Some(origin) = find_origin_mut(&mut origins, origin_id) {
                    changed |= remove_header(origin, name);
                }
            }
        }
    }
    for origin_id in touched {
        let origin = find_origin(&origins, origin_id).expect("touched origins exist");
        check_quotas(origin)?;
    }
    if changed {
        let all = config
            .origins
            .as_mut()
            .expect("an edited distribution has origins");
        all.items = origins;
    }
    Ok(changed)
}

fn set_header(origin: &mut Origin, name: &str, value: &str) -> bool {
    let mut items = headers(origin).to_vec();
    match items
        .iter_mut()
        .find(|header| header.header_name.eq_ignore_ascii_case(name))
    {
        Some(header) if header.header_name == name && header.header_value == value => return false,
        Some(header) => {
            header.header_name = name.to_owned();
            header.header_value = value.to_owned();
        }
        None => items.push(custom_header(name, value)),
    }
    store_headers(origin, items);
    true
}

fn remove_header(origin: &mut Origin, name: &str) -> bool {
    let mut items = headers(origin).to_vec();
    let before = items.len();
    items.retain(|header| !header.header_name.eq_ignore_ascii_case(name));
    if items.len() == before {
        return false;
    }
    store_headers(origin, items);
    true
}

fn check_quotas(origin: &Origin) -> Result<(), ChangeError> {
    let items = headers(origin);
    if items.len() > MAX_HEADERS_PER_ORIGIN {
        return Err(ChangeError::TooManyHeaders {
            origin_id: origin.id.clone(),
            count: items.len(),
        });
    }
    let total: usize = items
        .iter()
        .map(|h| h.header_name.len() + h.header_value.len())
        .sum();
    if total > MAX_TOTAL_LENGTH {
        return Err(ChangeError::TooLong {
            origin_id: origin.id.clone(),
            total,
        });
    }
    Ok(())
}

fn custom_header(name: &str, value: &str) -> OriginCustomHeader {
    OriginCustomHeader::builder()
        .header_name(name)
        .header_value(value)
        .build()
        .expect("name and value are set")
}

/// CloudFront wants `Quantity` to match and `Items` left out when there are none.
fn store_headers(origin: &mut Origin, items: Vec<OriginCustomHeader>) {
    let custom = CustomHeaders::builder()
        .quantity(items.len() as i32)
        .set_items((!items.is_empty()).then_some(items))
        .build()
        .expect("quantity is set");
    origin.custom_headers = Some(custom);
}

fn origins(config: &DistributionConfig) -> &[Origin] {
    config
        .origins
        .as_ref()
        .map(|origins| origins.items.as_slice())
        .unwrap_or_default()
}

fn headers(origin: &Origin) -> &[OriginCustomHeader] {
    origin
        .custom_headers
        .as_ref()
        .and_then(|custom| custom.items.as_deref())
        .unwrap_or_default()
}

fn find_origin<'a>(origins: &'a [Origin], origin_id: &str) -> Option<&'a Origin> {
    origins.iter().find(|origin| origin.id == origin_id)
}

fn find_origin_mut<'a>(origins: &'a mut [Origin], origin_id: &str) -> Option<&'a mut Origin> {
    origins.iter_mut().find(|origin| origin.id == origin_id)
}

fn unknown_origin(config: &DistributionConfig, origin_id: &str) -> ChangeError {
    ChangeError::UnknownOrigin {
        origin_id: origin_id.to_owned(),
        known: origins(config)
            .iter()
            .map(|origin| origin.id.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudfront::types::Origins;

    use super::*;

    fn origin(id: &str, headers: &[(&str, &str)]) -> Origin {
        let mut origin = Origin::builder()
            .id(id)
            .domain_name(format!("{id}.example.com"))
            .origin_path("/keep")
            .connection_attempts(3)
            .build()
            .unwrap();
        store_headers(
            &mut origin,
            headers.iter().map(|(n, v)| custom_header(n, v)).collect(),
        );
        origin
    }

    fn config(origins: Vec<Origin>) -> DistributionConfig {
        DistributionConfig::builder()
            .caller_reference("ref")
            .comment("keep me")
            .enabled(true)
            .origins(
                Origins::builder()
                    .quantity(origins.len() as i32)
                    .set_items(Some(origins))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn set(origin_id: &str, name: &str, value: &str) -> Edit {
        Edit::Set {
            origin_id: origin_id.into(),
            name: name.into(),
            value: value.into(),
        }
    }

    fn remove(origin_id: &str, name: &str) -> Edit {
        Edit::Remove {
            origin_id: origin_id.into(),
            name: name.into(),
        }
    }

    fn names_and_values(config: &DistributionConfig, origin_id: &str) -> Vec<(String, String)> {
        headers(find_origin(origins(config), origin_id).unwrap())
            .iter()
            .map(|h| (h.header_name.clone(), h.header_value.clone()))
            .collect()
    }

    fn sample() -> DistributionConfig {
        config(vec![
            origin("alb", &[("X-Other", "keep")]),
            origin("s3", &[("X-S3", "untouched")]),
        ])
    }

    #[test]
    fn adds_a_header_and_keeps_everything_else() {
        let mut cfg = sample();
        let before = cfg.clone();
        assert!(apply(&mut cfg, &[set("alb", "X-Origin-Verify", "abc")]).unwrap());
        assert_eq!(
            names_and_values(&cfg, "alb"),
            [
                ("X-Other".into(), "keep".into()),
                ("X-Origin-Verify".into(), "abc".into())
            ]
        );
        let quantity = find_origin(origins(&cfg), "alb")
            .unwrap()
            .custom_headers
            .as_ref()
            .unwrap()
            .quantity;
        assert_eq!(quantity, 2);
        assert_eq!(
            names_and_values(&cfg, "s3"),
            names_and_values(&before, "s3")
        );
        assert_eq!(cfg.comment, before.comment);
        let alb = find_origin(origins(&cfg), "alb").unwrap();
        assert_eq!(
            (alb.origin_path.as_deref(), alb.connection_attempts),
            (Some("/keep"), Some(3))
        );
    }

    /// Through a VPC origin (an internal load balancer) the origin has a VpcOriginConfig instead
    /// of a CustomOriginConfig; an update that dropped it would point CloudFront nowhere.
    #[test]
    fn keeps_a_vpc_origin_config() {
        use aws_sdk_cloudfront::types::VpcOriginConfig;
        let mut alb = origin("alb", &[("X-Origin-Verify", "old")]);
        alb.vpc_origin_config = Some(
            VpcOriginConfig::builder()
                .vpc_origin_id("vo_0123456789abcdef")
                .origin_read_timeout(30)
                .origin_keepalive_timeout(5)
                .build()
                .unwrap(),
        );
        let mut cfg = config(vec![alb.clone()]);
        assert!(apply(&mut cfg, &[set("alb", "X-Origin-Verify", "new")]).unwrap());
        let updated = find_origin(origins(&cfg), "alb").unwrap();
        assert_eq!(updated.vpc_origin_config, alb.vpc_origin_config);
        assert_eq!(updated.custom_origin_config, None);
        assert_eq!(
            names_and_values(&cfg, "alb"),
            [("X-Origin-Verify".into(), "new".into())]
        );
    }

    #[test]
    fn replaces_a_value_in_place_and_matches_names_case_insensitively() {
        let mut cfg = sample();
        assert!(apply(&mut cfg, &[set("alb", "x-other", "new")]).unwrap());
        assert_eq!(
            names_and_values(&cfg, "alb"),
            [("x-other".into(), "new".into())]
        );
    }

    #[test]
    fn setting_what_is_already_there_changes_nothing() {
        let mut cfg = sample();
        let before = cfg.clone();
        assert!(!apply(&mut cfg, &[set("alb", "X-Other", "keep")]).unwrap());
        assert_eq!(cfg, before);
    }

    #[test]
    fn renames_by_removing_the_old_header() {
        let mut cfg = sample();
        apply(&mut cfg, &[set("alb", "X-Old", "v")]).unwrap();
        assert!(
            apply(
                &mut cfg,
                &[remove("alb", "X-Old"), set("alb", "X-New", "v")]
            )
            .unwrap()
        );
        assert_eq!(
            names_and_values(&cfg, "alb"),
            [
                ("X-Other".into(), "keep".into()),
                ("X-New".into(), "v".into())
            ]
        );
    }

    #[test]
    fn removing_the_last_header_leaves_quantity_zero_without_items() {
        let mut cfg = sample();
        assert!(apply(&mut cfg, &[remove("alb", "X-Other")]).unwrap());
        let custom = find_origin(origins(&cfg), "alb")
            .unwrap()
            .custom_headers
            .clone()
            .unwrap();
        assert_eq!((custom.quantity, custom.items), (0, None));
        assert!(
            !apply(
                &mut cfg,
                &[remove("alb", "X-Other"), remove("gone", "X-Other")]
            )
            .unwrap()
        );
    }

    #[test]
    fn an_unknown_origin_lists_the_ids_that_exist() {
        let err = apply(&mut sample(), &[set("nope", "X-A", "v")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"the distribution has no origin with id "nope"; its origins are: "alb", "s3""#
        );
    }

    #[test]
    fn refuses_names_cloudfront_forbids_or_http_does_not_allow() {
        for name in [
            "Host",
            "via",
            "X-Amz-Date",
            "x-edge-thing",
            "X-Real-IP",
            "Upgrade",
            "X-Forwarded-For",
        ] {
            assert_eq!(
                check_name(name),
                Err(ChangeError::ForbiddenName(name.into())),
                "{name}"
            );
        }
        for name in ["", "Bad Name", "colon:", "ünicode"] {
            assert_eq!(
                check_name(name),
                Err(ChangeError::InvalidName(name.into())),
                "{name}"
            );
        }
        assert_eq!(
            check_name(&"x".repeat(257)),
            Err(ChangeError::NameTooLong("x".repeat(257)))
        );
        assert!(check_name("X-Origin-Verify").is_ok());
    }

    #[test]
    fn refuses_values_over_the_quota_without_echoing_them() {
        let long = "s".repeat(1784);
        let err = apply(&mut sample(), &[set("alb", "X-A", &long)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"the value for header "X-A" is longer than CloudFront's 1783 characters"#
        );
        assert!(matches!(
            apply(&mut sample(), &[set("alb", "X-A", "a\nb")]),
            Err(ChangeError::ControlCharacters(_))
        ));
    }

    #[test]
    fn refuses_an_eleventh_header_and_an_oversized_total_and_changes_nothing() {
        let many: Vec<(String, String)> =
            (0..10).map(|n| (format!("X-H{n}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let mut cfg = config(vec![origin("alb", &many)]);
        let before = cfg.clone();
        let err = apply(&mut cfg, &[set("alb", "X-Eleventh", "v")]).unwrap_err();
        assert_eq!(
            err,
            ChangeError::TooManyHeaders {
                origin_id: "alb".into(),
                count: 11
            }
        );
        assert_eq!(cfg, before, "nothing changed");

        let big = "v".repeat(1700);
        let edits: Vec<Edit> = (0..7)
            .map(|n| set("alb", &format!("X-B{n}"), &big))
            .collect();
        let mut cfg = sample();
        assert!(matches!(
            apply(&mut cfg, &edits),
            Err(ChangeError::TooLong { .. })
        ));
        assert_eq!(cfg, sample());
    }

    #[test]
    fn reads_a_header_value() {
        let cfg = sample();
        assert_eq!(header_value(&cfg, "alb", "x-other").unwrap(), Some("keep"));
        assert_eq!(header_value(&cfg, "alb", "X-None").unwrap(), None);
        assert!(header_value(&cfg, "nope", "X").is_err());
    }
}
