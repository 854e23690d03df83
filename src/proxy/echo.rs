//! `backend = "builtin:echo"`: answers with the request it received, as JSON, so the demo
//! (and tests) show exactly what a backend behind the gateway would see.

use http::{Request, Response, StatusCode};

use crate::http::body::Body;
use crate::http::page;

pub fn answer<B>(req: &Request<B>, path_and_query: &str) -> Response<Body> {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .keys()
        .map(|name| {
            let values: Vec<serde_json::Value> = req
                .headers()
                .get_all(name)
                .iter()
                // A credential the gateway logs in with (SPEC §5) is marked sensitive: the demo
                // backend says it is there without showing it to the browser.
                .map(|v| {
                    if v.is_sensitive() {
                        "[sensitive: not shown]".into()
                    } else {
                        String::from_utf8_lossy(v.as_bytes()).into_owned().into()
                    }
                })
                .collect();
            let value = if values.len() == 1 {
                values.into_iter().next().unwrap_or_default()
            } else {
                values.into()
            };
            (name.as_str().to_string(), value)
        })
        .collect();
    let body = serde_json::json!({
        "method": req.method().as_str(),
        "path": path_and_query,
        "headers": headers,
    });
    let mut res = page::json(StatusCode::OK, &body);
    // Pretty enough to read in a browser tab, still one JSON document.
    if let Ok(pretty) = serde_json::to_string_pretty(&body) {
        *res.body_mut() = Body::from(pretty + "\n");
    }
    res
}
