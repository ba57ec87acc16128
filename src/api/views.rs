//! API view types: the JSON the REST API shows, separate from the domain record.

use serde::Serialize;
use utoipa::ToSchema;

pub use crate::call::view::{time, CallView, TIME_FORMAT};
pub use crate::http_error::{ErrorBody, ErrorView};

/// A VoIPBIN page: `{next_page_token, result}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageView {
    pub next_page_token: String,
    pub result: Vec<CallView>,
}
