//! The conformance vectors of tests/vectors (embedded at build time, or read
//! from a directory): a delivery, an optional JSON merge patch, and the reply
//! the bridge must answer.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::{sender, tools::BoxError};

include!(concat!(env!("OUT_DIR"), "/vectors.rs"));

/// One case of tests/vectors/cases.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub name: String,
    /// A file name in tests/vectors/deliveries.
    pub delivery: String,
    #[serde(default)]
    pub patch: Option<Json>,
    #[serde(skip)]
    pub expect_body: Json,
    #[serde(skip)]
    pub expect_status: u16,
    #[serde(skip)]
    deliveries: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Expect {
    status: u16,
    body: Json,
}

#[derive(Deserialize)]
struct CaseFile {
    #[serde(flatten)]
    case: Case,
    expect: Expect,
}

impl Case {
    fn parse(name: &str, text: &str, deliveries: &[(String, String)]) -> Result<Case, BoxError> {
        let file: CaseFile = serde_json::from_str(text).map_err(|e| format!("{name}: {e}"))?;
        let mut case = file.case;
        case.expect_body = file.expect.body;
        case.expect_status = file.expect.status;
        case.deliveries = deliveries.to_vec();
        Ok(case)
    }

    /// The delivery to send: the named one, patched, with a fresh id and timestamp.
    pub fn delivery(&self) -> Result<Json, BoxError> {
        let (_, text) = self
            .deliveries
            .iter()
            .find(|(name, _)| *name == self.delivery)
            .ok_or_else(|| format!("{}: no delivery {}", self.name, self.delivery))?;
        let mut delivery: Json = serde_json::from_str(text)?;
        if let Some(patch) = &self.patch {
            json_patch::merge(&mut delivery, patch);
        }
        Ok(sender::refresh(delivery))
    }
}

/// The cases built into this binary.
pub fn embedded() -> Result<Vec<Case>, BoxError> {
    let deliveries: Vec<(String, String)> = VECTOR_DELIVERIES
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    VECTOR_CASES
        .iter()
        .map(|(name, text)| Case::parse(name, text, &deliveries))
        .collect()
}

/// The cases of `dir` (a `cases/` directory next to its `deliveries/`).
pub fn read_dir(dir: &Path) -> Result<Vec<Case>, BoxError> {
    let read_json_files = |dir: &Path| -> Result<Vec<(String, String)>, BoxError> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                files.push((name, std::fs::read_to_string(&path)?));
            }
        }
        files.sort();
        Ok(files)
    };
    let deliveries = read_json_files(&dir.join("../deliveries"))?;
    read_json_files(dir)?
        .iter()
        .map(|(name, text)| Case::parse(name, text, &deliveries))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_cases_parse_and_patch() {
        let cases = embedded().unwrap();
        assert!(cases.len() >= 4, "{}", cases.len());
        for case in &cases {
            let delivery = case.delivery().unwrap();
            assert!(
                delivery["id"].is_string() && delivery["data"]["flowExchange"].is_object(),
                "{}",
                case.name
            );
            assert_eq!(case.expect_status, 200, "{}", case.name);
        }
        let seed = cases
            .iter()
            .find(|c| c.name == "seed_screen_advance_full")
            .unwrap();
        assert_eq!(
            seed.delivery().unwrap()["data"]["client"]["email"],
            "juan@empresa.com"
        );
    }

    #[test]
    fn the_reference_handler_passes_every_embedded_case() {
        let fallback: Json = serde_json::from_str(crate::config::DEFAULT_FALLBACK).unwrap();
        for case in embedded().unwrap() {
            let body = case.delivery().unwrap().to_string();
            let request = crate::tools::to_request(
                body.as_bytes(),
                None,
                std::time::Duration::from_millis(600),
            )
            .unwrap();
            let answer = match crate::quote::answer(&request) {
                Ok(reply) => {
                    serde_json::from_slice(&crate::reply::render(&reply).unwrap()).unwrap()
                }
                Err(_) => fallback.clone(),
            };
            assert_eq!(answer, case.expect_body, "{}", case.name);
        }
    }
}
