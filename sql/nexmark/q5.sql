-- Nexmark q5: hot items — the auctions with the most bids in each sliding window (10 s windows
-- every 2 s). A batch query over the bounded views of setup.sql, or the SELECT of a streaming
-- query over the stream views of setup-stream.sql (one result per window, once the watermark
-- has passed it). Unlike Flink's q5 it also returns the window's end, so that results can be
-- checked window by window.
SELECT counts.auction, counts.num, counts.window_end
FROM (
  SELECT auction, count(*) AS num, window_start, window_end
  FROM hop(bid, "dateTime", INTERVAL '2' SECOND, INTERVAL '10' SECOND)
  GROUP BY auction, window_start, window_end
) AS counts
JOIN (
  SELECT max(num) AS maxn, window_start, window_end
  FROM (
    SELECT count(*) AS num, window_start, window_end
    FROM hop(bid, "dateTime", INTERVAL '2' SECOND, INTERVAL '10' SECOND)
    GROUP BY auction, window_start, window_end
  ) AS per_auction
  GROUP BY window_start, window_end
) AS maxima
ON counts.window_start = maxima.window_start AND counts.window_end = maxima.window_end
   AND counts.num >= maxima.maxn
