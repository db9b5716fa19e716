-- Nexmark as a stream: the topic of setup.sql read as it grows, with an event-time watermark
-- (the event's dateTime, whichever of person, auction and bid it is, less 5 seconds), and the
-- views person, auction and bid over it. Streaming q5 and q7 insert into a sink:
--   CREATE STREAMING QUERY q5 WITH ('checkpoint' '…') AS INSERT INTO hot_items <q5.sql>;
-- Load the topic first with setup.sql (or any producer of the same JSON events).

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
OPTIONS ('subscribe' 'nexmark_events', 'format' 'json', 'startingOffsets' 'earliest',
         'watermark' 'coalesce(bid[''dateTime''], auction[''dateTime''], person[''dateTime'']) - INTERVAL ''5 seconds''',
         'watermarkIdleTimeout' '10s');

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
