//! The server's Prometheus counters, scraped from its HTTP port: how many claim queries its
//! long polls ran, how many waiting polls it woke, and how many wait now. A tiny HTTP/1.1
//! client is enough for one local GET; the parsers are pure.

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Claim queries run by long polls (an idle poller should run none).
const CLAIM_QUERIES: &str = "rondo_claim_queries_total";

/// Waiting long polls woken.
const POLLER_WAKEUPS: &str = "rondo_poller_wakeups_total";

/// Long polls waiting now.
const WAITING_POLLERS: &str = "rondo_waiting_pollers";

/// The server's poll counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollCounters {
    /// `rondo_claim_queries_total`.
    pub claim_queries: f64,
    /// `rondo_poller_wakeups_total`.
    pub poller_wakeups: f64,
    /// `rondo_waiting_pollers`.
    pub waiting_pollers: f64,
}

impl PollCounters {
    /// Reads them from the server's `/metrics` at `metrics_url`. Each scrape also makes the
    /// server count ready jobs and workflows in the database.
    pub async fn scrape(metrics_url: &str) -> anyhow::Result<PollCounters> {
        let text = http_get(metrics_url)
            .await
            .with_context(|| format!("scraping {metrics_url}"))?;
        PollCounters::parse(&text)
            .with_context(|| format!("{metrics_url} lacks the poll counters:\n{text}"))
    }

    /// Reads them from Prometheus text.
    fn parse(text: &str) -> Option<PollCounters> {
        Some(PollCounters {
            claim_queries: sample_sum(text, CLAIM_QUERIES)?,
            poller_wakeups: sample_sum(text, POLLER_WAKEUPS)?,
            waiting_pollers: sample_sum(text, WAITING_POLLERS)?,
        })
    }

    /// What each counter gained from `earlier` to `self` (the gauge is `self`'s).
    pub fn since(&self, earlier: &PollCounters) -> PollCounters {
        PollCounters {
            claim_queries: self.claim_queries - earlier.claim_queries,
            poller_wakeups: self.poller_wakeups - earlier.poller_wakeups,
            waiting_pollers: self.waiting_pollers,
        }
    }
}

/// The sum of every sample of metric `name` in Prometheus (or OpenMetrics) text, whatever
/// its labels; `None` when it has none.
fn sample_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            // After the name: labels, or the value; anything else is a longer name.
            let value = match rest.chars().next()? {
                '{' => &rest[rest.rfind('}')? + 1..],
                ' ' | '\t' => rest,
                _ => return None,
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The body of `GET url` (an `http://host:port/path` URL) when it answers 200.
async fn http_get(url: &str) -> anyhow::Result<String> {
    let (authority, path) = split_url(url).with_context(|| format!("not an http:// URL: {url}"))?;
    let mut stream = TcpStream::connect(authority).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    response_body(&String::from_utf8_lossy(&response))
}

/// (`host:port`, `/path`) of an `http://` URL.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    match rest.find('/') {
        Some(slash) => Some((&rest[..slash], &rest[slash..])),
        None => Some((rest, "/")),
    }
}

/// The body of an HTTP/1.1 response read to its end, decoding a chunked one; an error
/// unless the status is 200.
fn response_body(response: &str) -> anyhow::Result<String> {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("a response without the blank line after its headers")?;
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("answered `{status}`");
    }
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if chunked {
        dechunk(body).context("a malformed chunked body")
    } else {
        Ok(body.to_owned())
    }
}

/// The data of a chunked body: `SIZE-IN-HEX\r\nDATA\r\n` repeated, ending with size 0.
fn dechunk(mut body: &str) -> Option<String> {
    let mut data = String::new();
    loop {
        let (size_line, rest) = body.split_once("\r\n")?;
        let size_hex = size_line.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        if size == 0 {
            return Some(data);
        }
        data.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server's registry encodes (OpenMetrics text), abridged.
    const SCRAPE: &str = "\
# HELP rondo_jobs_created Jobs created, by operation.
# TYPE rondo_jobs_created counter
rondo_jobs_created_total{operation=\"bench.work\"} 500
# HELP rondo_waiting_pollers Long polls waiting on this server.
# TYPE rondo_waiting_pollers gauge
rondo_waiting_pollers 998
# HELP rondo_claim_queries Claim queries run for long polls.
# TYPE rondo_claim_queries counter
rondo_claim_queries_total 1234
# HELP rondo_poller_wakeups Waiting long polls woken.
# TYPE rondo_poller_wakeups counter
rondo_poller_wakeups_total 17
rondo_poller_wakeups_total_extra 99
# EOF
";

    #[test]
    fn poll_counters_are_read_from_the_scrape() {
        assert_eq!(
            PollCounters::parse(SCRAPE),
            Some(PollCounters {
                claim_queries: 1234.0,
                poller_wakeups: 17.0,
                waiting_pollers: 998.0,
            })
        );
    }

    #[test]
    fn a_scrape_without_a_counter_has_no_poll_counters() {
        let without_wakeups: String = SCRAPE
            .lines()
            .filter(|line| !line.starts_with("rondo_poller_wakeups_total "))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(PollCounters::parse(&without_wakeups), None);
    }

    #[test]
    fn labelled_samples_are_summed_and_comments_skipped() {
        let text = "# rondo_x 1000\nrondo_x{op=\"a\"} 2\nrondo_x{op=\"b,}\"} 3.5\nrondo_xy 7\n";
        assert_eq!(sample_sum(text, "rondo_x"), Some(5.5));
        assert_eq!(sample_sum(text, "rondo_z"), None);
    }

    #[test]
    fn deltas_subtract_counters_and_keep_the_latest_gauge() {
        let before = PollCounters {
            claim_queries: 100.0,
            poller_wakeups: 5.0,
            waiting_pollers: 1000.0,
        };
        let after = PollCounters {
            claim_queries: 101.0,
            poller_wakeups: 6.0,
            waiting_pollers: 999.0,
        };
        assert_eq!(
            after.since(&before),
            PollCounters {
                claim_queries: 1.0,
                poller_wakeups: 1.0,
                waiting_pollers: 999.0,
            }
        );
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:9233/metrics"),
            Some(("127.0.0.1:9233", "/metrics"))
        );
        assert_eq!(split_url("http://h:1"), Some(("h:1", "/")));
        assert_eq!(split_url("https://h/metrics"), None);
    }

    #[test]
    fn a_plain_body_follows_the_headers() {
        let response = "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nx 1\ny 2";
        assert_eq!(response_body(response).unwrap(), "x 1\ny 2");
    }

    #[test]
    fn a_chunked_body_is_decoded() {
        let response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                        4\r\nx 1\n\r\n9;ext=1\r\ny 2\nzz 33\r\n0\r\n\r\n";
        assert_eq!(response_body(response).unwrap(), "x 1\ny 2\nzz 33");
        let truncated = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\nx 1\r\n";
        assert!(response_body(truncated).is_err());
    }

    #[test]
    fn a_status_other_than_200_is_an_error() {
        let error = response_body("HTTP/1.1 503 Service Unavailable\r\n\r\ndown").unwrap_err();
        assert!(error.to_string().contains("503"), "{error}");
        assert!(response_body("garbage").is_err());
    }
}
