//! Chained and master calls at the actor level: no protocol creates them yet, so the test
//! drives the real registry and call actors through their messages.

mod support;

use actix::prelude::*;
use support::*;
use switchboard::call::messages::{AttachLeg, ChainError, Delivery, LegCommand, LegFormat};
use switchboard::call::state::EndCause;
use switchboard::registry::{AdmitError, CreateCall, FindCall, HangupCall, NewCall};
use tokio::sync::mpsc;
use uuid::Uuid;

/// A caller leg that reports what it is told and never closes by itself.
struct RecordingLeg {
    seen: mpsc::UnboundedSender<LegCommand>,
}

impl Actor for RecordingLeg {
    type Context = Context<Self>;
}

impl Handler<LegCommand> for RecordingLeg {
    type Result = ();
    fn handle(&mut self, msg: LegCommand, _ctx: &mut Context<Self>) {
        let _ = self.seen.send(msg);
    }
}

const FLOW: &str = r#"
[media]
leg_close_grace_ms = 60000
[bots.wait]
kind = "flow"
actions = [{ type = "sleep", duration = 600000 }]
[[routes]]
bot = "wait"
"#;

async fn create(app: &TestApp, reference: &str, master: Option<Uuid>) -> Result<Uuid, AdmitError> {
    let mut call = NewCall::incoming("api", reference);
    call.master_call_id = master;
    let handle = app
        .handle
        .registry
        .send(CreateCall { call })
        .await
        .expect("registry alive")?;
    Ok(handle.id)
}

async fn attach(app: &TestApp, id: Uuid) -> mpsc::UnboundedReceiver<LegCommand> {
    let (tx, rx) = mpsc::unbounded_channel();
    let leg = RecordingLeg { seen: tx }.start();
    let call = app
        .handle
        .registry
        .send(FindCall { id })
        .await
        .expect("registry alive")
        .expect("call is live");
    call.send(AttachLeg {
        leg: leg.recipient(),
        format: LegFormat {
            in_rate: 8000,
            out_rate: 8000,
            delivery: Delivery::Whole,
            plays_urls: false,
            plays_hold_music: true,
        },
    })
    .await
    .expect("call alive");
    rx
}

#[actix::test]
async fn master_hangup_hangs_up_chained_calls() {
    let app = spawn_app(FLOW);
    let master = create(&app, "master-1", None)
        .await
        .expect("master created");
    let child = create(&app, "child-1", Some(master))
        .await
        .expect("child chained");

    let m = app.call_by_reference("master-1").await;
    assert_eq!(m["chained_call_ids"][0], child.to_string());
    let c = app.call_by_reference("child-1").await;
    assert_eq!(c["master_call_id"], master.to_string());

    app.handle
        .registry
        .send(HangupCall {
            id: master,
            cause: EndCause::Normal,
            detail: "test".into(),
        })
        .await
        .unwrap()
        .unwrap();
    let c = app.wait_hangup("child-1").await;
    assert_eq!(c["hangup_reason"], "normal");
    let m = app.wait_hangup("master-1").await;
    assert_eq!(m["hangup_reason"], "normal");

    // A master that has ended takes no chained calls.
    let refused = create(&app, "child-2", Some(master)).await;
    assert!(
        matches!(refused, Err(AdmitError::Chain(ChainError::NoMaster(_)))),
        "{refused:?}"
    );
}

#[actix::test]
async fn chaining_onto_a_terminating_master_is_refused() {
    let app = spawn_app(FLOW);
    let master = create(&app, "master-2", None)
        .await
        .expect("master created");
    let mut leg = attach(&app, master).await;
    app.handle
        .registry
        .send(HangupCall {
            id: master,
            cause: EndCause::Normal,
            detail: "test".into(),
        })
        .await
        .unwrap()
        .unwrap();
    // The leg is told to end but does not close: the master stays terminating.
    loop {
        match tokio::time::timeout(PATIENCE, leg.recv())
            .await
            .expect("leg told")
        {
            Some(LegCommand::End { .. }) => break,
            Some(_) => continue,
            None => panic!("leg channel closed"),
        }
    }
    app.wait_for_call("master-2", |c| c["status"] == "terminating")
        .await;
    let refused = create(&app, "child-3", Some(master)).await;
    assert!(
        matches!(refused, Err(AdmitError::Chain(ChainError::MasterEnding(_)))),
        "{refused:?}"
    );
}
