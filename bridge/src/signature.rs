//! `X-Webhook-Signature: sha256=<hex>`, an HMAC-SHA256 of the raw body.
//!
//! Verification happens on the raw bytes, before any parsing, and is the only
//! way to get a [`VerifiedBody`], which is what the delivery parser takes.

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::secrets::Secrets;

type HmacSha256 = hmac::Hmac<Sha256>;

const PREFIX: &str = "sha256=";
const TAG_LEN: usize = 32;

/// Why a signature was refused. Each maps to its own rejection reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Webhook-Signature header is missing")]
    Missing,
    #[error("the X-Webhook-Signature header is not of the form sha256=<64 hex digits>")]
    Malformed,
    #[error("the X-Webhook-Signature does not match the body")]
    Mismatch,
}

/// A body whose signature checked out (or, in insecure development mode, that
/// was let through unchecked: see [`VerifiedBody::unchecked`]).
#[derive(Debug, Clone)]
pub struct VerifiedBody(Bytes);

impl VerifiedBody {
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// For the explicit insecure development switch only.
    pub fn unchecked(body: Bytes) -> VerifiedBody {
        VerifiedBody(body)
    }
}

/// Checks `header` against every active secret, in constant time per secret
/// (`Mac::verify_slice` compares the whole tag and checks its length).
pub fn verify(
    secrets: &Secrets,
    body: Bytes,
    header: Option<&[u8]>,
) -> Result<VerifiedBody, SignatureError> {
    let tag = parse_header(header.ok_or(SignatureError::Missing)?)?;
    let matched = secrets.iter().any(|secret| {
        // Hmac accepts keys of any length, so this cannot fail.
        HmacSha256::new_from_slice(secret.expose())
            .map(|mac| mac.chain_update(&body).verify_slice(&tag).is_ok())
            .unwrap_or(false)
    });
    if matched {
        Ok(VerifiedBody(body))
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// `sha256=` followed by exactly 64 hex digits (either case). Spaces and tabs
/// around it are tolerated, as HTTP allows them around header values; no
/// other whitespace is.
fn parse_header(header: &[u8]) -> Result<[u8; TAG_LEN], SignatureError> {
    let value = std::str::from_utf8(header)
        .map_err(|_| SignatureError::Malformed)?
        .trim_matches([' ', '\t']);
    let hex_tag = value
        .strip_prefix(PREFIX)
        .ok_or(SignatureError::Malformed)?;
    let mut tag = [0u8; TAG_LEN];
    hex::decode_to_slice(hex_tag, &mut tag).map_err(|_| SignatureError::Malformed)?;
    Ok(tag)
}

/// The header value Platica would send for `body` signed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mac = HmacSha256::new_from_slice(secret)
        .map(|mac| mac.chain_update(body).finalize().into_bytes())
        .unwrap_or_default();
    format!("{PREFIX}{}", hex::encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answer, computed independently with
    // printf '%s' '{"id":"1"}' | openssl dgst -sha256 -hmac topsecret
    const BODY: &[u8] = br#"{"id":"1"}"#;
    const SECRET: &str = "topsecret";
    const KNOWN: &str = "sha256=b978efb9b468cf10b2d7ec69e80520b7e8fa2c81b9a18092b44829b352702a94";

    fn check(secrets: &str, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
        verify(
            &Secrets::from_list(secrets),
            Bytes::copy_from_slice(body),
            header.map(str::as_bytes),
        )
        .map(|_| ())
    }

    #[test]
    fn known_answer() {
        assert_eq!(sign(SECRET.as_bytes(), BODY), KNOWN);
        assert_eq!(check(SECRET, BODY, Some(KNOWN)), Ok(()));
    }

    #[test]
    fn uppercase_hex_and_surrounding_space_are_accepted() {
        let upper = format!("sha256={}", KNOWN[7..].to_uppercase());
        assert_eq!(check(SECRET, BODY, Some(&upper)), Ok(()));
        assert_eq!(check(SECRET, BODY, Some(&format!(" {KNOWN} "))), Ok(()));
    }

    #[test]
    fn any_active_secret_verifies() {
        assert_eq!(check("old,topsecret", BODY, Some(KNOWN)), Ok(()));
        assert_eq!(check("topsecret,new", BODY, Some(KNOWN)), Ok(()));
    }

    #[test]
    fn negative_vectors() {
        use SignatureError::*;
        let cases: &[(&str, Option<&str>, &[u8], SignatureError)] = &[
            ("no header", None, BODY, Missing),
            ("empty", Some(""), BODY, Malformed),
            ("prefix only", Some("sha256="), BODY, Malformed),
            ("no prefix", Some(&KNOWN[7..]), BODY, Malformed),
            (
                "wrong algorithm",
                Some("sha1=b978efb9b468cf10b2d7ec69e80520b7e8fa2c81"),
                BODY,
                Malformed,
            ),
            (
                "uppercase prefix",
                Some("SHA256=b978efb9b468cf10b2d7ec69e80520b7e8fa2c81b9a18092b44829b352702a94"),
                BODY,
                Malformed,
            ),
            (
                "truncated",
                Some(&KNOWN[..KNOWN.len() - 2]),
                BODY,
                Malformed,
            ),
            (
                "odd length",
                Some(&KNOWN[..KNOWN.len() - 1]),
                BODY,
                Malformed,
            ),
            (
                "too long",
                Some("sha256=b978efb9b468cf10b2d7ec69e80520b7e8fa2c81b9a18092b44829b352702a9400"),
                BODY,
                Malformed,
            ),
            (
                "not hex",
                Some("sha256=z978efb9b468cf10b2d7ec69e80520b7e8fa2c81b9a18092b44829b352702a94"),
                BODY,
                Malformed,
            ),
            (
                "two signatures",
                Some(
                    "sha256=b978efb9b468cf10b2d7ec69e80520b7e8fa2c81b9a18092b44829b352702a94,sha256=00",
                ),
                BODY,
                Malformed,
            ),
            ("other body", Some(KNOWN), br#"{"id":"2"}"#, Mismatch),
            (
                "body with trailing newline",
                Some(KNOWN),
                b"{\"id\":\"1\"}\n",
                Mismatch,
            ),
            (
                "flipped bit",
                Some("sha256=c978efb9b468cf10b2d7ec69e80520b7e8fa2c81b9a18092b44829b352702a94"),
                BODY,
                Mismatch,
            ),
            (
                "all zero",
                Some("sha256=0000000000000000000000000000000000000000000000000000000000000000"),
                BODY,
                Mismatch,
            ),
        ];
        for (name, header, body, want) in cases {
            assert_eq!(check(SECRET, body, *header), Err(*want), "{name}");
        }
    }

    #[test]
    fn other_secret_is_a_mismatch() {
        assert_eq!(
            check("not-the-secret", BODY, Some(KNOWN)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn non_utf8_header_is_malformed() {
        let header = b"sha256=\xff\xfe";
        let got = verify(
            &Secrets::from_list(SECRET),
            Bytes::from_static(BODY),
            Some(header),
        );
        assert_eq!(got.map(|_| ()), Err(SignatureError::Malformed));
    }

    #[test]
    fn empty_body_signs_and_verifies() {
        let header = sign(SECRET.as_bytes(), b"");
        assert_eq!(check(SECRET, b"", Some(&header)), Ok(()));
    }
}
