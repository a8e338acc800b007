//! The crate generated from fixtures/wire.yaml (generated-example/wire) against a local HTTP
//! server: the exact bytes each parameter style, body kind and credential puts on the wire, the
//! output of each response status, and the OAuth 2 token flow.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codegen_runtime::http::{CallOptions, Credential, File, HttpClient, Secret, SecurityScheme};
use codegen_runtime::{RetryPolicy, TaskError};
use support::server::{Received, Reply, Server};
use wire::operations::*;
use wire::types::*;

fn client(server: &Server) -> wire::Client {
    wire::Client::from_http(http(server))
}

fn http(server: &Server) -> HttpClient {
    HttpClient::new(server.url()).with_retry_policy(
        RetryPolicy::default()
            .with_initial_delay(Duration::from_millis(5))
            .with_max_attempts(2),
    )
}

fn scheme(name: &str) -> &'static SecurityScheme {
    wire::SECURITY_SCHEMES
        .iter()
        .find(|s| s.name == name)
        .expect("the fixture defines the scheme")
}

/// The one request the server received.
fn only(server: &Server) -> Received {
    let mut received = server.received();
    assert_eq!(received.len(), 1, "{received:?}");
    received.remove(0)
}

fn text(body: &[u8]) -> &str {
    std::str::from_utf8(body).expect("a text body")
}

#[tokio::test]
async fn path_styles() {
    let server = Server::start(vec![Reply::new(204, "")]).await;
    let rgb = BTreeMap::from([("R".to_owned(), 100), ("G".to_owned(), 200)]);
    client(&server)
        .path_styles(&PathStyles {
            simple: vec!["a b".into(), "c,d".into()],
            simple_object: rgb.clone(),
            label: vec!["x".into(), "y".into()],
            label_exploded: vec!["x".into(), "y".into()],
            matrix: vec![3, 4],
            matrix_exploded: rgb,
        })
        .await
        .unwrap();
    assert_eq!(
        only(&server).target,
        "/paths/a%20b,c%2Cd/G=200,R=100/.x,y/.x.y/;matrix=3,4/;G=200;R=100"
    );
}

#[tokio::test]
async fn query_styles() {
    let server = Server::start(vec![Reply::new(204, "")]).await;
    client(&server)
        .query_styles(&QueryStyles {
            q: Some("rock & roll".into()),
            tag: Some(vec!["a".into(), "b".into()]),
            ids: Some(vec![1, 2, 3]),
            words: Some(vec!["big".into(), "red".into()]),
            flags: Some(vec!["x".into(), "y|z".into()]),
            filter: Some(Filter {
                status: Some("open".into()),
                created: Some(Range {
                    gte: Some(10),
                    lt: None,
                }),
            }),
            extra: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
            r#where: Some(Range {
                gte: Some(1),
                lt: Some(5),
            }),
        })
        .await
        .unwrap();
    assert_eq!(
        only(&server).target,
        "/query?q=rock%20%26%20roll&tag=a&tag=b&ids=1,2,3&words=big%20red&flags=x%7Cy%7Cz\
         &filter[status]=open&filter[created][gte]=10&k=v\
         &where=%7B%22gte%22%3A1%2C%22lt%22%3A5%7D"
    );
}

#[tokio::test]
async fn absent_optional_parameters_are_left_out() {
    let server = Server::start(vec![Reply::new(204, "")]).await;
    client(&server)
        .query_styles(&QueryStyles {
            q: None,
            tag: None,
            ids: None,
            words: None,
            flags: None,
            filter: None,
            extra: None,
            r#where: None,
        })
        .await
        .unwrap();
    assert_eq!(only(&server).target, "/query");
}

#[tokio::test]
async fn header_and_cookie_styles() {
    let server = Server::start(vec![Reply::new(204, "")]).await;
    client(&server)
        .header_styles(&HeaderStyles {
            x_tags: Some(vec!["a".into(), "b".into()]),
            x_point: Some(BTreeMap::from([("x".to_owned(), 1), ("y".to_owned(), 2)])),
            session: Some("s 1".into()),
            seen: Some(vec!["p".into(), "q".into()]),
            recent: Some(vec!["r".into(), "s".into()]),
        })
        .await
        .unwrap();
    let got = only(&server);
    assert_eq!(got.header("X-Tags"), Some("a,b"));
    assert_eq!(got.header("X-Point"), Some("x=1,y=2"));
    assert_eq!(
        got.header("Cookie"),
        Some("session=s%201; seen=p; seen=q; recent=r,s")
    );
}

#[tokio::test]
async fn json_bodies_of_a_plus_json_type() {
    let server = Server::start(vec![Reply::new(200, r#"{"id":"i1","name":"back"}"#)]).await;
    let item = client(&server)
        .send_json_api(&SendJsonApi {
            body: Item {
                id: "i1".into(),
                name: Some("Ada".into()),
            },
        })
        .await
        .unwrap();
    assert_eq!(item.name.as_deref(), Some("back"));
    let got = only(&server);
    assert_eq!(got.header("Content-Type"), Some("application/vnd.api+json"));
    assert_eq!(text(&got.body), r#"{"id":"i1","name":"Ada"}"#);
}

#[tokio::test]
async fn form_bodies_nest_like_stripe() {
    let server = Server::start(vec![Reply::new(204, "")]).await;
    client(&server)
        .send_form(&SendForm {
            body: SendFormBody {
                email: "ada+1@example.com".into(),
                metadata: Some(BTreeMap::from([("order".to_owned(), "7".to_owned())])),
                address: Some(Address {
                    line1: Some("1 Main St".into()),
                    city: None,
                }),
                expand: Some(vec!["customer".into(), "invoice".into()]),
                items: Some(vec![LineItem {
                    price: Some("price_1".into()),
                    quantity: Some(2),
                }]),
                tags: Some(vec!["x".into(), "y".into()]),
            },
        })
        .await
        .unwrap();
    let got = only(&server);
    assert_eq!(
        got.header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        text(&got.body),
        "email=ada%2B1%40example.com&metadata[order]=7&address[line1]=1+Main+St&expand[0]=customer\
         &expand[1]=invoice&items[0][price]=price_1&items[0][quantity]=2&tags=x&tags=y"
    );
}

#[tokio::test]
async fn multipart_bodies_send_bytes_as_files() {
    let server = Server::start(vec![Reply::new(204, "")]).await;
    client(&server)
        .upload(&Upload {
            body: UploadBody {
                title: "Cat \"Tom\"".into(),
                file: File::new("tom.png", b"\x89PNG\r\n".to_vec()),
                thumbnails: Some(vec![
                    File::new("t1.jpg", b"t1".to_vec()).with_content_type("image/jpeg"),
                    File::new("t2.bin", b"t2".to_vec()),
                ]),
                labels: Some(vec!["a".into(), "b".into()]),
                meta: Some(Address {
                    line1: None,
                    city: Some("Oslo".into()),
                }),
            },
        })
        .await
        .unwrap();
    let got = only(&server);
    let content_type = got.header("Content-Type").unwrap();
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("{content_type}"));
    let expected = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nCat \"Tom\"\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"tom.png\"\r\nContent-Type: image/png\r\n\r\n\u{89}PNG\r\n\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"thumbnails\"; filename=\"t1.jpg\"\r\nContent-Type: image/jpeg\r\n\r\nt1\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"thumbnails\"; filename=\"t2.bin\"\r\nContent-Type: application/octet-stream\r\n\r\nt2\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"labels\"\r\n\r\na\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"labels\"\r\n\r\nb\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"meta\"\r\nContent-Type: application/json\r\n\r\n{{\"city\":\"Oslo\"}}\r\n\
         --{b}--\r\n",
        b = boundary
    );
    // The file holds a byte that is not UTF-8: compare bytes, with it put back.
    let expected: Vec<u8> = expected
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("latin-1 only"))
        .collect();
    assert_eq!(got.body, expected, "{}", String::from_utf8_lossy(&got.body));
}

#[tokio::test]
async fn octet_stream_and_text_bodies_go_as_they_are() {
    let server = Server::start(vec![Reply::new(200, "back"), Reply::new(200, "echo")]).await;
    let client = client(&server);
    let back = client
        .put_bytes(&PutBytes {
            body: vec![0, 1, 2, 255],
        })
        .await
        .unwrap();
    assert_eq!(back, b"back");
    let echo = client
        .send_text(&SendText {
            body: Some("héllo\nworld".into()),
        })
        .await
        .unwrap();
    assert_eq!(echo, "echo");
    let received = server.received();
    assert_eq!(
        received[0].header("Content-Type"),
        Some("application/octet-stream")
    );
    assert_eq!(received[0].body, [0, 1, 2, 255]);
    assert_eq!(received[1].header("Content-Type"), Some("text/plain"));
    assert_eq!(text(&received[1].body), "héllo\nworld");
}

#[tokio::test]
async fn json_is_the_default_and_the_client_may_prefer_another_offered_type() {
    let server = Server::start(vec![Reply::new(204, ""); 3]).await;
    let request = SendEither {
        body: Address {
            line1: Some("1 Main St".into()),
            city: Some("Oslo".into()),
        },
    };
    client(&server).send_either(&request).await.unwrap();
    let forms = wire::Client::from_http(
        http(&server).with_media_types(["application/x-www-form-urlencoded"]),
    );
    forms.send_either(&request).await.unwrap();
    // A call may choose for itself.
    let options = CallOptions {
        media_types: vec!["application/json".into()],
        ..CallOptions::default()
    };
    forms.call(&request, &options).await.unwrap();
    let received = server.received();
    assert_eq!(received[2].header("Content-Type"), Some("application/json"));
    assert_eq!(received[0].header("Content-Type"), Some("application/json"));
    assert_eq!(
        text(&received[0].body),
        r#"{"line1":"1 Main St","city":"Oslo"}"#
    );
    assert_eq!(
        received[1].header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(text(&received[1].body), "line1=1+Main+St&city=Oslo");
}

#[tokio::test]
async fn each_success_status_has_its_variant_and_error_bodies_stay_readable() {
    let server = Server::start(vec![
        Reply::new(200, r#"{"id":"i1"}"#),
        Reply::new(202, r#"{"percent":40}"#),
        Reply::new(204, ""),
        Reply::new(206, "partial"),
        Reply::new(404, r#"{"message":"no such outcome"}"#),
    ])
    .await;
    let client = client(&server);
    let get = || GetOutcome { id: "o1".into() };
    assert_eq!(
        client.get_outcome(&get()).await.unwrap(),
        GetOutcomeOutput::Ok(Item {
            id: "i1".into(),
            name: None
        })
    );
    assert_eq!(
        client.get_outcome(&get()).await.unwrap(),
        GetOutcomeOutput::Accepted(Progress { percent: Some(40) })
    );
    assert_eq!(
        client.get_outcome(&get()).await.unwrap(),
        GetOutcomeOutput::NoContent
    );
    let err = client.get_outcome(&get()).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("206"), "{err}");
    let err = client.get_outcome(&get()).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let problem: Problem = err.body_as().expect("the 404 body is a Problem");
    assert_eq!(problem.message, "no such outcome");
}

#[tokio::test]
async fn accept_names_what_the_client_reads_and_another_content_type_is_a_plain_error() {
    let xml = r#"<?xml version="1.0"?><item><id>i1</id></item>"#;
    let server = Server::start(vec![
        Reply::new(200, r#"{"id":"i1"}"#).header("Content-Type", "application/vnd.wire.item+json"),
        Reply::new(200, xml).header("Content-Type", "application/xml; charset=utf-8"),
        Reply::new(200, r#"{"id":"i2"}"#).header("Content-Type", "application/json"),
    ])
    .await;
    let client = client(&server);
    let get = GetNegotiated { id: "n1".into() };
    assert_eq!(client.get_negotiated(&get).await.unwrap().id, "i1");
    let err = client.get_negotiated(&get).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.status(), Some(200));
    assert_eq!(err.body(), Some(xml));
    assert_eq!(
        err.message(),
        "the API answered 200 with a body of content type `application/xml; charset=utf-8`, but \
         this operation reads `application/json`, `application/vnd.wire.item+json`, \
         `application/problem+json` (the media types its description gives)"
    );
    // The XML answer was not retried: it is permanent.
    let received = server.received();
    assert_eq!(received.len(), 2, "{received:?}");
    for request in &received {
        assert_eq!(
            request.header("Accept"),
            Some("application/json, application/vnd.wire.item+json, application/problem+json")
        );
    }
    // An `Accept` the caller sets on the client is sent instead.
    let custom = wire::Client::from_http(
        http(&server)
            .with_header("Accept", "application/json", false)
            .unwrap(),
    );
    assert_eq!(custom.get_negotiated(&get).await.unwrap().id, "i2");
    let received = server.received();
    assert_eq!(received[2].header("Accept"), Some("application/json"));
    assert_eq!(
        received[2]
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("accept"))
            .count(),
        1
    );
}

#[tokio::test]
async fn inline_error_schemas_have_types_to_read_the_body_as() {
    let server = Server::start(vec![
        Reply::new(404, r#"{"code":"missing","detail":"no such item"}"#),
        Reply::new(410, r#"{"code":"gone"}"#),
        // 429 is retried: the client's policy makes two attempts.
        Reply::new(429, r#"{"retryInSeconds":3}"#),
        Reply::new(429, r#"{"retryInSeconds":3}"#),
        Reply::new(409, r#"{"usedBy":["o1","o2"]}"#),
        Reply::new(404, r#"{"code":"missing"}"#),
    ])
    .await;
    let client = client(&server);
    let get = GetWithInlineErrors { id: "x".into() };
    let err = client.get_with_inline_errors(&get).await.unwrap_err();
    assert_eq!(
        err.body_as::<GetWithInlineErrorsError404>(),
        Some(GetWithInlineErrorsError404 {
            code: "missing".into(),
            detail: Some("no such item".into()),
        })
    );
    // 410 has the same schema as 404, so the same type.
    let err = client.get_with_inline_errors(&get).await.unwrap_err();
    assert_eq!(err.status(), Some(410));
    let gone: GetWithInlineErrorsError404 = err.body_as().expect("the 410 body");
    assert_eq!(gone.code, "gone");
    let err = client.get_with_inline_errors(&get).await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    let slow: GetWithInlineErrorsError429 = err.body_as().expect("the 429 body");
    assert_eq!(slow.retry_in_seconds, 3);
    // The only inline error schema of an operation is `<Operation>Error`.
    let delete = DeleteWithInlineError { id: "x".into() };
    let err = client.delete_with_inline_error(&delete).await.unwrap_err();
    assert_eq!(err.status(), Some(409));
    let in_use: DeleteWithInlineErrorError = err.body_as().expect("the 409 body");
    assert_eq!(in_use.used_by, Some(vec!["o1".to_owned(), "o2".to_owned()]));
    // Another operation's error of the same schema has the same type.
    let err = client.delete_with_inline_error(&delete).await.unwrap_err();
    let missing: GetWithInlineErrorsError404 = err.body_as().expect("the 404 body");
    assert_eq!(missing.code, "missing");
    assert_eq!(
        server.received()[0].header("Accept"),
        Some("application/json")
    );
}

#[tokio::test]
async fn api_keys_basic_and_bearer_go_where_their_schemes_say() {
    let server = Server::start(vec![Reply::new(204, ""); 5]).await;
    let http = http(&server)
        .with_credential(scheme("headerKey"), Credential::ApiKey(Secret::new("hk-1")))
        .with_credential(scheme("queryKey"), Credential::ApiKey(Secret::new("qk 2")))
        .with_credential(scheme("cookieKey"), Credential::ApiKey(Secret::new("ck-3")))
        .with_credential(
            scheme("basic"),
            Credential::Basic {
                user: "Aladdin".into(),
                password: Secret::new("open sesame"),
            },
        )
        .with_credential(scheme("bearer"), Credential::Bearer(Secret::new("jwt-4")));
    let client = wire::Client::from_http(http);
    client.secure_header(&SecureHeader {}).await.unwrap();
    client.secure_query(&SecureQuery {}).await.unwrap();
    client.secure_cookie(&SecureCookie {}).await.unwrap();
    client.secure_basic(&SecureBasic {}).await.unwrap();
    client.secure_bearer(&SecureBearer {}).await.unwrap();
    let r = server.received();
    assert_eq!(r[0].header("X-API-Key"), Some("hk-1"));
    assert_eq!(r[0].header("Authorization"), None);
    assert_eq!(r[1].target, "/secure/query?api_key=qk%202");
    assert_eq!(r[2].header("Cookie"), Some("session_key=ck-3"));
    assert_eq!(
        r[3].header("Authorization"),
        Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    );
    assert_eq!(r[4].header("Authorization"), Some("Bearer jwt-4"));
    // Each operation sends only the credentials it asks for.
    assert_eq!(r[4].header("X-API-Key"), None);
    assert_eq!(r[3].target, "/secure/basic");
}

#[tokio::test]
async fn optional_credentials_are_sent_when_configured() {
    let server = Server::start(vec![Reply::new(204, ""); 2]).await;
    client(&server)
        .secure_optional(&SecureOptional {})
        .await
        .unwrap();
    let bearer =
        http(&server).with_credential(scheme("bearer"), Credential::Bearer(Secret::new("b")));
    wire::Client::from_http(bearer)
        .secure_optional(&SecureOptional {})
        .await
        .unwrap();
    let r = server.received();
    assert_eq!(r[0].header("Authorization"), None);
    assert_eq!(r[1].header("Authorization"), Some("Bearer b"));
}

#[tokio::test]
async fn the_first_complete_alternative_of_the_requirements_is_sent() {
    let server = Server::start(vec![Reply::new(204, ""); 3]).await;
    let keys = http(&server)
        .with_credential(scheme("headerKey"), Credential::ApiKey(Secret::new("hk")))
        .with_credential(scheme("queryKey"), Credential::ApiKey(Secret::new("qk")));
    wire::Client::from_http(keys.clone())
        .secure_either(&SecureEither {})
        .await
        .unwrap();
    let bearer = keys.with_credential(scheme("bearer"), Credential::Bearer(Secret::new("b")));
    wire::Client::from_http(bearer)
        .secure_either(&SecureEither {})
        .await
        .unwrap();
    // Half of an alternative is no alternative: nothing is sent.
    let half =
        http(&server).with_credential(scheme("headerKey"), Credential::ApiKey(Secret::new("hk")));
    wire::Client::from_http(half)
        .secure_either(&SecureEither {})
        .await
        .unwrap();
    let r = server.received();
    assert_eq!(r[0].header("X-API-Key"), Some("hk"));
    assert_eq!(r[0].target, "/secure/either?api_key=qk");
    assert_eq!(r[0].header("Authorization"), None);
    assert_eq!(r[1].header("Authorization"), Some("Bearer b"));
    assert_eq!(r[1].header("X-API-Key"), None);
    assert_eq!(r[1].target, "/secure/either");
    assert_eq!(r[2].header("X-API-Key"), None);
}

fn client_credentials(token_server: &Server) -> Credential {
    Credential::ClientCredentials {
        token_url: format!("{}/oauth/token", token_server.url()),
        client_id: "wire-app".into(),
        client_secret: Secret::new("s3cr3t:x"),
        scopes: vec!["items.read".into()],
    }
}

fn token(access: &str, expires_in: u64) -> Reply {
    Reply::new(
        200,
        &format!(
            r#"{{"access_token":"{access}","token_type":"Bearer","expires_in":{expires_in}}}"#
        ),
    )
    .header("Content-Type", "application/json")
}

#[tokio::test]
async fn oauth2_tokens_are_fetched_once_and_cached() {
    let tokens = Server::start(vec![token("t1", 3600)]).await;
    let api = Server::start(vec![Reply::new(204, ""); 3]).await;
    let client = wire::Client::from_http(
        http(&api).with_credential(scheme("oauth"), client_credentials(&tokens)),
    );
    for _ in 0..3 {
        client.secure_oauth(&SecureOauth {}).await.unwrap();
    }
    let fetched = only(&tokens);
    assert_eq!(fetched.method, "POST");
    assert_eq!(fetched.target, "/oauth/token");
    assert_eq!(
        fetched.header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    // RFC 6749 §2.3.1: id and secret form-encoded, then base64 of `id:secret`.
    assert_eq!(
        fetched.header("Authorization"),
        Some("Basic d2lyZS1hcHA6czNjcjN0JTNBeA==")
    );
    assert_eq!(
        text(&fetched.body),
        "grant_type=client_credentials&scope=items.read"
    );
    let calls = api.received();
    assert_eq!(calls.len(), 3);
    assert!(
        calls
            .iter()
            .all(|c| c.header("Authorization") == Some("Bearer t1")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn oauth2_tokens_are_refreshed_before_they_expire() {
    // A token that lives 1 s is due for refresh at once (5 s margin).
    let tokens = Server::start(vec![token("t1", 1), token("t2", 3600)]).await;
    let api = Server::start(vec![Reply::new(204, ""); 3]).await;
    let client = wire::Client::from_http(
        http(&api).with_credential(scheme("oauth"), client_credentials(&tokens)),
    );
    for _ in 0..3 {
        client.secure_oauth(&SecureOauth {}).await.unwrap();
    }
    assert_eq!(tokens.received().len(), 2);
    let auth: Vec<_> = api
        .received()
        .iter()
        .map(|c| c.header("Authorization").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(auth, ["Bearer t1", "Bearer t2", "Bearer t2"]);
}

#[tokio::test]
async fn a_401_fetches_a_new_token_and_tries_once_more() {
    let tokens = Server::start(vec![
        token("revoked", 3600),
        token("t2", 3600),
        token("t3", 3600),
    ])
    .await;
    let api = Server::start(vec![
        Reply::new(401, "token revoked"),
        Reply::new(204, ""),
        Reply::new(401, "still no"),
        Reply::new(401, "never"),
    ])
    .await;
    let client = wire::Client::from_http(
        http(&api).with_credential(scheme("oauth"), client_credentials(&tokens)),
    );
    client.secure_oauth(&SecureOauth {}).await.unwrap();
    let auth: Vec<_> = api
        .received()
        .iter()
        .map(|c| c.header("Authorization").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(auth, ["Bearer revoked", "Bearer t2"]);
    assert_eq!(tokens.received().len(), 2);
    // A second 401 after a fresh token is the API's answer: permanent, not a loop.
    let tokens_before = tokens.received().len();
    let err = client.secure_oauth(&SecureOauth {}).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_retryable());
    assert_eq!(api.received().len(), 4);
    assert_eq!(tokens.received().len(), tokens_before + 1);
}

#[tokio::test]
async fn a_refused_token_request_is_an_error_naming_the_scheme() {
    let tokens = Server::start(vec![Reply::new(401, r#"{"error":"invalid_client"}"#)]).await;
    let api = Server::start(vec![]).await;
    let client = wire::Client::from_http(
        http(&api).with_credential(scheme("oauth"), client_credentials(&tokens)),
    );
    let err = client.secure_oauth(&SecureOauth {}).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("`oauth`"), "{err}");
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    assert!(api.received().is_empty());
}

/// A log sink for the tests' tracing subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn credentials_never_reach_logs_or_errors() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let secrets = [
        "HK-SECRET",
        "QK-SECRET",
        "BASIC-SECRET",
        "s3cr3t:x",
        "TOKEN-SECRET",
    ];
    // A port nothing listens on: every attempt fails to connect and is logged and retried.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let tokens = Server::start(vec![token("TOKEN-SECRET", 3600)]).await;
    let api = Server::start(vec![Reply::new(403, "forbidden"), Reply::new(403, "no")]).await;
    let with_credentials = |base: String| {
        HttpClient::new(base)
            .with_retry_policy(
                RetryPolicy::default()
                    .with_initial_delay(Duration::from_millis(1))
                    .with_max_attempts(2),
            )
            .with_credential(
                scheme("headerKey"),
                Credential::ApiKey(Secret::new("HK-SECRET")),
            )
            .with_credential(
                scheme("queryKey"),
                Credential::ApiKey(Secret::new("QK-SECRET")),
            )
            .with_credential(
                scheme("basic"),
                Credential::Basic {
                    user: "u".into(),
                    password: Secret::new("BASIC-SECRET"),
                },
            )
            .with_credential(scheme("oauth"), client_credentials(&tokens))
    };
    let unreachable = wire::Client::from_http(with_credentials(format!("http://{closed}")));
    let reachable = wire::Client::from_http(with_credentials(api.url()));
    let mut shown = Vec::new();
    let errors: Vec<TaskError> = vec![
        unreachable.secure_query(&SecureQuery {}).await.unwrap_err(),
        unreachable
            .secure_either(&SecureEither {})
            .await
            .unwrap_err(),
        reachable.secure_oauth(&SecureOauth {}).await.unwrap_err(),
        reachable.secure_basic(&SecureBasic {}).await.unwrap_err(),
    ];
    for err in &errors {
        shown.push(format!("{err} {err:?}"));
        shown.push(serde_json::to_string(err).unwrap());
    }
    shown.push(format!("{:?}", reachable.http()));
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("retrying"),
        "the retries were logged:\n{logs}"
    );
    for secret in secrets {
        assert!(!logs.contains(secret), "`{secret}` in the logs:\n{logs}");
        for text in &shown {
            assert!(!text.contains(secret), "`{secret}` in: {text}");
        }
    }
    // The calls did carry them.
    assert_eq!(
        api.received()[0].header("Authorization"),
        Some("Bearer TOKEN-SECRET")
    );
}
