//! A transfer the caller's side could not make (`CallerEvent::TransferRefused`): a SIP peer
//! that does not take REFER, refuses it, or whose new call failed. The call is still up.

use actix::prelude::*;

use super::state::{Address, EndCause};
use super::CallActor;

impl CallActor {
    /// The caller's side refused the transfer to `destination`: the call ends `failed`.
    pub(super) fn transfer_refused(
        &mut self,
        destination: Address,
        detail: String,
        ctx: &mut Context<Self>,
    ) {
        if self.is_over() {
            return;
        }
        tracing::info!(
            call = %self.record.id,
            kind = %destination.kind,
            target = %destination.target,
            %detail,
            "transfer refused by the caller's side"
        );
        self.end_with(EndCause::Failed, format!("transfer refused: {detail}"), ctx);
    }
}
