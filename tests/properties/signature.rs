//! Property (4): a signature made with a secret verifies with it, and with
//! nothing else; any header gets the documented answer.

use bytes::Bytes;
use flows_bridge::{
    secrets::Secrets,
    signature::{self, SignatureError},
};
use proptest::prelude::*;

use crate::{oracle, strategies::any_string};

/// A secret as the configuration can hold one: no surrounding blanks, not
/// empty (the list parsers drop those).
fn secret() -> impl Strategy<Value = String> {
    any_string()
        .prop_map(|s| s.trim().to_owned())
        .prop_filter("a configured secret is never blank", |s| !s.is_empty())
}

fn secrets(list: &[String]) -> Secrets {
    Secrets::from_iter(list.iter().map(String::as_str))
}

fn verify(secrets: &Secrets, body: &[u8], header: Option<&[u8]>) -> Result<(), SignatureError> {
    signature::verify(secrets, Bytes::copy_from_slice(body), header).map(|_| ())
}

fn tags(list: &[String], body: &[u8]) -> Vec<String> {
    list.iter()
        .map(|s| signature::sign(s.as_bytes(), body)["sha256=".len()..].to_owned())
        .collect()
}

proptest! {
    /// Signed with any active secret (one of several during a rotation), any
    /// body verifies, and the verified body is the body.
    #[test]
    fn sign_then_verify(
        list in prop::collection::vec(secret(), 1..4),
        pick in any::<prop::sample::Index>(),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let signer = pick.get(&list);
        let header = signature::sign(signer.as_bytes(), &body);
        let verified = signature::verify(&secrets(&list), Bytes::copy_from_slice(&body), Some(header.as_bytes()));
        prop_assert_eq!(verified.map(|v| v.bytes().clone()), Ok(Bytes::copy_from_slice(&body)));
    }

    /// Any other secret, or no secret at all, never verifies it.
    #[test]
    fn another_secret_never_verifies(
        signer in secret(),
        others in prop::collection::vec(secret(), 0..3),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let others: Vec<String> = others.into_iter().filter(|o| *o != signer).collect();
        let header = signature::sign(signer.as_bytes(), &body);
        prop_assert_eq!(
            verify(&secrets(&others), &body, Some(header.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    /// Any other body (a changed, added or removed byte anywhere) never verifies.
    #[test]
    fn another_body_never_verifies(
        signer in secret(),
        body in prop::collection::vec(any::<u8>(), 0..128),
        edit in (0u8..3, any::<prop::sample::Index>(), 1u8..=255),
    ) {
        let header = signature::sign(signer.as_bytes(), &body);
        let mut other = body.clone();
        let (op, at, byte) = edit;
        match op {
            0 if !other.is_empty() => { let i = at.index(other.len()); other[i] ^= byte; }
            1 if !other.is_empty() => { other.remove(at.index(other.len())); }
            _ => other.insert(at.index(other.len() + 1), byte),
        }
        prop_assert_ne!(&other, &body);
        prop_assert_eq!(
            verify(&secrets(&[signer]), &other, Some(header.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    /// Any header, and any edit of a valid one, gets the documented answer:
    /// equivalent forms (hex in either case, surrounding whitespace) verify,
    /// everything else is `Malformed` or `Mismatch`.
    #[test]
    fn any_header_gets_the_documented_answer(
        signer in secret(),
        body in prop::collection::vec(any::<u8>(), 0..64),
        edits in prop::collection::vec((0u8..5, any::<prop::sample::Index>(), any::<char>()), 0..3),
        random in prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
    ) {
        let mut header: Vec<char> = signature::sign(signer.as_bytes(), &body).chars().collect();
        for (op, at, c) in edits {
            match op {
                0 => header.iter_mut().for_each(|h| *h = h.to_ascii_uppercase()),
                1 => { header.insert(0, ' '); header.push('\t'); }
                2 if !header.is_empty() => { let i = at.index(header.len()); header[i] = c; }
                3 if !header.is_empty() => { header.remove(at.index(header.len())); }
                _ => header.insert(at.index(header.len() + 1), c),
            }
        }
        let header: Vec<u8> = random.unwrap_or_else(|| String::from_iter(header).into_bytes());
        let list = [signer];
        let want = oracle::expected_signature(Some(&header), &tags(&list, &body));
        prop_assert_eq!(verify(&secrets(&list), &body, Some(&header)), want);
    }
}
