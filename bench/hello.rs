//! The ceiling: a bare axum server that answers every `POST /wechat` with a constant text and
//! does no signature check, no decryption and no parsing. What the peer comparison measures this
//! server against.
//!
//!   cargo bench --bench hello -- --bind 127.0.0.1:18091

use axum::{routing::post, Router};

fn main() {
    let mut bind = "127.0.0.1:18091".to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bind" => bind = it.next().expect("--bind ADDR"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let app = Router::new().route("/wechat", post(|| async { "<xml>hello</xml>" }));
            let listener = tokio::net::TcpListener::bind(&bind).await.unwrap();
            eprintln!("hello listening on {bind}");
            axum::serve(listener, app).await.unwrap();
        });
}
