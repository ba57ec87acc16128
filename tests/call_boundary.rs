//! What crosses the boundary between a caller leg and its call: a leg that ends tells its
//! call, once, however it ends.

mod support;

use std::time::{Duration, Instant};

use actix::prelude::*;
use support::*;
use switchboard::call::messages::{Delivery, LegCommand, LegFormat};
use switchboard::protocols::leg::CallLink;
use switchboard::registry::{CreateCall, NewCall};

/// A caller leg that ignores what it is told.
struct QuietLeg;

impl Actor for QuietLeg {
    type Context = Context<Self>;
}

impl Handler<LegCommand> for QuietLeg {
    type Result = ();
    fn handle(&mut self, _msg: LegCommand, _ctx: &mut Context<Self>) {}
}

const CONFIG: &str = r#"
[bots.wait]
kind = "flow"
actions = [{ type = "answer" }, { type = "sleep", duration = 600000 }]
[[routes]]
bot = "wait"
"#;

#[actix::test]
async fn a_session_that_ends_without_a_goodbye_ends_its_call_at_once() {
    let app = spawn_app(CONFIG);
    let handle = app
        .handle
        .registry
        .send(CreateCall {
            call: NewCall::incoming("api", "leg-dropped"),
        })
        .await
        .expect("registry alive")
        .expect("admitted");
    // A gRPC session holds its call through a `CallLink`; one stopped or dropped other than by
    // its peer's goodbye or its own hangup (its actor never started, its arbiter stopped)
    // used to leave the call to the media timeout.
    let link = CallLink::new(handle.addr, handle.id);
    link.attach(
        QuietLeg.start().recipient(),
        LegFormat {
            in_rate: 8000,
            out_rate: 8000,
            delivery: Delivery::Whole,
            plays_urls: false,
            plays_hold_music: false,
        },
    );
    app.wait_for_call("leg-dropped", |c| c["status"] == "progressing")
        .await;
    let dropped = Instant::now();
    drop(link);
    let call = app.wait_hangup("leg-dropped").await;
    assert!(
        dropped.elapsed() < Duration::from_secs(3),
        "{:?}",
        dropped.elapsed()
    );
    assert_eq!(call["hangup_reason"], "failed", "{call}");
    assert_eq!(call["hangup_by"], "local", "{call}");
    assert_eq!(
        call["hangup_detail"], "the caller's session ended without a hangup",
        "{call}"
    );
}
