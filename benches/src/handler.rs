//! The FlowHandler every configuration calls: a minimal tonic server that
//! answers at once with a constant reply (or, for the fallback measurements,
//! after a delay longer than the budget), with `grpc.health.v1` as the bridge's
//! readiness check expects.

use std::{net::SocketAddr, time::Duration};

use flows_bridge::proto::{
    ExchangeRequest, ExchangeResponse,
    flow_handler_server::{FlowHandler, FlowHandlerServer},
};
use prost_types::{Struct, Value, value::Kind};
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

/// What the handler answers: the quote flow's PAYMENT step.
pub fn reply() -> ExchangeResponse {
    let mut data = Struct::default();
    data.fields.insert(
        "amount_mxn".into(),
        Value {
            kind: Some(Kind::NumberValue(499.0)),
        },
    );
    ExchangeResponse {
        screen: Some("PAYMENT".into()),
        data: Some(data),
    }
}

struct Minimal {
    reply: ExchangeResponse,
    delay: Option<Duration>,
}

#[tonic::async_trait]
impl FlowHandler for Minimal {
    async fn exchange(
        &self,
        _request: Request<ExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        Ok(Response::new(self.reply.clone()))
    }
}

pub async fn serve(listen: SocketAddr, delay: Option<Duration>) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<FlowHandlerServer<Minimal>>().await;
    let handler = Minimal {
        reply: reply(),
        delay,
    };
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(FlowHandlerServer::new(handler))
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await
        .map_err(|e| e.to_string())
}
