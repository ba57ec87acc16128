//! Property tests of every decoder that takes a peer's bytes: arbitrary input and mutated valid
//! input must never panic, errors are the modules' typed errors, and what comes out is bounded
//! by what went in.
//!
//! 256 cases per property by default (a few seconds); a long run:
//! `PROPTEST_CASES=100000 cargo test --release --test fuzz`.

use proptest::prelude::*;
use prost::Message;
use switchboard::api::calls_api::check_initiate_body;
use switchboard::limits::{MAX_ID_BYTES, MAX_KEYS_PER_MESSAGE, MAX_METADATA_BYTES};
use switchboard::media::wav;
use switchboard::media::{resample_all, MAX_RATE, MIN_RATE};
use switchboard::pb::live_call::{client_request, server_response, ClientRequest, ServerResponse};
use switchboard::pb::smartivr::{Config as IvrConfig, SmartIvrRequest};
use switchboard::protocols::live_call_grpc::convert as grpc;
use switchboard::protocols::live_call_ws::convert as ws;
use switchboard::protocols::ringover::convert as ringover;
use switchboard::protocols::smartivr::convert as smartivr;

/// One edit of a valid input.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bits: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Remove { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutate(mut bytes: Vec<u8>, edits: &[Mutation]) -> Vec<u8> {
    for edit in edits {
        let n = bytes.len().max(1);
        match edit {
            Mutation::Flip { at, bits } => {
                if let Some(b) = bytes.get_mut(at % n) {
                    *b ^= bits;
                }
            }
            Mutation::Set { at, byte } => {
                if let Some(b) = bytes.get_mut(at % n) {
                    *b = *byte;
                }
            }
            Mutation::Insert { at, bytes: more } => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, more.iter().copied());
            }
            Mutation::Remove { at, len } => {
                let at = at % n;
                let end = (at + len).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Mutation::Truncate { at } => bytes.truncate(at % n),
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..6)
}

/// Valid live-call WebSocket frames to mutate.
const WS_FRAMES: &[&str] = &[
    r#"{"initial_info":{"workspace_id":"w1","call_id":"c1","customer_phone_number":"+84900000001","type_call":"inbound","hotline":"1900","url_audio_file":""}}"#,
    r#"{"play_audio":{"sample_rate":8000,"sample_width":2,"num_channels":1,"duration":0.02,"audio_content":"AQACAAMABAA="}}"#,
    r#"{"play_audio":{"audio_content":"AQ\u0041CAA=="}}"#,
    r#"{"disconnect":{}}"#,
];

/// Valid Ringover text frames to mutate.
const RINGOVER_FRAMES: &[&str] = &[
    r#"{"event":"start","callId":"c-1","from":"+33100000000","to":"+33200000000","metadata":{"uuid":"u-1"}}"#,
    r#"{"event":"dtmf","digit":"5"}"#,
    r#"{"dtmf":"1#"}"#,
    r#"{"start":{"callSid":"s-1","data":{"x":[1,2,{"y":null}]}}}"#,
];

/// A valid WAV file of each encoding the reader accepts, to mutate.
fn valid_wavs() -> Vec<Vec<u8>> {
    let pcm16 = wav::encode(&[0, 1000, -1000, 32767, -32768, 5], 8000, 1);
    let stereo = wav::encode(&[1, 2, 3, 4, 5, 6], 16000, 2);
    // 8-bit mu-law: format 7.
    let mut ulaw = wav::encode(&[0; 4], 8000, 1);
    ulaw[20..22].copy_from_slice(&7u16.to_le_bytes());
    ulaw[34..36].copy_from_slice(&8u16.to_le_bytes());
    vec![pcm16, stereo, ulaw]
}

fn smartivr_request() -> impl Strategy<Value = SmartIvrRequest> {
    (
        any::<bool>(),
        prop_oneof![
            Just(String::new()),
            "[0-9*#A-D ]{0,40}",
            ".{0,64}",
            (0usize..2000).prop_map(|n| "1".repeat(n)),
        ],
        prop::option::of(prop_oneof![
            Just("c1".to_owned()),
            ".{0,200}".prop_map(String::from),
        ]),
        prop::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(
            |(is_playing, key_press, conversation, audio_content)| SmartIvrRequest {
                is_playing,
                key_press,
                config: conversation.map(|conversation_id| IvrConfig { conversation_id }),
                audio_content,
                timestamp: 0,
            },
        )
}

/// SmartIVR: what one message turns into is bounded, whatever it carries.
fn check_smartivr(msg: &SmartIvrRequest) {
    if let Ok(id) = smartivr::first_config(msg) {
        assert!(id.len() <= MAX_ID_BYTES);
    }
    let mut out = Vec::new();
    if smartivr::inbound(msg, "c1", &mut out).is_ok() {
        // At most the key limit of key events and one audio event of half the bytes.
        assert!(
            out.len() <= MAX_KEYS_PER_MESSAGE + 1,
            "{} events",
            out.len()
        );
        for event in &out {
            if let switchboard::call::messages::CallerEvent::Audio(samples) = event {
                assert_eq!(samples.len() * 2, msg.audio_content.len());
            }
        }
    }
}

/// live_call gRPC: a first message and an audio chunk decode within bounds.
fn check_live_call_request(request: &ClientRequest) {
    if let Ok(info) = grpc::first_info(request.clone()) {
        assert!(info.call_id.len() <= MAX_ID_BYTES);
    }
    if let Some(client_request::Data::PlayAudio(chunk)) = &request.data {
        if let Ok((rate, samples)) = grpc::client_chunk(chunk, 16000) {
            assert!(ws::ACCEPTED_RATES.contains(&rate));
            assert_eq!(samples.len() * 2, chunk.audio_content.len());
        }
    }
}

/// live-call JSON: a parsed frame's fields are within their limits and its audio is bounded.
fn check_ws_frame(text: &str) {
    match ws::parse(text) {
        Ok(ws::ClientFrame::InitialInfo(info)) => {
            assert!(info.call_id.len() <= MAX_ID_BYTES);
            assert!(info.customer_phone_number.len() <= 256);
        }
        Ok(ws::ClientFrame::PlayAudio(chunk)) => {
            if let Ok((rate, samples)) = ws::decode_audio(&chunk, &mut Vec::new()) {
                assert!(ws::ACCEPTED_RATES.contains(&rate));
                // base64: 3 bytes per 4 characters, 2 bytes per sample.
                assert!(samples.len() * 2 <= chunk.audio_content.len() * 3 / 4);
            }
        }
        Ok(ws::ClientFrame::Disconnect) | Err(_) => {}
    }
}

/// Ringover text: metadata, ids and keys within their limits.
fn check_ringover_text(text: &str) {
    let Ok(object) = ringover::parse_text(text) else {
        return;
    };
    assert!(text.len() <= MAX_METADATA_BYTES);
    if let Ok(info) = ringover::call_info(&object) {
        assert!(info.reference.is_none_or(|r| r.len() <= MAX_ID_BYTES));
        assert!(info.caller.is_none_or(|c| c.len() <= 256));
    }
    if let Ok(keys) = ringover::dtmf(&object) {
        assert!(keys.len() <= MAX_KEYS_PER_MESSAGE);
    }
}

/// WAV: a parsed file has a rate the switch converts and no more samples than bytes; it
/// resamples to a bounded length.
fn check_wav(bytes: &[u8], resample: bool) {
    let Ok(audio) = wav::parse(bytes) else {
        return;
    };
    assert!(
        (MIN_RATE..=MAX_RATE).contains(&audio.rate),
        "{}",
        audio.rate
    );
    assert!(audio.samples.len() <= bytes.len());
    if resample {
        let out = resample_all(&audio.samples, audio.rate, 8000).expect("rates in range");
        let expected = audio.samples.len() as u64 * 8000 / audio.rate as u64;
        assert_eq!(out.len() as u64, expected);
    }
}

proptest! {
    #[test]
    fn smartivr_protobuf_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(msg) = SmartIvrRequest::decode(&bytes[..]) {
            check_smartivr(&msg);
        }
    }

    #[test]
    fn smartivr_messages(msg in smartivr_request()) {
        check_smartivr(&msg);
    }

    #[test]
    fn smartivr_mutated_messages(msg in smartivr_request(), edits in edits()) {
        let bytes = mutate(msg.encode_to_vec(), &edits);
        if let Ok(msg) = SmartIvrRequest::decode(&bytes[..]) {
            check_smartivr(&msg);
        }
    }

    #[test]
    fn live_call_protobuf_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(request) = ClientRequest::decode(&bytes[..]) {
            check_live_call_request(&request);
        }
        if let Ok(response) = ServerResponse::decode(&bytes[..]) {
            if let Some(server_response::Data::AudioOutput(chunk)) = &response.data {
                if let Ok((rate, samples)) = grpc::server_chunk(chunk, 24000) {
                    prop_assert!(ws::ACCEPTED_RATES.contains(&rate));
                    prop_assert_eq!(samples.len() * 2, chunk.audio_content.len());
                }
            }
        }
    }

    #[test]
    fn live_call_mutated_requests(
        call_id in ".{0,200}",
        rate in prop_oneof![Just(0i32), Just(16000), any::<i32>()],
        audio in prop::collection::vec(any::<u8>(), 0..256),
        edits in edits(),
    ) {
        let info = ClientRequest {
            status: true,
            data: Some(client_request::Data::InitialInfo(
                switchboard::pb::live_call::InitialInfo { call_id, ..Default::default() },
            )),
        };
        let chunk = ClientRequest {
            status: true,
            data: Some(client_request::Data::PlayAudio(
                switchboard::pb::live_call::ClientAudioChunk {
                    sample_rate: rate,
                    audio_content: audio,
                    ..Default::default()
                },
            )),
        };
        for request in [info, chunk] {
            check_live_call_request(&request);
            let bytes = mutate(request.encode_to_vec(), &edits);
            if let Ok(request) = ClientRequest::decode(&bytes[..]) {
                check_live_call_request(&request);
            }
        }
    }

    #[test]
    fn live_call_json_strings(text in ".{0,512}") {
        check_ws_frame(&text);
    }

    #[test]
    fn live_call_json_mutated_frames(which in 0..WS_FRAMES.len(), edits in edits()) {
        let bytes = mutate(WS_FRAMES[which].as_bytes().to_vec(), &edits);
        check_ws_frame(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn live_call_json_generated_frames(
        call_id in ".{0,300}",
        rate in any::<u32>(),
        width in any::<u32>(),
        content in "[A-Za-z0-9+/=]{0,200}",
    ) {
        check_ws_frame(&serde_json::json!({"initial_info": {"call_id": call_id}}).to_string());
        check_ws_frame(&serde_json::json!({"play_audio": {
            "sample_rate": rate, "sample_width": width, "audio_content": content,
        }}).to_string());
    }

    #[test]
    fn ringover_text_strings(text in ".{0,512}") {
        check_ringover_text(&text);
    }

    #[test]
    fn ringover_mutated_metadata(which in 0..RINGOVER_FRAMES.len(), edits in edits()) {
        let bytes = mutate(RINGOVER_FRAMES[which].as_bytes().to_vec(), &edits);
        check_ringover_text(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn ringover_generated_metadata(
        id in ".{0,300}",
        from in ".{0,300}",
        keys in "[0-9*#]{0,100}",
        depth in 0usize..20,
    ) {
        let mut nested = serde_json::json!(1);
        for _ in 0..depth {
            nested = serde_json::json!({ "n": nested });
        }
        let metadata = serde_json::json!({
            "callId": id, "from": from, "dtmf": keys, "deep": nested,
        });
        check_ringover_text(&metadata.to_string());
    }

    #[test]
    fn ringover_rtp_and_l16(
        packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..400), 1..8),
    ) {
        let mut decoder = ringover::L16Decoder::default();
        let mut l16 = Vec::new();
        let mut total = 0;
        for packet in &packets {
            let mut out = Vec::new();
            let _ = ringover::decode_rtp(packet, &mut out);
            prop_assert!(out.len() <= packet.len().saturating_sub(ringover::RTP_HEADER));
            decoder.decode(packet, &mut l16);
            total += packet.len();
            prop_assert_eq!(l16.len(), total / 2);
        }
    }

    #[test]
    fn rtp_headers_with_valid_version(
        first in any::<u8>(),
        payload_type in prop_oneof![Just(0u8), Just(8u8), any::<u8>()],
        rest in prop::collection::vec(any::<u8>(), 10..300),
    ) {
        let mut packet = vec![0x80 | (first & 0x3f), payload_type];
        packet.extend(rest);
        let mut out = Vec::new();
        let _ = ringover::decode_rtp(&packet, &mut out);
        prop_assert!(out.len() <= packet.len() - ringover::RTP_HEADER);
    }

    #[test]
    fn wav_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        check_wav(&bytes, false);
    }

    #[test]
    fn wav_riff_prefixed_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut file = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        file.extend(bytes);
        check_wav(&file, false);
    }

    #[test]
    fn wav_mutated_headers(
        which in 0usize..3,
        header in prop::collection::vec((0usize..44, any::<u8>()), 1..6),
        edits in prop::collection::vec(mutation(), 0..3),
    ) {
        let mut bytes = valid_wavs().swap_remove(which);
        for (at, byte) in header {
            bytes[at] = byte;
        }
        check_wav(&mutate(bytes, &edits), true);
    }

    #[test]
    fn wav_declared_rates(rate in any::<u32>(), channels in any::<u16>(), bits in any::<u16>()) {
        let mut bytes = wav::encode(&[1, 2, 3, 4], 8000, 1);
        bytes[22..24].copy_from_slice(&channels.to_le_bytes());
        bytes[24..28].copy_from_slice(&rate.to_le_bytes());
        bytes[34..36].copy_from_slice(&bits.to_le_bytes());
        let parsed = wav::parse(&bytes);
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            prop_assert!(parsed.is_err());
        }
        check_wav(&bytes, false);
    }

    #[test]
    fn calls_api_bodies(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = check_initiate_body(&bytes);
    }

    #[test]
    fn calls_api_generated_bodies(
        target in ".{0,300}",
        reference in ".{0,200}",
        workspace in ".{0,200}",
        edits in prop::collection::vec(mutation(), 0..3),
    ) {
        let body = serde_json::json!({
            "destination": {"type": "tel", "target": target},
            "reference": reference,
            "workspace": workspace,
        });
        let within = target.len() <= 256 && reference.len() <= MAX_ID_BYTES && workspace.len() <= 128;
        let checked = check_initiate_body(body.to_string().as_bytes());
        prop_assert_eq!(checked.is_ok(), within, "{:?}", checked);
        if let Err(message) = &checked {
            prop_assert!(message.contains("is") && message.contains("limit"), "{}", message);
        }
        let _ = check_initiate_body(&mutate(body.to_string().into_bytes(), &edits));
    }
}
