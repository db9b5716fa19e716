-- A streaming query on the embedded broker: Kafka → Parquet, exactly once. Run with
--   cargo run -- --embedded-kafka run sql/examples/streaming.sql
-- The query drains what the topic holds in batches of at most 250 offsets (trigger
-- availableNow), prints one progress line per batch, and stops; the runner then reads the
-- Parquet table back. For a query that runs until Ctrl-C, leave the trigger out. With
-- --ui 127.0.0.1:4040, the query's page (http://127.0.0.1:4040/) stays up after the script
-- until Ctrl-C; sql/examples/live.sql runs long enough to watch its charts move.

CREATE TOPIC clicks PARTITIONS 2;

CREATE EXTERNAL TABLE clicks (user_id BIGINT, page VARCHAR)
STORED AS KAFKA
OPTIONS ('subscribe' 'clicks', 'format' 'json', 'startingOffsets' 'earliest',
         'maxOffsetsPerTrigger' '250');

INSERT INTO clicks (user_id, page, _key)
SELECT n % 50 AS user_id,
       'page-' || CAST(n % 7 AS VARCHAR) AS page,
       CAST(CAST(n % 50 AS VARCHAR) AS BYTEA) AS _key
FROM generate_series(1, 1000) AS t(n);

-- memory:// keeps this example's files in the process; use a path, file:// or s3:// for real.
CREATE EXTERNAL TABLE page_views (user_id BIGINT, page VARCHAR, kafka_partition INT, kafka_offset BIGINT)
STORED AS PARQUET LOCATION 'memory://example/page_views';

CREATE STREAMING QUERY page_views_job
WITH ('trigger' 'availableNow', 'checkpoint' 'memory://example/checkpoints/page_views_job')
AS INSERT INTO page_views
   SELECT user_id, page, _partition, _offset FROM clicks WHERE page <> 'page-0';

SHOW QUERIES;

-- Only committed batches are visible: 1000 clicks minus the 142 of page-0.
SELECT page, count(*) AS views, count(DISTINCT user_id) AS users
FROM page_views GROUP BY page ORDER BY page;
