//! Uploads a body that arrives over the network, as the daemon does with a request's file parts:
//! the bytes are read from a TCP socket as they come and never touch the disk.
//!
//! Runs against the embedded S3 endpoint in a temporary directory, so no AWS account is needed:
//!
//! ```sh
//! cargo run -p uploader-core --example stream_body --features embedded
//! ```

use std::sync::Arc;

use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;
use uploader_core::{EmbeddedS3, KeyPrefix, ObjectKey, S3Store, StreamEnd, Uploader};

/// How much the "client" sends: over the 16 MiB default multipart threshold, so the body goes
/// up in 8 MiB parts, each sent while the next is read from the socket.
const BODY: usize = 20 * 1024 * 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = tempfile::tempdir()?;
    let s3 = EmbeddedS3::start(data.path(), "demo").await?;
    let store = S3Store::connect(&s3.s3_config()).await?;
    let uploader = Uploader::builder().with_store(Arc::new(store)).build()?;

    // A network peer on loopback that writes text lines and hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let client = tokio::spawn(async move {
        let mut socket = TcpStream::connect(addr).await?;
        let line = b"a line of a log arriving over the network\n";
        let mut sent = 0;
        while sent < BODY {
            let n = line.len().min(BODY - sent);
            socket.write_all(&line[..n]).await?;
            sent += n;
        }
        socket.shutdown().await
    });
    let (socket, _) = listener.accept().await?;

    // Any `Stream<Item = Result<Bytes, E>>` will do; `ReaderStream` turns an `AsyncRead` into one.
    let body = ReaderStream::new(socket);
    let key = ObjectKey::derive(&KeyPrefix::new("incoming/")?, "log.txt")?;
    // Cancelling this token (e.g. when the client goes away) aborts the upload.
    let cancel = CancellationToken::new();
    // A limit on the body's size: larger bodies are refused (`file_too_large`).
    let max_size = Some(1024 * 1024 * 1024);
    let upload = uploader
        .upload_stream(0, key, body, max_size, &cancel)
        .await;

    // `upload_stream` returns once the stream is consumed (a server can read the next part of
    // its request meanwhile); the last requests finish in the background until `wait`.
    client.await??;
    match upload.end() {
        StreamEnd::Complete => println!("body read to its end"),
        StreamEnd::Broken(why) => println!("body broken: {why}"),
    }
    let result = upload.wait().await;
    println!(
        "{} bytes → {:?} ({} retries)",
        result.size, result.outcome, result.retries
    );
    Ok(())
}
