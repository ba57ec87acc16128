//! An echo AI service speaking `live_call.LiveCall`: every `play_audio` chunk comes straight
//! back as `audio_output` at the same rate. A real peer for demos, tests and load runs
//! (`switchboard echo-bot`), not part of the switch's call path.

use std::net::SocketAddr;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::pb::live_call::health_check_response::ServingStatus;
use crate::pb::live_call::live_call_server::{LiveCall, LiveCallServer};
use crate::pb::live_call::{
    client_request, server_response, ClientRequest, HealthCheckRequest, HealthCheckResponse,
    ServerAudioChunk, ServerResponse,
};

/// The echo service.
#[derive(Debug, Default, Clone)]
pub struct EchoService;

#[tonic::async_trait]
impl LiveCall for EchoService {
    type StreamCallStream = ReceiverStream<Result<ServerResponse, Status>>;

    async fn stream_call(
        &self,
        request: Request<Streaming<ClientRequest>>,
    ) -> Result<Response<Self::StreamCallStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                match msg.data {
                    Some(client_request::Data::PlayAudio(chunk)) => {
                        let reply = ServerResponse {
                            status: true,
                            data: Some(server_response::Data::AudioOutput(ServerAudioChunk {
                                sample_rate: chunk.sample_rate,
                                sample_width: chunk.sample_width,
                                num_channels: chunk.num_channels,
                                duration: chunk.duration,
                                audio_content: chunk.audio_content,
                            })),
                        };
                        if tx.send(Ok(reply)).await.is_err() {
                            break;
                        }
                    }
                    Some(client_request::Data::Disconnect(_)) => break,
                    _ => {}
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }
}

/// Serves the echo service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(LiveCallServer::new(EchoService))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

/// Binds `addr` and serves until Ctrl-C.
pub async fn run(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("echo AI service on {}", listener.local_addr()?);
    serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
