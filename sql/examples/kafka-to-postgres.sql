-- A streaming query on the embedded broker into PostgreSQL: Kafka → JDBC, exactly once, joined
-- with a reference table that lives in PostgreSQL. Run with
--   cargo run -- --embedded-kafka run sql/examples/kafka-to-postgres.sql
-- against a local PostgreSQL at postgres://postgres@127.0.0.1:5432/test (change the two
-- LOCATIONs for yours). It creates two tables there, weir_example_regions and
-- weir_example_orders; both are upserted by key, so running it again gives the same result.

CREATE TOPIC orders PARTITIONS 2;

CREATE EXTERNAL TABLE orders (order_id BIGINT, region_id BIGINT, amount DOUBLE)
STORED AS KAFKA
OPTIONS ('subscribe' 'orders', 'format' 'json', 'startingOffsets' 'earliest',
         'maxOffsetsPerTrigger' '400');

INSERT INTO orders
SELECT n AS order_id, n % 4 AS region_id, CAST(n % 100 AS DOUBLE) + 0.5 AS amount
FROM generate_series(1, 1000) AS t(n);

-- A reference table in PostgreSQL, created (CREATE TABLE IF NOT EXISTS, with the key as
-- PRIMARY KEY) and filled through weir in one transaction.
CREATE EXTERNAL TABLE regions (id BIGINT, name VARCHAR)
STORED AS JDBC LOCATION 'postgres://postgres@127.0.0.1:5432/test'
OPTIONS ('table' 'weir_example_regions', 'mode' 'upsert', 'key' 'id');

INSERT INTO regions VALUES (0, 'north'), (1, 'south'), (2, 'east'), (3, 'west');

-- The sink: each batch's rows and its progress row (in _weir_progress) commit in one
-- transaction, so a replayed batch is recognised and skipped.
CREATE EXTERNAL TABLE orders_by_region (order_id BIGINT, region VARCHAR, amount DOUBLE)
STORED AS JDBC LOCATION 'postgres://postgres@127.0.0.1:5432/test'
OPTIONS ('table' 'weir_example_orders', 'mode' 'upsert', 'key' 'order_id');

-- memory:// keeps this example's checkpoint in the process; use a path, file:// or s3:// for real.
CREATE STREAMING QUERY orders_to_postgres
WITH ('trigger' 'availableNow', 'checkpoint' 'memory://example/checkpoints/orders_to_postgres')
AS INSERT INTO orders_by_region
   SELECT o.order_id, r.name, o.amount
   FROM orders o JOIN regions r ON o.region_id = r.id;

-- Read back from PostgreSQL: 250 orders per region.
SELECT region, count(*) AS orders, sum(amount) AS total
FROM orders_by_region GROUP BY region ORDER BY region;
