-- weir quick start: run with
--   cargo run -- --embedded-kafka run sql/examples/quickstart.sql
-- It creates a topic on the embedded broker, fills it with generated JSON orders, and queries
-- exact offset ranges back.

CREATE TOPIC orders PARTITIONS 3;

-- A table whose values are JSON objects of the declared columns. Without endingOffsets it is a
-- stream; reading it with SELECT takes a snapshot up to the latest offsets.
CREATE EXTERNAL TABLE orders (id BIGINT, customer VARCHAR, amount DOUBLE)
STORED AS KAFKA
OPTIONS ('subscribe' 'orders', 'format' 'json');

-- 1000 generated orders; the _key column becomes the record key, so each customer's orders
-- land in one partition.
INSERT INTO orders (id, customer, amount, _key)
SELECT n AS id,
       'customer-' || CAST(n % 7 AS VARCHAR) AS customer,
       round(CAST((n * 37) % 1000 AS DOUBLE) / 10, 1) AS amount,
       CAST('customer-' || CAST(n % 7 AS VARCHAR) AS BYTEA) AS _key
FROM generate_series(1, 1000) AS t(n);

-- Where the records landed, per partition.
SELECT _partition AS partition, count(*) AS records, min(_offset) AS first, max(_offset) AS last
FROM orders GROUP BY _partition ORDER BY _partition;

-- Top customers.
SELECT customer, count(*) AS orders, round(sum(amount), 1) AS total
FROM orders GROUP BY customer ORDER BY total DESC LIMIT 3;

-- The same topic as a bounded table over exact offsets: partition 0, offsets [10, 20).
CREATE EXTERNAL TABLE orders_slice (id BIGINT, customer VARCHAR, amount DOUBLE)
STORED AS KAFKA
OPTIONS ('assign' '{"orders":[0]}', 'format' 'json',
         'startingOffsets' '{"orders":{"0":10}}', 'endingOffsets' '{"orders":{"0":20}}');

SELECT _offset, id, customer, amount FROM orders_slice ORDER BY _offset;

-- Spark's raw schema: key, value, topic, partition, offset, timestamp, timestampType.
CREATE EXTERNAL TABLE orders_raw STORED AS KAFKA
OPTIONS ('subscribe' 'orders', 'endingOffsets' 'latest');

-- "offset" is quoted in a SELECT list, where the SQL parser takes a bare offset for OFFSET.
SELECT CAST(key AS VARCHAR) AS customer_key, CAST(value AS VARCHAR) AS json, partition, "offset"
FROM orders_raw WHERE partition = 1 AND offset < 3 ORDER BY offset;
