//! The REST API against the real switch: errors, paging, lookup by reference.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_ids_get_json_errors() {
    let app = spawn_menu_app();
    let (status, body) = app.get_json("/calls/not-a-uuid").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not-a-uuid"));

    let missing = uuid::Uuid::new_v4();
    let (status, body) = app.get_json(&format!("/calls/{missing}")).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = app.post_json(&format!("/calls/{missing}/hangup")).await;
    assert_eq!(status, 404);

    let (status, body) = app.get_json("/no/such/path").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], 404);

    let (status, body) = app.get_json("/calls?page_size=0").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.get_json("/calls?page_size=abc").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.get_json("/calls?page_token=zzz").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_page_newest_first_with_tokens() {
    let app = spawn_menu_app();
    let mut gateways = Vec::new();
    for i in 0..3 {
        let mut gw = Gateway::dial(&app, &format!("page-{i}")).await;
        gw.expect_tts("Hello").await;
        gateways.push(gw);
    }
    let (status, first) = app.get_json("/calls?page_size=2").await;
    assert_eq!(status, 200);
    let result = first["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    assert_eq!(result[0]["reference"], "page-2");
    assert_eq!(result[1]["reference"], "page-1");
    let token = first["next_page_token"].as_str().unwrap();
    assert!(!token.is_empty());
    let (_, second) = app
        .get_json(&format!("/calls?page_size=2&page_token={token}"))
        .await;
    let result = second["result"].as_array().unwrap();
    assert_eq!(result.len(), 1);
    assert_eq!(result[0]["reference"], "page-0");
    assert_eq!(second["next_page_token"], "");

    let id = result[0]["id"].as_str().unwrap();
    let (status, call) = app.get_json(&format!("/calls/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(call["reference"], "page-0");
    assert_eq!(
        call["master_call_id"],
        "00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(call["type"], "flow");
    for gw in gateways {
        gw.hang_up();
    }
    for i in 0..3 {
        app.wait_hangup(&format!("page-{i}")).await;
    }
}
