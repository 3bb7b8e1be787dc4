//! The built-in reference FlowHandler: the seed's quote flow. It backs the
//! quick-start demo and the tests, and is the behaviour every client in
//! `clients/` implements.
//!
//! - `init`: the WELCOME screen with the product list.
//! - `data_exchange` on WELCOME: with a valid product (and valid `email` /
//!   `postal_code` when given) the PAYMENT screen with the amount; otherwise
//!   WELCOME again with the products and `error_message`.
//! - `data_exchange` on PAYMENT: the SUCCESS screen.
//! - `back`: the WELCOME screen's data, restored.

use std::net::SocketAddr;

use prost_types::{ListValue, Struct, Value, value::Kind};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::proto::{
    Action, ExchangeRequest, ExchangeResponse,
    flow_handler_server::{FlowHandler, FlowHandlerServer},
};

/// The descriptor set of `proto/`, for gRPC reflection and protosets.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flows_descriptor.bin"));

pub struct Product {
    pub id: &'static str,
    pub title: &'static str,
    pub amount_mxn: f64,
}

pub const PRODUCTS: [Product; 2] = [
    Product {
        id: "p1",
        title: "Plan Básico",
        amount_mxn: 199.0,
    },
    Product {
        id: "p2",
        title: "Plan Premium",
        amount_mxn: 499.0,
    },
];

pub const ERROR_PRODUCT: &str = "Selecciona un producto válido";
pub const ERROR_EMAIL: &str = "El correo electrónico no es válido";
pub const ERROR_POSTAL_CODE: &str = "El código postal no es válido";

#[derive(Debug, Default, Clone, Copy)]
pub struct QuoteFlow;

#[tonic::async_trait]
impl FlowHandler for QuoteFlow {
    async fn exchange(
        &self,
        request: Request<ExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        answer(request.get_ref()).map(Response::new)
    }
}

/// The quote flow's answer to one step.
pub fn answer(request: &ExchangeRequest) -> Result<ExchangeResponse, Status> {
    let exchange = request
        .flow_exchange
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("flow_exchange is missing"))?;
    let payload = exchange.payload.clone().unwrap_or_default();
    let text = |key: &str| match payload.fields.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => Some(s.as_str()),
        _ => None,
    };
    match (exchange.action(), exchange.screen.as_deref()) {
        (Action::Init | Action::Back, _) => Ok(welcome(None)),
        (Action::DataExchange, Some("WELCOME")) => {
            let product =
                text("selected_product").and_then(|id| PRODUCTS.iter().find(|p| p.id == id));
            let Some(product) = product else {
                return Ok(welcome(Some(ERROR_PRODUCT)));
            };
            if text("email").is_some_and(|e| !valid_email(e)) {
                return Ok(welcome(Some(ERROR_EMAIL)));
            }
            if text("postal_code").is_some_and(|c| !valid_postal_code(c)) {
                return Ok(welcome(Some(ERROR_POSTAL_CODE)));
            }
            Ok(screen(
                "PAYMENT",
                [
                    ("product_id", string(product.id)),
                    ("product_title", string(product.title)),
                    ("amount_mxn", number(product.amount_mxn)),
                ],
            ))
        }
        (Action::DataExchange, Some("PAYMENT")) => Ok(screen(
            "SUCCESS",
            [(
                "acknowledged",
                Value {
                    kind: Some(Kind::BoolValue(true)),
                },
            )],
        )),
        (action, screen) => Err(Status::invalid_argument(format!(
            "the quote flow has no step for action {} on screen {}",
            action.as_str_name(),
            screen.unwrap_or("(none)")
        ))),
    }
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
    screen("WELCOME", fields)
}

/// `local@domain.tld`, no spaces: enough to catch typos, as a form would.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !email.contains(char::is_whitespace)
        && domain.split('.').count() >= 2
        && domain.split('.').all(|part| !part.is_empty())
}

/// Mexican postal codes: five digits.
fn valid_postal_code(code: &str) -> bool {
    code.len() == 5 && code.bytes().all(|b| b.is_ascii_digit())
}

fn screen<'a>(name: &str, fields: impl IntoIterator<Item = (&'a str, Value)>) -> ExchangeResponse {
    ExchangeResponse {
        screen: Some(name.to_owned()),
        data: Some(Struct {
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }),
    }
}

fn object<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value {
        kind: Some(Kind::StructValue(Struct {
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })),
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

/// Serves `handler` with `grpc.health.v1` (SERVING) and reflection (v1 and
/// v1alpha, so old and new grpcurl both work) until `shutdown` resolves.
pub async fn serve<H: FlowHandler>(
    listener: TcpListener,
    handler: H,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<FlowHandlerServer<H>>().await;
    let reflection = |builder: tonic_reflection::server::Builder<'static>| {
        builder.register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure()).build_v1();
    let reflection_v1alpha =
        reflection(tonic_reflection::server::Builder::configure()).build_v1alpha();
    let mut server = tonic::transport::Server::builder();
    let mut router = server
        .add_service(health)
        .add_service(FlowHandlerServer::new(handler));
    if let Ok(v1) = reflection_v1 {
        router = router.add_service(v1);
    }
    if let Ok(v1alpha) = reflection_v1alpha {
        router = router.add_service(v1alpha);
    }
    router
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// Binds `addr` and serves the quote flow on it; returns the bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::render;

    fn step(action: Action, screen: Option<&str>, payload: serde_json::Value) -> String {
        let request = ExchangeRequest {
            flow_exchange: Some(crate::proto::FlowExchange {
                action: action as i32,
                screen: screen.map(str::to_owned),
                payload: match payload {
                    serde_json::Value::Object(map) => Some(crate::delivery::to_struct(map)),
                    _ => None,
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let reply = answer(&request).unwrap();
        String::from_utf8(render(&reply).unwrap().to_vec()).unwrap()
    }

    const PRODUCTS_JSON: &str =
        r#"[{"id":"p1","title":"Plan Básico"},{"id":"p2","title":"Plan Premium"}]"#;

    #[test]
    fn init_lists_products() {
        let got = step(Action::Init, None, serde_json::json!({}));
        assert_eq!(
            got,
            format!(r#"{{"screen":"WELCOME","data":{{"products":{PRODUCTS_JSON}}}}}"#)
        );
    }

    #[test]
    fn advance_with_product_goes_to_payment() {
        let got = step(
            Action::DataExchange,
            Some("WELCOME"),
            serde_json::json!({"selected_product": "p2", "email": "juan@empresa.com"}),
        );
        assert_eq!(
            got,
            r#"{"screen":"PAYMENT","data":{"amount_mxn":499,"product_id":"p2","product_title":"Plan Premium"}}"#
        );
    }

    #[test]
    fn bad_values_stay_with_an_error() {
        for (payload, error) in [
            (serde_json::json!({"selected_product": "p9"}), ERROR_PRODUCT),
            (serde_json::json!({}), ERROR_PRODUCT),
            (
                serde_json::json!({"selected_product": "p1", "email": "juan@"}),
                ERROR_EMAIL,
            ),
            (
                serde_json::json!({"selected_product": "p1", "email": "juan empresa.com"}),
                ERROR_EMAIL,
            ),
            (
                serde_json::json!({"selected_product": "p1", "postal_code": "0600"}),
                ERROR_POSTAL_CODE,
            ),
            (
                serde_json::json!({"selected_product": "p1", "postal_code": "06G00"}),
                ERROR_POSTAL_CODE,
            ),
        ] {
            let got = step(Action::DataExchange, Some("WELCOME"), payload.clone());
            assert!(
                got.starts_with(r#"{"screen":"WELCOME""#),
                "{payload}: {got}"
            );
            assert!(
                got.contains(&format!(r#""error_message":"{error}""#)),
                "{payload}: {got}"
            );
        }
        let ok = step(
            Action::DataExchange,
            Some("WELCOME"),
            serde_json::json!({"selected_product": "p1", "postal_code": "06600"}),
        );
        assert!(ok.contains(r#""amount_mxn":199"#), "{ok}");
    }

    #[test]
    fn back_restores_welcome() {
        let got = step(Action::Back, Some("PAYMENT"), serde_json::json!({}));
        assert_eq!(
            got,
            format!(r#"{{"screen":"WELCOME","data":{{"products":{PRODUCTS_JSON}}}}}"#)
        );
    }

    #[test]
    fn payment_confirms() {
        let got = step(Action::DataExchange, Some("PAYMENT"), serde_json::json!({}));
        assert_eq!(got, r#"{"screen":"SUCCESS","data":{"acknowledged":true}}"#);
    }
}
