//! `signature::verify` and `signature::sign` against the documented contract
//! (`oracle::expected_signature`).
//!
//! Input, one field per line: the configured secrets (comma-separated, as in
//! FLOWS_BRIDGE_SECRET), the header, then the body (the rest, any bytes). A
//! header line starting with `@` is an XOR mask over the header Platica would
//! send for this body, so mutations explore headers next to a valid one (a
//! mask of zero bytes is the valid header itself).

#![no_main]

use bytes::Bytes;
use flows_bridge::{
    secrets::Secrets,
    signature::{self, SignatureError},
};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/properties/oracle.rs"]
mod oracle;

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (secrets_line, rest) = split_line(data);
    let (header_line, body) = split_line(rest);
    let secrets = Secrets::from_list(&String::from_utf8_lossy(secrets_line));
    let body = Bytes::copy_from_slice(body);
    let tags: Vec<String> = secrets
        .iter()
        .map(|s| signature::sign(s.expose(), &body)["sha256=".len()..].to_owned())
        .collect();
    let verify = |header: Option<&[u8]>, body: &Bytes| {
        signature::verify(&secrets, body.clone(), header).map(|v| {
            assert_eq!(v.bytes(), body, "the verified body is the body");
        })
    };

    // Any header: the documented answer.
    let header: Vec<u8> = match header_line.strip_prefix(b"@") {
        Some(mask) => {
            let valid = match secrets.iter().next() {
                Some(first) => signature::sign(first.expose(), &body).into_bytes(),
                None => signature::sign(b"", &body).into_bytes(),
            };
            let len = valid.len().max(mask.len());
            (0..len)
                .map(|i| valid.get(i).copied().unwrap_or(0) ^ mask.get(i).copied().unwrap_or(0))
                .collect()
        }
        None => header_line.to_vec(),
    };
    assert_eq!(
        verify(Some(&header), &body),
        oracle::expected_signature(Some(&header), &tags),
        "header {:?}",
        String::from_utf8_lossy(&header)
    );
    assert_eq!(verify(None, &body), Err(SignatureError::Missing));

    // What `sign` makes verifies, with every active secret; no other body
    // verifies with it.
    for secret in secrets.iter() {
        let signed = signature::sign(secret.expose(), &body);
        assert_eq!(verify(Some(signed.as_bytes()), &body), Ok(()));
        let mut other = body.to_vec();
        match other.len() {
            0 => other.push(0),
            n => other[header.len() % n] ^= 1 << (header.len() % 8),
        }
        assert_eq!(
            verify(Some(signed.as_bytes()), &Bytes::from(other)),
            Err(SignatureError::Mismatch)
        );
    }
    // With no secret nothing verifies, not even a signature with an empty key.
    if secrets.is_empty() {
        let signed = signature::sign(b"", &body);
        assert_eq!(
            verify(Some(signed.as_bytes()), &body),
            Err(SignatureError::Mismatch)
        );
    }
});
