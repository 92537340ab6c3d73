//! The server keeps the planner's statistics of the hot tables from falling far behind their
//! size, so that plans cached while a table was small do not outlive its growth.

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
