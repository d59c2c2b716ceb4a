//! The demo page in a real browser: Debian's chromium, headless, driven through chromedriver. Two
//! pages open; one sends, both show the message; the page refuses what is not JSON; and after the
//! server restarts, the page reconnects by itself. A screenshot is kept in `.artifacts/`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// A chromedriver on a loopback port of its choosing, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver must be installed (Debian package chromium-driver; .ci/run installs it)");
        // "ChromeDriver was started successfully on port 41037." once it listens; the reading
        // thread keeps draining its standard output afterwards.
        let (port_sender, port) = std::sync::mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(port) = line
                    .strip_prefix("ChromeDriver was started successfully on port ")
                    .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
                {
                    let _ = port_sender.send(port);
                }
            }
        });
        let port = port
            .recv_timeout(PATIENCE)
            .expect("chromedriver says which port it listens on");
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new headless chromium with its own empty profile. Starting chromium is retried (with a
    /// fresh profile) when the browser process itself exits before the session exists, which a
    /// loaded CI machine sees now and then ("Chrome instance exited"); nothing of the page under
    /// test has run at that point, so the retry cannot hide a failure of the demo.
    async fn open(&self, page: &str) -> Browser {
        const ATTEMPTS: u32 = 3;
        let mut attempt = 1;
        let browser = loop {
            static PROFILES: AtomicUsize = AtomicUsize::new(0);
            let profile = std::env::temp_dir().join(format!(
                "demo-test-profile-{}-{}",
                std::process::id(),
                PROFILES.fetch_add(1, Ordering::Relaxed)
            ));
            // The flags keep chromium off the network it has no access to here (see the machine
            // notes).
            let options = json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=900,700",
                    format!("--user-data-dir={}", profile.display()),
                ],
            });
            let mut capabilities = serde_json::Map::new();
            capabilities.insert("goog:chromeOptions".to_owned(), options);
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&self.url)
                .await
            {
                Ok(browser) => break browser,
                Err(err) if attempt < ATTEMPTS => {
                    eprintln!("chromium did not start (attempt {attempt} of {ATTEMPTS}): {err:?}");
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(err) => panic!("no chromium session after {ATTEMPTS} attempts: {err:?}"),
            }
        };
        browser.goto(page).await.unwrap();
        browser
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn text(browser: &Browser, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the element's text satisfies `accept`; panics with the last text after `PATIENCE`.
async fn wait_for_text(browser: &Browser, css: &str, accept: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = browser.find(Locator::Css(css)).await;
        if let Ok(element) = now {
            let now = element.text().await.unwrap_or_default();
            if accept(&now) {
                return now;
            }
            assert!(Instant::now() < deadline, "{css} still reads {now:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(browser: &Browser, message: &str) {
    let input = browser.find(Locator::Css("#message")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(message).await.unwrap();
    browser
        .find(Locator::Css("#submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn all_connected(pages: &[&Browser]) {
    for page in pages {
        wait_for_text(page, "#state", |state| state == "connected").await;
    }
}

/// Sends `message` from one page and waits until every page lists it (as the page re-encodes it).
async fn send_and_see(from: &Browser, pages: &[&Browser], message: &str, listed: &str) {
    send(from, message).await;
    for page in pages {
        wait_for_text(page, "#messages li:first-child", |item| item == listed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver"]
async fn two_pages_see_each_others_messages_and_reconnect_after_a_restart() {
    let server = TestServer::start(&[]).await;
    let addr: SocketAddr = server.addr;
    let page = format!("http://{addr}/");
    let driver = ChromeDriver::start();
    let first = driver.open(&page).await;
    let second = driver.open(&format!("http://{addr}/index.html")).await;
    all_connected(&[&first, &second]).await;
    send_and_see(
        &first,
        &[&first, &second],
        r#"{"from": "the first page"}"#,
        r#"{"from":"the first page"}"#,
    )
    .await;

    send(&second, "not json").await;
    wait_for_text(&second, "#error", |error| error.starts_with("Not JSON")).await;
    assert_eq!(text(&first, "#count").await, "1", "nothing was sent");

    let screenshot = second.screenshot().await.unwrap();
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG screenshot");
    let artifacts = concat!(env!("CARGO_MANIFEST_DIR"), "/../.artifacts");
    std::fs::create_dir_all(artifacts).unwrap();
    std::fs::write(format!("{artifacts}/demo-page.png"), screenshot).unwrap();

    // The server drains (close 1001) and comes back on the same address: the pages reconnect.
    // That address is a fixed port, since the pages reconnect to where they were loaded from.
    server.stop().await;
    wait_for_text(&first, "#state", |state| {
        state.starts_with("server restarting")
    })
    .await;
    let server = TestServer::start_at(addr, &[]).await;
    all_connected(&[&first, &second]).await;
    send_and_see(
        &second,
        &[&first, &second],
        r#"{"from": "after the restart"}"#,
        r#"{"from":"after the restart"}"#,
    )
    .await;

    first.close().await.unwrap();
    second.close().await.unwrap();
    server.stop().await;
}
