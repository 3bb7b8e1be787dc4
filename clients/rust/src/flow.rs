//! The quote flow: which screen and data answer each step. Pure functions of
//! the request, so the rules can be read (and tested) without gRPC.

use prost_types::{ListValue, Struct, Value, value::Kind};

use crate::proto::{Action, ExchangeRequest, ExchangeResponse};

/// A product the user can pick on WELCOME.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Product {
    pub id: &'static str,
    pub title: &'static str,
    pub amount_mxn: u32,
}

/// The catalogue, in the order WELCOME lists it.
pub const PRODUCTS: [Product; 2] = [
    Product {
        id: "p1",
        title: "Plan Básico",
        amount_mxn: 199,
    },
    Product {
        id: "p2",
        title: "Plan Premium",
        amount_mxn: 499,
    },
];

pub const ERROR_PRODUCT: &str = "Selecciona un producto válido";
pub const ERROR_EMAIL: &str = "El correo electrónico no es válido";
pub const ERROR_POSTAL_CODE: &str = "El código postal no es válido";

/// The quote flow has no step for this request: the service answers
/// `INVALID_ARGUMENT` and the bridge falls back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoStep(pub String);

impl std::fmt::Display for NoStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoStep {}

/// The quote flow's reply to one step.
pub fn answer(request: &ExchangeRequest) -> Result<ExchangeResponse, NoStep> {
    let exchange = request
        .flow_exchange
        .as_ref()
        .ok_or_else(|| NoStep("flow_exchange is missing".to_owned()))?;
    let payload = exchange.payload.as_ref();
    // A payload value when it is a string; absent and non-string values alike
    // are `None` (a number is not a product, a non-string email is ignored).
    let text = |key: &str| match payload
        .and_then(|p| p.fields.get(key))
        .and_then(|v| v.kind.as_ref())
    {
        Some(Kind::StringValue(s)) => Some(s.as_str()),
        _ => None,
    };

    match (exchange.action(), exchange.screen.as_deref()) {
        (Action::Init | Action::Back, _) => Ok(welcome(None)),
        (Action::DataExchange, Some("WELCOME")) => {
            let Some(product) = text("selected_product").and_then(product) else {
                return Ok(welcome(Some(ERROR_PRODUCT)));
            };
            if text("email").is_some_and(|email| !valid_email(email)) {
                return Ok(welcome(Some(ERROR_EMAIL)));
            }
            if text("postal_code").is_some_and(|code| !valid_postal_code(code)) {
                return Ok(welcome(Some(ERROR_POSTAL_CODE)));
            }
            Ok(reply(
                "PAYMENT",
                [
                    ("product_id", string(product.id)),
                    ("product_title", string(product.title)),
                    // Struct numbers are doubles; the bridge renders whole
                    // ones as JSON integers (499, not 499.0).
                    ("amount_mxn", number(f64::from(product.amount_mxn))),
                ],
            ))
        }
        (Action::DataExchange, Some("PAYMENT")) => Ok(reply(
            "SUCCESS",
            [(
                "acknowledged",
                Value {
                    kind: Some(Kind::BoolValue(true)),
                },
            )],
        )),
        (action, screen) => Err(NoStep(format!(
            "the quote flow has no step for action {} on screen {}",
            action.as_str_name(),
            screen.unwrap_or("(none)")
        ))),
    }
}

/// The product with exactly this id (case-sensitive).
pub fn product(id: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.id == id)
}

/// `local@domain.tld` with no whitespace: enough to catch typos, as a form
/// would. Whitespace is Unicode `White_Space` (`char::is_whitespace`): U+00A0
/// counts, U+FEFF does not.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !email.contains(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|part| !part.is_empty())
}

/// Mexican postal codes: exactly five ASCII digits (no other Unicode digits).
pub fn valid_postal_code(code: &str) -> bool {
    code.len() == 5 && code.bytes().all(|b| b.is_ascii_digit())
}

fn welcome(error: Option<&str>) -> ExchangeResponse {
    let products = PRODUCTS
        .iter()
        .map(|p| object([("id", string(p.id)), ("title", string(p.title))]))
        .collect();
    let mut fields = vec![(
        "products",
        Value {
            kind: Some(Kind::ListValue(ListValue { values: products })),
        },
    )];
    if let Some(error) = error {
        fields.push(("error_message", string(error)));
    }
    reply("WELCOME", fields)
}

fn reply<'a>(screen: &str, data: impl IntoIterator<Item = (&'a str, Value)>) -> ExchangeResponse {
    ExchangeResponse {
        screen: Some(screen.to_owned()),
        data: Some(fields(data)),
    }
}

fn fields<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>) -> Struct {
    Struct {
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

fn object<'a>(data: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value {
        kind: Some(Kind::StructValue(fields(data))),
    }
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

fn number(n: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_emails() {
        for email in [
            "juan@empresa.com",
            "a@b.c",
            "a.b+c@sub.example.mx",
            "a@b@c.com", // split at the first @: domain `b@c.com`
            "ñ@dominio.mx",
            "juan\u{feff}@empresa.com", // U+FEFF is not White_Space
            "juan\u{1f}@empresa.com",   // nor is U+001F
        ] {
            assert!(valid_email(email), "{email:?}");
        }
    }

    #[test]
    fn invalid_emails() {
        for email in [
            "",
            "juan",
            "juan@",
            "@empresa.com",
            "juan@empresa",
            "juan@empresa.",
            "juan@.com",
            "juan@empresa..com",
            "juan @empresa.com",
            "juan@empresa.com ",
            "juan\t@empresa.com",
            "juan\u{a0}@empresa.com",
            "juan\u{3000}@empresa.com",
            "juan\u{2028}@empresa.com",
        ] {
            assert!(!valid_email(email), "{email:?}");
        }
    }

    #[test]
    fn postal_codes() {
        for code in ["06600", "00000", "99999"] {
            assert!(valid_postal_code(code), "{code:?}");
        }
        for code in [
            "",
            "0660",
            "066000",
            "06G00",
            " 6600",
            "０６６００",
            "٠٦٦٠٠",
        ] {
            assert!(!valid_postal_code(code), "{code:?}");
        }
    }

    #[test]
    fn product_ids_are_case_sensitive() {
        assert_eq!(product("p1").map(|p| p.amount_mxn), Some(199));
        assert_eq!(product("p2").map(|p| p.amount_mxn), Some(499));
        assert_eq!(product("P1"), None);
        assert_eq!(product(""), None);
    }

    #[test]
    fn no_flow_exchange_is_no_step() {
        assert!(answer(&ExchangeRequest::default()).is_err());
    }
}
