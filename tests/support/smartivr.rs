//! A SmartIVR phone gateway, as a tonic client.

use switchboard::pb::smartivr::smart_ivr_phonegateway_client::SmartIvrPhonegatewayClient;
use switchboard::pb::smartivr::{
    Config as IvrConfig, SmartIvrRequest, SmartIvrResponse, SmartIvrResponseType,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::{TestApp, PATIENCE};

/// A SmartIVR phone gateway, as a tonic client.
pub struct Gateway {
    pub conversation_id: String,
    tx: Option<mpsc::Sender<SmartIvrRequest>>,
    responses: Streaming<SmartIvrResponse>,
}

impl Gateway {
    /// Opens a `CallToBot` stream whose first message carries config.
    pub async fn dial(app: &TestApp, conversation_id: &str) -> Gateway {
        let first = SmartIvrRequest {
            config: Some(IvrConfig {
                conversation_id: conversation_id.into(),
            }),
            ..Default::default()
        };
        Self::open_with(app, conversation_id, first)
            .await
            .expect("call accepted")
    }

    /// Opens a stream whose first message is `first`.
    pub async fn open_with(
        app: &TestApp,
        conversation_id: &str,
        first: SmartIvrRequest,
    ) -> Result<Gateway, tonic::Status> {
        Self::open_at(&app.grpc_url(), conversation_id, first).await
    }

    /// Opens a `CallToBot` stream with config on the switch at `grpc_url`.
    pub async fn dial_at(grpc_url: &str, conversation_id: &str) -> Result<Gateway, tonic::Status> {
        let first = SmartIvrRequest {
            config: Some(IvrConfig {
                conversation_id: conversation_id.into(),
            }),
            ..Default::default()
        };
        Self::open_at(grpc_url, conversation_id, first).await
    }

    /// Opens a stream whose first message is `first` on the switch at `grpc_url`.
    pub async fn open_at(
        grpc_url: &str,
        conversation_id: &str,
        first: SmartIvrRequest,
    ) -> Result<Gateway, tonic::Status> {
        let mut client = SmartIvrPhonegatewayClient::connect(grpc_url.to_owned())
            .await
            .expect("gRPC connects");
        let (tx, rx) = mpsc::channel(64);
        tx.send(first).await.expect("queue first message");
        let responses = client
            .call_to_bot(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Gateway {
            conversation_id: conversation_id.into(),
            tx: Some(tx),
            responses,
        })
    }

    fn config(&self) -> Option<IvrConfig> {
        Some(IvrConfig {
            conversation_id: self.conversation_id.clone(),
        })
    }

    pub async fn send(&self, msg: SmartIvrRequest) {
        if let Some(tx) = &self.tx {
            tx.send(msg).await.expect("gateway stream open");
        }
    }

    /// Presses one key, repeating config as real gateways do.
    pub async fn press(&self, key: &str) {
        self.send(SmartIvrRequest {
            config: self.config(),
            key_press: key.into(),
            ..Default::default()
        })
        .await;
    }

    /// Sends caller audio (s16le 8 kHz).
    pub async fn send_audio(&self, samples: &[i16]) {
        self.send(SmartIvrRequest {
            config: self.config(),
            audio_content: switchboard::media::pcm::encode_s16le(samples),
            ..Default::default()
        })
        .await;
    }

    /// The next response; `Ok(None)` when the stream ended cleanly.
    pub async fn next(&mut self) -> Result<Option<SmartIvrResponse>, tonic::Status> {
        tokio::time::timeout(PATIENCE, self.responses.message())
            .await
            .expect("the switch answered in time")
    }

    /// The next response, which must be of `kind`.
    pub async fn expect(&mut self, kind: SmartIvrResponseType) -> SmartIvrResponse {
        let r = self
            .next()
            .await
            .expect("stream healthy")
            .expect("stream still open");
        assert_eq!(
            r.r#type,
            kind as i32,
            "expected {kind:?}, got {:?} ({:?})",
            SmartIvrResponseType::try_from(r.r#type),
            r.text_bot
        );
        r
    }

    /// Waits for a RESULT_TTS whose text contains `text`.
    pub async fn expect_tts(&mut self, text: &str) -> SmartIvrResponse {
        let r = self.expect(SmartIvrResponseType::ResultTts).await;
        assert!(
            r.text_bot.contains(text),
            "expected {text:?} in {:?}",
            r.text_bot
        );
        r
    }

    /// Drops the gateway's side of the stream: the caller hangs up.
    pub fn hang_up(mut self) {
        self.tx = None;
        drop(self);
    }
}
