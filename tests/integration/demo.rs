//! The README's first command: `flows-bridge demo` must work and show what it
//! promises: the seed's replies, an error branch, a duplicate, a rejection and
//! the fallback.

use std::process::Command;

use crate::support::BIN;

#[test]
fn the_demo_shows_replies_a_rejection_and_the_fallback() {
    let output = Command::new(BIN).arg("demo").env_clear().output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for expected in [
        r#"< 200 OK"#,
        r#"{"screen":"WELCOME","data":{"products":[{"id":"p1","title":"Plan Básico"},{"id":"p2","title":"Plan Premium"}]}}"#,
        r#"{"screen":"PAYMENT","data":{"amount_mxn":499,"product_id":"p2","product_title":"Plan Premium"}}"#,
        r#""error_message":"El correo electrónico no es válido""#,
        r#"< 401 Unauthorized"#,
        r#"{"error":"signature_mismatch""#,
        r#"{"data":{"acknowledged":true}}"#,
        r#"flows_bridge_fallbacks_total{reason="upstream_unavailable"} 1"#,
        r#"flows_bridge_duplicates_total 1"#,
    ] {
        assert!(
            stdout.contains(expected),
            "{expected} missing from:\n{stdout}"
        );
    }
    // The demo's own output never carries the secret it generated.
    assert!(!stdout.contains("--secret"), "{stdout}");
}
