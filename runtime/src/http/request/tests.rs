//! The encoding rules, case by case.

use std::collections::BTreeMap;

use serde::Serialize;

use super::*;

fn path(style: Style, explode: bool, value: &impl Serialize) -> String {
    let mut parts = RequestParts::default();
    parts
        .path_param_styled("color", value, style, explode)
        .unwrap();
    parts.path
}

fn query(style: Style, explode: bool, value: &impl Serialize) -> String {
    let mut parts = RequestParts::default();
    parts.query_styled("color", value, style, explode).unwrap();
    parts.query_string()
}

fn rgb() -> BTreeMap<&'static str, i32> {
    BTreeMap::from([("B", 150), ("G", 200), ("R", 100)])
}

const LIST: [&str; 3] = ["blue", "black", "brown"];

#[test]
fn path_styles_follow_the_openapi_tables() {
    use Style::*;
    assert_eq!(path(Simple, false, &"blue"), "blue");
    assert_eq!(path(Simple, false, &LIST), "blue,black,brown");
    assert_eq!(path(Simple, false, &rgb()), "B,150,G,200,R,100");
    assert_eq!(path(Simple, true, &rgb()), "B=150,G=200,R=100");
    assert_eq!(path(Label, false, &"blue"), ".blue");
    assert_eq!(path(Label, false, &LIST), ".blue,black,brown");
    assert_eq!(path(Label, true, &LIST), ".blue.black.brown");
    assert_eq!(path(Label, false, &rgb()), ".B,150,G,200,R,100");
    assert_eq!(path(Label, true, &rgb()), ".B=150.G=200.R=100");
    assert_eq!(path(Matrix, false, &"blue"), ";color=blue");
    assert_eq!(path(Matrix, false, &LIST), ";color=blue,black,brown");
    assert_eq!(
        path(Matrix, true, &LIST),
        ";color=blue;color=black;color=brown"
    );
    assert_eq!(path(Matrix, false, &rgb()), ";color=B,150,G,200,R,100");
    assert_eq!(path(Matrix, true, &rgb()), ";B=150;G=200;R=100");
    assert_eq!(path(Matrix, true, &Vec::<String>::new()), ";color");
    // Delimiters inside values are encoded; the style's are not.
    assert_eq!(path(Simple, false, &["a,b", "c/d"]), "a%2Cb,c%2Fd");
}

#[test]
fn query_styles_follow_the_openapi_tables() {
    use Style::*;
    assert_eq!(query(Form, true, &"blue"), "color=blue");
    assert_eq!(
        query(Form, true, &LIST),
        "color=blue&color=black&color=brown"
    );
    assert_eq!(query(Form, false, &LIST), "color=blue,black,brown");
    assert_eq!(query(Form, true, &rgb()), "B=150&G=200&R=100");
    assert_eq!(query(Form, false, &rgb()), "color=B,150,G,200,R,100");
    assert_eq!(
        query(SpaceDelimited, false, &LIST),
        "color=blue%20black%20brown"
    );
    assert_eq!(
        query(PipeDelimited, false, &LIST),
        "color=blue%7Cblack%7Cbrown"
    );
    assert_eq!(
        query(PipeDelimited, false, &rgb()),
        "color=B%7C150%7CG%7C200%7CR%7C100"
    );
    assert_eq!(
        query(DeepObject, true, &rgb()),
        "color[B]=150&color[G]=200&color[R]=100"
    );
    let nested = serde_json::json!({"a": {"b": 1}, "list": ["x y", "z"]});
    assert_eq!(
        query(DeepObject, true, &nested),
        "color[a][b]=1&color[list][0]=x%20y&color[list][1]=z"
    );
    assert_eq!(query(Form, true, &None::<i32>), "");
    assert_eq!(query(Form, true, &"a&b=c"), "color=a%26b%3Dc");
}

#[test]
fn missing_path_parameter_is_a_permanent_error() {
    let mut parts = RequestParts::default();
    let err = parts.path_param("id", &None::<i64>).unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.message().contains("`id`"));
}

#[test]
fn headers_and_cookies() {
    let mut parts = RequestParts::default();
    parts.header("X-Tags", &vec!["a", "b"]).unwrap();
    parts
        .header_styled("X-Rgb", &rgb(), Style::Simple, true)
        .unwrap();
    parts.header("X-None", &None::<String>).unwrap();
    assert_eq!(
        parts.headers,
        [
            ("X-Tags".to_owned(), "a,b".to_owned()),
            ("X-Rgb".to_owned(), "B=150,G=200,R=100".to_owned())
        ]
    );
    parts.cookie("session", &"a b;c").unwrap();
    parts.cookie("tag", &["x", "y"]).unwrap();
    parts
        .cookie_styled("list", &["x", "y"], Style::Form, false)
        .unwrap();
    assert_eq!(
        parts.cookies,
        ["session=a%20b%3Bc", "tag=x", "tag=y", "list=x,y"]
    );
}

#[test]
fn forms_nest_with_brackets_like_stripe() {
    let mut parts = RequestParts::default();
    let body = serde_json::json!({
        "email": "a+b@example.com",
        "metadata": {"order": {"id": 7}},
        "expand": ["customer", "invoice"],
        "items": [{"price": "p_1", "quantity": 2}],
        "tags": ["x", "y"],
        "skip": null,
    });
    parts
        .form(
            "application/x-www-form-urlencoded",
            &body,
            &[("expand", Style::DeepObject, true)],
        )
        .unwrap();
    let sent = String::from_utf8(parts.body.unwrap().bytes).unwrap();
    assert_eq!(
        sent,
        "email=a%2Bb%40example.com&metadata[order][id]=7&expand[0]=customer&expand[1]=invoice&items[0][price]=p_1&items[0][quantity]=2&tags=x&tags=y"
    );
    let err = RequestParts::default()
        .form("application/x-www-form-urlencoded", &[1, 2], &[])
        .unwrap_err();
    assert!(err.message().contains("not an object"), "{err}");
}

#[test]
fn files_keep_their_names_and_store_their_bytes_as_base64() {
    let file = File::new("a.mp3", vec![0, 255]).with_content_type("audio/mpeg");
    let json = serde_json::to_string(&file).unwrap();
    assert_eq!(
        json,
        r#"{"name":"a.mp3","content_type":"audio/mpeg","bytes":"AP8="}"#
    );
    assert_eq!(serde_json::from_str::<File>(&json).unwrap(), file);
    let mut form = Multipart::default();
    form.file("audio", &file, "application/octet-stream");
    form.file("raw", &vec![1u8], "application/octet-stream");
    let names: Vec<_> = form
        .parts
        .iter()
        .map(|p| (p.filename.clone().unwrap(), p.content_type.clone().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("a.mp3".to_owned(), "audio/mpeg".to_owned()),
            ("raw".to_owned(), "application/octet-stream".to_owned())
        ]
    );
}

#[test]
fn media_type_choice_follows_the_client_preference() {
    let mut parts = RequestParts::default();
    let offered = ["application/json", "application/x-www-form-urlencoded"];
    assert_eq!(parts.choose_media_type(&offered), 0);
    parts.preferred = vec![
        "text/plain".into(),
        "Application/X-WWW-Form-Urlencoded".into(),
    ];
    assert_eq!(parts.choose_media_type(&offered), 1);
}
