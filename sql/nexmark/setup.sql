-- Nexmark on Kafka: one JSON topic of {event_type, person, auction, bid} events, read through
-- the views person, auction and bid. Run before the queries, in the same session:
--   cargo run --release -- --embedded-kafka run sql/nexmark/setup.sql sql/nexmark/q0.sql
-- The embedded broker keeps about 5 MiB per partition; 50 000 events (about 9 MB of JSON) fit
-- in 8 partitions.

CREATE TOPIC IF NOT EXISTS nexmark_events PARTITIONS 8;

CREATE EXTERNAL TABLE nexmark_events (
  event_type INT,
  person STRUCT<id BIGINT, name VARCHAR, "emailAddress" VARCHAR, "creditCard" VARCHAR,
                city VARCHAR, state VARCHAR, "dateTime" TIMESTAMP, extra VARCHAR>,
  auction STRUCT<id BIGINT, "itemName" VARCHAR, description VARCHAR, "initialBid" BIGINT,
                 reserve BIGINT, "dateTime" TIMESTAMP, expires TIMESTAMP, seller BIGINT,
                 category BIGINT, extra VARCHAR>,
  bid STRUCT<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
             "dateTime" TIMESTAMP, extra VARCHAR>
)
STORED AS KAFKA
OPTIONS ('subscribe' 'nexmark_events', 'format' 'json', 'endingOffsets' 'latest');

-- nexmark(events, events_per_second, seed): the same events for the same arguments, written
-- in event-time order and keyed by event time, so that every partition's event times only grow
-- and all partitions move on together (as a live producer's would), which event-time queries
-- (q5, q7) rely on.
INSERT INTO nexmark_events (event_type, person, auction, bid, _key)
SELECT event_type, person, auction, bid,
       CAST(coalesce(bid['dateTime'], auction['dateTime'], person['dateTime']) AS VARCHAR)
FROM nexmark(50000, 10000, 0)
ORDER BY coalesce(bid['dateTime'], auction['dateTime'], person['dateTime']);

CREATE VIEW person AS
SELECT person['id'] AS id, person['name'] AS name, person['emailAddress'] AS "emailAddress",
       person['creditCard'] AS "creditCard", person['city'] AS city, person['state'] AS state,
       person['dateTime'] AS "dateTime", person['extra'] AS extra
FROM nexmark_events WHERE event_type = 0;

CREATE VIEW auction AS
SELECT auction['id'] AS id, auction['itemName'] AS "itemName", auction['description'] AS description,
       auction['initialBid'] AS "initialBid", auction['reserve'] AS reserve,
       auction['dateTime'] AS "dateTime", auction['expires'] AS expires, auction['seller'] AS seller,
       auction['category'] AS category, auction['extra'] AS extra
FROM nexmark_events WHERE event_type = 1;

CREATE VIEW bid AS
SELECT bid['auction'] AS auction, bid['bidder'] AS bidder, bid['price'] AS price,
       bid['channel'] AS channel, bid['url'] AS url, bid['dateTime'] AS "dateTime", bid['extra'] AS extra
FROM nexmark_events WHERE event_type = 2;
