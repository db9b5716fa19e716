-- A streaming query to watch in the browser, on the embedded broker. Run with
--   cargo run -- --embedded-kafka --ui 127.0.0.1:4040 run sql/examples/live.sql
-- and open http://127.0.0.1:4040/ : the list of queries, and the query's page with its
-- charts (input and processing rates, batch phases, lag per partition, watermark, state).
-- The topic is filled first with about 110 000 Nexmark bids (200 seconds of event time); the
-- query then reads 1 000 offsets a second, so the charts move for about two minutes: lag falls,
-- the watermark follows the event time, windows open and close. Ctrl-C stops it.

CREATE TOPIC bids PARTITIONS 4;

CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT, "dateTime" TIMESTAMP)
STORED AS KAFKA
OPTIONS ('subscribe' 'bids', 'format' 'json', 'startingOffsets' 'earliest',
         'maxOffsetsPerTrigger' '1000',
         'watermark' '"dateTime" - INTERVAL ''5 seconds''');

-- In event-time order, keyed by auction: every partition's event times grow together.
INSERT INTO bids (auction, price, "dateTime", _key)
SELECT bid['auction'] AS auction, bid['price'] AS price, bid['dateTime'] AS "dateTime",
       CAST(CAST(bid['auction'] AS VARCHAR) AS BYTEA) AS _key
FROM nexmark(120000, 600, 0)
WHERE event_type = 2
ORDER BY bid['dateTime'];

-- memory:// keeps this example's files in the process; use a path, file:// or s3:// for real.
CREATE EXTERNAL TABLE bids_per_window (window_start TIMESTAMP, window_end TIMESTAMP,
                                       auction BIGINT, bids BIGINT, top_price BIGINT)
STORED AS PARQUET LOCATION 'memory://live/bids_per_window';

CREATE STREAMING QUERY bids_per_window_job
WITH ('trigger' '1 second', 'checkpoint' 'memory://live/checkpoints/bids_per_window_job')
AS INSERT INTO bids_per_window
   SELECT window_start, window_end, auction, count(*), max(price)
   FROM tumble(bids, "dateTime", INTERVAL '10' SECOND)
   GROUP BY window_start, window_end, auction;
