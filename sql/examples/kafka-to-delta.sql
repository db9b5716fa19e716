-- Kafka → Delta Lake on the embedded broker, exactly once, readable by any Delta reader
-- (Spark, the deltalake Python package, DuckDB, Trino). Run with
--   cargo run -- --embedded-kafka run sql/examples/kafka-to-delta.sql
-- Each batch of the query is one Delta commit that also records the query's id and the batch
-- id (Delta's txn action), so a batch replayed after a crash finds itself committed and writes
-- nothing. The table lands in target/examples/orders (remove it to start over).

CREATE TOPIC orders PARTITIONS 2;

CREATE EXTERNAL TABLE orders (order_id BIGINT, customer VARCHAR, amount DOUBLE)
STORED AS KAFKA
OPTIONS ('subscribe' 'orders', 'format' 'json', 'startingOffsets' 'earliest',
         'maxOffsetsPerTrigger' '400');

INSERT INTO orders (order_id, customer, amount, _key)
SELECT n AS order_id,
       'customer-' || CAST(n % 20 AS VARCHAR) AS customer,
       CAST(n % 97 AS DOUBLE) + 0.5 AS amount,
       CAST(CAST(n % 20 AS VARCHAR) AS BYTEA) AS _key
FROM generate_series(1, 1000) AS t(n);

-- A new Delta table partitioned by order day, created at the first CREATE.
CREATE EXTERNAL TABLE lake_orders (order_id BIGINT, customer VARCHAR, amount DOUBLE,
                                   kafka_partition INT, kafka_offset BIGINT, day DATE)
STORED AS DELTA LOCATION 'target/examples/orders'
OPTIONS ('partitionBy' 'day', 'delta.checkpointInterval' '10');

CREATE STREAMING QUERY orders_to_delta
WITH ('trigger' 'availableNow', 'checkpoint' 'target/examples/checkpoints/orders_to_delta')
AS INSERT INTO lake_orders
   SELECT order_id, customer, amount, _partition, _offset, CAST(_timestamp AS DATE) FROM orders;

-- Every order once, however often the script ran or was killed.
SELECT count(*) AS orders, count(DISTINCT order_id) AS distinct_orders, sum(amount) AS total
FROM lake_orders;

-- Compact the batches' small files into larger ones; the rows do not change.
OPTIMIZE lake_orders;

SELECT customer, count(*) AS orders FROM lake_orders GROUP BY customer ORDER BY orders DESC, customer LIMIT 5;
