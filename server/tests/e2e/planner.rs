//! How the server keeps PostgreSQL's plans fit: its sessions plan each statement once
//! (generic plans), and it keeps the statistics of the hot tables from falling far behind
//! their size, so that plans cached while a table was small do not outlive its growth. Its
//! pool hands out the connection used last, so a quiet server keeps one backend warm.

use std::time::Duration;

use rondo_server::testing::{TestDb, TestServer};

use crate::support::eventually;

/// How many times the table was analyzed other than by autovacuum.
async fn analyzed(db_url: &str, table: &str) -> i64 {
    let client = rondo_server::store::connect(db_url).await.unwrap();
    client
        .query_one(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = $1",
            &[&table],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_hot_table_that_outgrew_its_statistics_is_analyzed_and_the_others_are_left_alone() {
    let db = TestDb::new().await;
    let server = TestServer::start_with(&db.url, |config| {
        config.statistics_interval = Duration::from_millis(50);
    })
    .await;
    {
        // Its statistics reach the server's checks when this connection closes.
        let seeder = rondo_server::store::connect(&db.url).await.unwrap();
        seeder
            .execute(
                "INSERT INTO events (workflow_id, kind, actor) \
                 SELECT gen_random_uuid(), 'workflow_started', 'test' \
                 FROM generate_series(1, 1500)",
                &[],
            )
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(20), || async {
        (analyzed(&db.url, "events").await >= 1).then_some(())
    })
    .await;
    assert_eq!(
        analyzed(&db.url, "workflows").await,
        0,
        "workflows did not change, so it must not be analyzed"
    );
    server.shutdown().await.unwrap();
}

/// The value of setting `name` in a session of a pool made for `url`.
async fn pooled_setting(url: &str, name: &str) -> String {
    let pool = rondo_server::store::pool(url, 1).unwrap();
    let client = pool.get().await.unwrap();
    client
        .query_one("SELECT current_setting($1)", &[&name])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn pooled_sessions_plan_once_and_options_in_the_url_win() {
    let db = TestDb::new().await;
    assert_eq!(
        pooled_setting(&db.url, "plan_cache_mode").await,
        "force_generic_plan"
    );
    assert_eq!(pooled_setting(&db.url, "random_page_cost").await, "1.1");
    let tuned = match (db.url.contains("://"), db.url.contains('?')) {
        (false, _) => format!("{} options='-c random_page_cost=2'", db.url),
        (true, true) => format!("{}&options=-c%20random_page_cost%3D2", db.url),
        (true, false) => format!("{}?options=-c%20random_page_cost%3D2", db.url),
    };
    assert_eq!(pooled_setting(&tuned, "random_page_cost").await, "2");
    assert_eq!(
        pooled_setting(&tuned, "plan_cache_mode").await,
        "force_generic_plan"
    );
}

/// The backend serving a pooled connection.
async fn backend_pid(client: &deadpool_postgres::Object) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_pool_hands_out_the_connection_used_last() {
    let db = TestDb::new().await;
    let pool = rondo_server::store::pool(&db.url, 2).unwrap();
    let first = pool.get().await.unwrap();
    let second = pool.get().await.unwrap();
    let (first_pid, second_pid) = (backend_pid(&first).await, backend_pid(&second).await);
    assert_ne!(first_pid, second_pid, "two connections held at once");
    drop(first);
    drop(second);
    for _ in 0..3 {
        let again = pool.get().await.unwrap();
        assert_eq!(
            backend_pid(&again).await,
            second_pid,
            "the connection returned last must be handed out next, so a quiet server keeps \
             one backend warm"
        );
    }
}
